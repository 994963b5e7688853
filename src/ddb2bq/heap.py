"""Long runs and Python's cyclic garbage collector.

Each page a runtime reads (a GetRecords page, a Scan page, an export's lines) is parsed into
about 30 objects per record, and such allocations set off collections; a full one walks every
object the process holds, its modules, classes and clients included (tens of thousands), though
none of them is garbage. :func:`frozen_heap` moves what the process holds when a run starts out
of the collector's reach for the run (``gc.freeze``) and gives it back after (``gc.unfreeze``);
refcounting still frees those objects meanwhile, only a reference cycle among them waits for the
end of the run. The Lambda function freezes its init phase's objects for good instead
(:func:`freeze_for_good`, :mod:`ddb2bq.aws_lambda`): a container lives as long as its modules.

Whether the heap is frozen is kept here (:func:`is_frozen`), not read off
``gc.get_freeze_count()`` alone: Python 3.12's collector moves every immortal object it meets
into the permanent generation, so there the count is above zero after any collection although
nothing froze anything. Elsewhere a freeze by the host program counts too.

>>> with frozen_heap():
...     is_frozen()
True
>>> is_frozen()
False
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

PERMANENT_HOLDS_IMMORTALS = sys.version_info[:2] == (3, 12)
"""Python 3.12: ``gc.get_freeze_count()`` also counts immortal objects, frozen or not."""

_frozen = [False]  # by this module: for good, or for a frozen_heap block


def is_frozen() -> bool:
    """Whether the process's objects are out of the collector's reach: frozen by
    :func:`freeze_for_good` or :func:`frozen_heap`, or (but on Python 3.12) by the host."""
    return _frozen[0] or (not PERMANENT_HOLDS_IMMORTALS and gc.get_freeze_count() > 0)


def freeze_for_good() -> None:
    """Move every object the process holds now out of the collector's reach, for the life of
    the process (a Lambda container's init phase, and what its warm start loaded after it)."""
    gc.freeze()
    _frozen[0] = True


def unfreeze() -> None:
    """Give every frozen object back to the collector (undoes :func:`freeze_for_good`)."""
    gc.unfreeze()
    _frozen[0] = False


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within the block, the objects the process held as it began are out of the cyclic
    collector's reach; left alone when something froze them before (it unfreezes them itself)."""
    if is_frozen():
        yield
        return
    freeze_for_good()
    try:
        yield
    finally:
        unfreeze()


__all__ = ["PERMANENT_HOLDS_IMMORTALS", "freeze_for_good", "frozen_heap", "is_frozen", "unfreeze"]
