"""The changelog writer over BigQuery's streaming ``insertAll`` (``Client.insert_rows_json``).

Each change's changelog row is sent with its ``event_id`` as ``insertId``, so BigQuery drops
a row sent twice within about a minute (best effort) when a retry follows a lost response.

Requests stay within ``max_rows`` rows and ``max_bytes`` serialized bytes (BigQuery allows 50,000
rows and 10 MB per request and recommends 500 rows); a row larger than ``max_row_bytes`` is a
terminal failure reported without sending it.

Errors, row by row. With ``skipInvalidRows=false`` one invalid row fails the whole request:
BigQuery answers ``invalid`` (with the column in ``location``) for that row and ``stopped`` for
the others. Each ``invalid`` row becomes a terminal failure naming the column; the rows that were
only collateral are sent again, once, without the bad ones, so one bad row costs only itself.
A failure of the whole request (429, 5xx, timeout, reset connection, ``notFound`` when the
table was dropped) is retried by the :class:`~ddb2bq.sinks.retry.RetryPolicy` when
:func:`~ddb2bq.sinks.retry.classify` says it may pass, then reported for every row of the request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ddb2bq.records import Change
from ddb2bq.rows import Rows
from ddb2bq.schema import Column
from ddb2bq.sinks.base import Failure, WriteResult
from ddb2bq.sinks.failures import request_failures, row_failure
from ddb2bq.sinks.retry import RETRYABLE_REASONS, RetryPolicy

MAX_ROW_BYTES = 10_000_000
"""BigQuery's limit on one streamed row."""
_REQUEST_OVERHEAD = 64  # '{"kind":..,"skipInvalidRows":false,"rows":[ ... ]}'
_COLLATERAL = frozenset(("stopped", "timeout", *RETRYABLE_REASONS))


class InsertClient(Protocol):
    """The part of ``google.cloud.bigquery.Client`` this writer uses."""

    def insert_rows_json(
        self, table: Any, json_rows: Any, **kwargs: Any
    ) -> Sequence[Mapping[str, Any]]:
        """Stream rows; return the ``insertErrors`` of the response."""
        ...


@dataclass(frozen=True, slots=True)
class _Pending:
    index: int
    change: Change
    insert_id: str | None
    row: dict[str, Any]
    size: int


@dataclass(slots=True)
class _Tally:
    written: int = 0
    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    failures: list[Failure] = field(default_factory=list)


class InsertAllWriter:
    """Writes the changelog rows of a batch with ``insertAll``; implements :class:`~ddb2bq.sinks.base.Writer`.

    ``table_ref`` is ``"project.dataset.table"`` (or a ``TableReference``); ``columns`` are the
    table's columns: a row holding another column fails instead of being cut silently.

    >>> writer = InsertAllWriter(client, "my-project.dynamodb.orders_changes",
    ...                          layout.changelog_columns())
    >>> result = writer.write(RowBuilder(layout).build_all(changes))
    >>> [f.reason for f in result.failures]
    []
    """

    def __init__(
        self,
        client: InsertClient,
        table_ref: Any,
        columns: Sequence[Column],
        *,
        max_rows: int = 500,
        max_bytes: int = 9_000_000,
        max_row_bytes: int = MAX_ROW_BYTES,
        retry_policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        row_of: Callable[[Rows], dict[str, Any] | None] = lambda rows: rows.changelog,
    ) -> None:
        self._client = client
        self._table = table_ref
        self._table_name = str(table_ref)
        self._columns = frozenset(c.name for c in columns)
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._max_row_bytes = max_row_bytes
        self._policy = retry_policy or RetryPolicy()
        self._timeout = timeout
        self._row_of = row_of

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Stream ``batch``; every change not written is in the result's ``failures``."""
        tally = _Tally()
        pending = self._prepare(batch, tally)
        for chunk in self._chunks(pending):
            self._send(chunk, tally)
        return WriteResult(
            written=tally.written,
            failures=tuple(sorted(tally.failures, key=lambda f: f.index)),
            retries=tally.retries,
            requests=tally.requests,
            bytes_sent=tally.bytes_sent,
        )

    def _prepare(self, batch: Sequence[Rows], tally: _Tally) -> list[_Pending]:
        pending = []
        for index, rows in enumerate(batch):
            row = self._row_of(rows)
            if row is None:
                continue
            change = rows.change
            unknown = sorted(set(row) - self._columns)
            if unknown:
                message = f"the row has columns the table lacks: {', '.join(unknown)}"
                tally.failures.append(
                    row_failure(index, change, self._table_name, message, column=unknown[0])
                )
                continue
            values = {name: value for name, value in row.items() if value is not None}
            insert_id = change.event_id or None
            size = len(orjson.dumps({"insertId": insert_id, "json": values})) + 1
            if size > self._max_row_bytes:
                message = (
                    f"the row is {size} bytes, over the {self._max_row_bytes}-byte limit "
                    "of a streamed row; it was not sent"
                )
                tally.failures.append(row_failure(index, change, self._table_name, message))
                continue
            pending.append(_Pending(index, change, insert_id, values, size))
        return pending

    def _chunks(self, pending: list[_Pending]) -> Iterator[list[_Pending]]:
        """Consecutive runs of rows within the row and byte limits of one request."""
        chunk: list[_Pending] = []
        size = _REQUEST_OVERHEAD
        for item in pending:
            if chunk and (len(chunk) >= self._max_rows or size + item.size > self._max_bytes):
                yield chunk
                chunk, size = [], _REQUEST_OVERHEAD
            chunk.append(item)
            size += item.size
        if chunk:
            yield chunk

    def _send(self, chunk: list[_Pending], tally: _Tally) -> None:
        """Send one request; re-send once the rows that were only collateral of another's error."""
        remaining = chunk
        for resend in (False, True):
            outcome = self._policy.call(functools.partial(self._insert, remaining))
            tally.requests += outcome.attempts
            tally.retries += outcome.retries
            tally.bytes_sent += outcome.attempts * sum(p.size for p in remaining)
            if outcome.error is not None:
                indexed = [(p.index, p.change) for p in remaining]
                tally.failures += request_failures(
                    indexed,
                    self._table_name,
                    outcome.error,
                    retryable=outcome.retryable,
                    attempts=outcome.attempts,
                )
                return
            errors = outcome.value or []
            if not errors:
                tally.written += len(remaining)
                return
            remaining = self._sort_errors(remaining, errors, tally, last=resend)
            if not remaining:
                return

    def _insert(self, rows: list[_Pending]) -> Sequence[Mapping[str, Any]]:
        return self._client.insert_rows_json(
            self._table,
            [p.row for p in rows],
            row_ids=[p.insert_id for p in rows],
            skip_invalid_rows=False,
            retry=None,
            timeout=self._timeout,
        )

    def _sort_errors(
        self,
        rows: list[_Pending],
        errors: Sequence[Mapping[str, Any]],
        tally: _Tally,
        *,
        last: bool,
    ) -> list[_Pending]:
        """Record the rows BigQuery refused; return the collateral ones to send again."""
        refused: dict[int, tuple[str, str, str]] = {}
        for entry in errors:
            position = entry.get("index")
            if isinstance(position, int) and 0 <= position < len(rows):
                refused[position] = _worst(entry.get("errors") or [])
        collateral = []
        for position, pending in enumerate(rows):
            reason, location, message = refused.get(position, ("stopped", "", ""))
            if reason in _COLLATERAL and not last:
                collateral.append(pending)
                continue
            retryable = reason in _COLLATERAL
            if retryable:
                message = f"not written ({reason}) after one re-send: {message or 'no message'}"
            failure = row_failure(
                pending.index,
                pending.change,
                self._table_name,
                f"{reason}: {message}" if not retryable else message,
                column=location or None,
                retryable=retryable,
            )
            tally.failures.append(failure)
        return collateral


def _worst(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    """(reason, location, message) of a row's errors: a refusal of the row itself wins over
    a collateral ``stopped``."""
    parsed = [
        (
            str(e.get("reason") or "invalid"),
            str(e.get("location") or ""),
            str(e.get("message") or ""),
        )
        for e in errors
    ]
    own = [p for p in parsed if p[0] not in _COLLATERAL]
    return (own or parsed or [("stopped", "", "")])[0]
