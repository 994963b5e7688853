"""The generation a runtime writes with: the configured one, raised by the stored one.

``seq`` tokens start with the generation; it rises when the stream is lost and a new backfill is
taken (DESIGN.md, "Ordering and idempotency"). The configuration holds the starting point and an
override upwards (a user can raise it in the file); the state store holds what was used, so a
runtime can raise it without editing a file and a file lowered by mistake cannot take it back.
"""

from __future__ import annotations

from ddb2bq.state.errors import StateError
from ddb2bq.state.model import StateStore, check_generation


class Generation:
    """The current generation of one replicated table, cached: cheap to ask for per batch.

    ``current()`` is ``max(configured, stored)``. On first use a configured value above the stored
    one is stored, since changes were written with it: what was used once stays the floor.
    Without a store (``store=None``) the generation lives in this object only.

    >>> generation = Generation(3, None, "orders")
    >>> generation.current()
    3
    >>> generation.raise_to(4)
    4
    >>> generation.raise_to(2)
    Traceback (most recent call last):
    ...
    ddb2bq.state.errors.StateError: The generation of table 'orders' is 4; refusing to lower it to 2.
    """

    def __init__(self, configured: int, store: StateStore | None, table: str) -> None:
        self._configured = check_generation(table, configured)
        self._store = store
        self._table = table
        self._current: int | None = None

    @property
    def table(self) -> str:
        """The replicated table this generation belongs to."""
        return self._table

    def current(self) -> int:
        """The generation to write ``seq`` tokens with (read from the store once, then cached)."""
        if self._current is None:
            self._current = self._load()
        return self._current

    def raise_to(self, new: int) -> int:
        """Store ``new`` as the generation (it must not be lower than :meth:`current`); returns
        the current generation read back, which another runner may have raised further."""
        check_generation(self._table, new)
        current = self.current()
        if new < current:
            raise StateError(
                f"The generation of table {self._table!r} is {current}; "
                f"refusing to lower it to {new}."
            )
        if self._store is None:
            self._current = new
        else:
            self._store.store_generation(self._table, new)
            self._current = None
        return self.current()

    def refresh(self) -> int:
        """Forget the cached value and read the store again (another process may have raised it)."""
        self._current = None
        return self.current()

    def _load(self) -> int:
        if self._store is None:
            return self._configured
        stored = self._store.stored_generation(self._table)
        if stored is not None and stored >= self._configured:
            return stored
        self._store.store_generation(self._table, self._configured)
        return max(self._configured, self._store.stored_generation(self._table) or 0)
