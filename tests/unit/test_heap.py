"""ddb2bq.heap freezes the process's objects for a run on every supported Python, 3.12 included
(whose collector counts the immortal objects it meets as frozen)."""

from __future__ import annotations

import gc

from ddb2bq.heap import freeze_for_good, frozen_heap, is_frozen, unfreeze


def test_a_run_freezes_the_heap_even_after_a_collection_and_gives_it_back() -> None:
    # GIVEN a process that froze nothing, just after a full collection (on Python 3.12 the
    # freeze count is then above zero: the immortal objects the collection met)
    gc.collect()
    before = gc.get_freeze_count()
    assert not is_frozen()
    # WHEN a run's block is entered
    with frozen_heap():
        # THEN the process's objects (its modules: thousands) are out of the collector's reach
        assert is_frozen()
        assert gc.get_freeze_count() > before + 1_000
    # AND after it they are back with the collector
    assert not is_frozen()
    assert gc.get_freeze_count() <= before


def test_a_block_inside_a_freeze_for_good_leaves_that_freeze_alone() -> None:
    # GIVEN a heap frozen for good (a Lambda container's init phase)
    freeze_for_good()
    try:
        frozen = gc.get_freeze_count()
        # WHEN a run's block comes and goes
        with frozen_heap():
            pass
        # THEN the heap is still frozen, every object of it
        assert is_frozen()
        assert gc.get_freeze_count() >= frozen
    finally:
        unfreeze()
    assert not is_frozen()
