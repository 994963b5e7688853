"""Parallel Scan for the backfill: one segment's pages, resumable, paced to a read-capacity budget.

``Segment``/``TotalSegments`` split the table; a segment's ``LastEvaluatedKey`` comes back as
``ExclusiveStartKey`` with the same segment, and only a missing one means the end
(research file, section D). ``ReturnConsumedCapacity=TOTAL`` says what each page cost; the
:class:`ReadBudget` shared by every segment's reader keeps the sum under ``--max-rcu`` per
second (an estimate from the items' size stands in when an endpoint reports nothing).
Eventually consistent by default (half the capacity); ``consistent`` for ``ConsistentRead``.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    """One Scan page of one segment: its items (boto3's form), where to go on from (None at the
    segment's end), and the read capacity it consumed."""

    segment: int
    items: list[Any]
    last_key: Item | None
    capacity: float


class ReadBudget:
    """At most ``per_second`` read capacity units a second, shared by threads (None: no limit).

    >>> budget = ReadBudget(None)
    >>> budget.spend(100.0)  # returns at once
    """

    def __init__(
        self,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._free_at = clock()
        self.spent = 0.0

    def spend(self, units: float) -> None:
        """Account ``units`` just consumed; wait until the budget has caught up with them."""
        with self._lock:
            self.spent += units
            if self._rate is None:
                return
            now = self._clock()
            self._free_at = max(self._free_at, now) + units / self._rate
            wait = self._free_at - now - 1.0  # up to a second's worth may be spent ahead
        if wait > 0:
            self._sleep(wait)


def scan_segment(
    dynamodb: Any,
    table: str,
    segment: int,
    total: int,
    *,
    start_key: Item | None = None,
    consistent: bool = False,
    page_limit: int = 1000,
    budget: ReadBudget | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Page]:
    """The pages of ``segment`` of ``total``, from ``start_key`` (None: its beginning) to its end.

    >>> for page in scan_segment(boto3.client("dynamodb"), "orders", 0, 4):  # doctest: +SKIP
    ...     print(len(page.items), page.last_key)
    """
    request: dict[str, Any] = {
        "TableName": table,
        "Segment": segment,
        "TotalSegments": total,
        "Limit": page_limit,
        "ConsistentRead": consistent,
        "ReturnConsumedCapacity": "TOTAL",
    }
    key = start_key
    while not stop():
        answer = dynamodb.scan(**request, **({"ExclusiveStartKey": key} if key else {}))
        items: list[Item] = answer.get("Items", [])
        key = answer.get("LastEvaluatedKey") or None
        capacity = _capacity(answer, items, consistent)
        if budget is not None:
            budget.spend(capacity)
        yield Page(segment, items, key, capacity)
        if key is None:
            return


def _capacity(answer: Mapping[str, Any], items: list[Item], consistent: bool) -> float:
    reported = (answer.get("ConsumedCapacity") or {}).get("CapacityUnits")
    if isinstance(reported, int | float) and reported > 0:
        return float(reported)
    size = sum(len(orjson.dumps(item, default=_bytes)) for item in items)
    units = max(1.0, size / 4096)  # one unit per 4 KB read strongly, half eventually
    return units if consistent else units / 2


def key_text(key: Item | None) -> str | None:
    """A ``LastEvaluatedKey`` as JSON text for the state store (binary as base64).

    >>> key_text({"pk": {"B": b"\\x00"}})
    '{"pk":{"B":"AA=="}}'
    """
    if key is None:
        return None
    return orjson.dumps(key, default=_bytes).decode()


def key_of_text(text: str | None) -> Item | None:
    """The ``ExclusiveStartKey`` saved by :func:`key_text` (binary back to bytes).

    >>> key_of_text('{"pk":{"B":"AA=="}}')
    {'pk': {'B': b'\\x00'}}
    """
    if text is None:
        return None
    key: Item = orjson.loads(text)
    return {
        name: {"B": base64.b64decode(value["B"])} if "B" in value else value
        for name, value in key.items()
    }


def _bytes(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")
