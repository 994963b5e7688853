"""Sending rows in requests, the part both writers share: cutting a batch into requests within
row and byte limits, retrying each request, one re-send of the rows that were refused only
because another row of the same request was bad, and splitting a request refused whole.

BigQuery's streaming APIs are all-or-nothing per request: ``insertAll`` with
``skipInvalidRows=false`` and Storage Write ``AppendRows`` write no row of a request in which any
row is invalid, and name the invalid rows. A writer's request function returns those refusals
(:class:`Refusal`, by position in the request); :func:`send_chunk` turns the row's own refusals
into terminal failures and sends the other rows again, once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ddb2bq.bigquery.errors import splittable
from ddb2bq.bigquery.failures import request_failures, row_failure
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.classes import data_class
from ddb2bq.contract import Failure, WriteResult
from ddb2bq.records import Change


@dataclass(slots=True)
class Pending:
    """One row ready to send: its change's index in the batch, its payload and size in bytes
    (never changed once made; not ``frozen``, whose ``__init__`` costs a row's conversion)."""

    index: int
    change: Change
    payload: Any
    size: int
    insert_id: str | None = None


@data_class(frozen=True, slots=True)
class Refusal:
    """Why a row of a request was not written. ``collateral`` when the row itself was fine
    (``stopped`` by another row's error, or a transient row-level error)."""

    message: str
    column: str | None = None
    collateral: bool = False


Request = Callable[[list[Pending]], Mapping[int, Refusal]]
"""Sends rows as one request; returns the refusals by position (empty: every row landed)."""


@data_class(slots=True)
class Tally:
    """What the requests of one batch did, summed into a :class:`WriteResult` at the end."""

    written: int = 0
    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    failures: list[Failure] = field(default_factory=list)
    extra: dict[str, int] = field(default_factory=dict)

    def result(self) -> WriteResult:
        """The batch's result, failures in batch order."""
        return WriteResult(
            written=self.written,
            failures=tuple(sorted(self.failures, key=lambda f: f.index)),
            retries=self.retries,
            requests=self.requests,
            bytes_sent=self.bytes_sent,
            extra=dict(self.extra),
        )


def chunks(
    pending: Sequence[Pending], *, max_rows: int, max_bytes: int, overhead: int = 0
) -> Iterator[list[Pending]]:
    """Consecutive runs of ``pending``, each within ``max_rows`` rows and ``max_bytes`` bytes
    (``overhead`` counted once per request); a row bigger than the budget goes alone.

    >>> rows = [Pending(i, None, None, 40) for i in range(5)]  # type: ignore[arg-type]
    >>> [[p.index for p in c] for c in chunks(rows, max_rows=3, max_bytes=100)]
    [[0, 1], [2, 3], [4]]
    """
    chunk: list[Pending] = []
    size = overhead
    for item in pending:
        if chunk and (len(chunk) >= max_rows or size + item.size > max_bytes):
            yield chunk
            chunk, size = [], overhead
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


def send_chunk(
    chunk: list[Pending], request: Request, policy: RetryPolicy, table: str, tally: Tally
) -> None:
    """Send ``chunk`` with retries; re-send once the rows refused only as collateral.

    A request refused whole as malformed (HTTP 400, INVALID_ARGUMENT) is split in halves sent
    separately, down to single rows, so that a row the service cannot even parse (say, bad
    base64) fails alone instead of failing its neighbours. Once the current deadline
    (:func:`~ddb2bq.contract.current_deadline`) has passed nothing more is sent: the rows not
    written are retryable failures.
    """
    remaining = chunk
    for last in (False, True):
        what = f"a request of {len(remaining)} row{'s' * (len(remaining) != 1)} to {table}"
        outcome = policy.call(functools.partial(request, remaining), what=what)
        tally.requests += outcome.attempts
        tally.retries += outcome.retries
        tally.bytes_sent += outcome.attempts * sum(p.size for p in remaining)
        if outcome.error is not None:
            if len(remaining) > 1 and splittable(outcome.error):
                tally.extra["splits"] = tally.extra.get("splits", 0) + 1
                middle = len(remaining) // 2
                send_chunk(remaining[:middle], request, policy, table, tally)
                send_chunk(remaining[middle:], request, policy, table, tally)
                return
            indexed = [(p.index, p.change) for p in remaining]
            tally.failures += request_failures(
                indexed,
                table,
                outcome.error,
                retryable=outcome.retryable,
                attempts=outcome.attempts,
            )
            return
        refusals = outcome.value or {}
        if not refusals:
            tally.written += len(remaining)
            return
        remaining = _settle_refusals(remaining, refusals, table, tally, last=last)
        if not remaining:
            return


def _settle_refusals(
    rows: list[Pending], refusals: Mapping[int, Refusal], table: str, tally: Tally, *, last: bool
) -> list[Pending]:
    """Record each row's own refusal as terminal; return the collateral rows to send again
    (or, after the re-send, record them as retryable)."""
    unlisted = Refusal("not written: another row of the same request was refused", collateral=True)
    again = []
    for position, pending in enumerate(rows):
        refusal = refusals.get(position, unlisted)
        if refusal.collateral and not last:
            again.append(pending)
            continue
        message = refusal.message
        if refusal.collateral:
            message = f"{message} (still refused after one re-send; retry later)"
        tally.failures.append(
            row_failure(
                pending.index,
                pending.change,
                table,
                message,
                column=refusal.column,
                retryable=refusal.collateral,
            )
        )
    return again
