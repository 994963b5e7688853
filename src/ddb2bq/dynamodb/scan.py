"""Parallel Scan (the backfill's and verify's): segments read by threads, resumable, paced to a
read-capacity budget.

``Segment``/``TotalSegments`` split the table; a segment's ``LastEvaluatedKey`` comes back as
``ExclusiveStartKey`` with the same segment, and only a missing one means the end
(research file, section D). ``ReturnConsumedCapacity=TOTAL`` says what each page cost; the
:class:`ReadBudget` shared by every segment's reader keeps the sum under ``--max-rcu`` per
second (an estimate from the items' size stands in when an endpoint reports nothing).
Eventually consistent by default (half the capacity); ``consistent`` for ``ConsistentRead``.
:func:`read_segments` reads several segments at once, a thread each, and hands their pages over
through a bounded queue: the pages in hand stay few whatever the table's size. A Scan of one
segment is sent as a plain Scan (moto answers 500 to a parallel Scan of a binary hash key).
"""

from __future__ import annotations

import base64
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    split = {"Segment": segment, "TotalSegments": total} if total > 1 else {}
    request: dict[str, Any] = {
        "TableName": table,
        "Limit": page_limit,
        "ConsistentRead": consistent,
        "ReturnConsumedCapacity": "TOTAL",
        **split,
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


@dataclass(frozen=True, slots=True)
class SegmentStart:
    """Where one segment's reading begins: ``start_key`` None is the segment's beginning."""

    segment: int
    total: int
    start_key: Item | None = None


def read_segments(
    dynamodb: Any,
    table: str,
    starts: Sequence[SegmentStart],
    *,
    consistent: bool = False,
    page_limit: int = 1000,
    budget: ReadBudget | None = None,
    stop: Callable[[], bool] = lambda: False,
    in_flight: int = 16,
) -> Iterator[Page]:
    """The pages of every segment of ``starts``, a thread each (16 at most), in no order.

    Closing the iterator (or an error in a segment, raised here) stops the others after the
    page each is reading.

    >>> starts = [SegmentStart(n, 4) for n in range(4)]
    >>> for page in read_segments(boto3.client("dynamodb"), "orders", starts):  # doctest: +SKIP
    ...     print(page.segment, len(page.items))
    """
    pages: queue.Queue[Page | BaseException | None] = queue.Queue(maxsize=in_flight)
    stopping = threading.Event()

    def hand(value: Page | BaseException | None) -> None:
        while not stopping.is_set():
            try:
                pages.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(start: SegmentStart) -> None:
        try:
            for page in scan_segment(
                dynamodb, table, start.segment, start.total, start_key=start.start_key,
                consistent=consistent, page_limit=page_limit, budget=budget,
                stop=lambda: stopping.is_set() or stop(),
            ):  # fmt: skip
                hand(page)
        except BaseException as exc:  # noqa: BLE001 (handed to the reader, raised there)
            hand(exc)
        finally:
            hand(None)

    threads = ThreadPoolExecutor(max_workers=max(1, min(len(starts), 16)))
    for start in starts:
        threads.submit(read, start)
    try:
        finished = 0
        while finished < len(starts):
            item = pages.get()
            if item is None:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stopping.set()
        threads.shutdown(wait=True, cancel_futures=True)


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
