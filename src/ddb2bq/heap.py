"""Long runs and Python's cyclic garbage collector.

Each page a runtime reads (a GetRecords page, a Scan page, an export's lines) is parsed into
about 30 objects per record, and such allocations set off collections; a full one walks every
object the process holds, its modules, classes and clients included (tens of thousands), though
none of them is garbage. :func:`frozen_heap` moves what the process holds when a run starts out
of the collector's reach for the run (``gc.freeze``) and gives it back after (``gc.unfreeze``);
refcounting still frees those objects meanwhile, only a reference cycle among them waits for the
end of the run. The Lambda function freezes its init phase's objects for good instead
(:mod:`ddb2bq.aws_lambda`): a container lives as long as its modules.

>>> import gc
>>> with frozen_heap():
...     gc.get_freeze_count() > 0
True
>>> gc.get_freeze_count()
0
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within the block, the objects the process held as it began are out of the cyclic
    collector's reach; left alone when something froze them before (it unfreezes them itself)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


__all__ = ["frozen_heap"]
