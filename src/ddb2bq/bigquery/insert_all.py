"""The changelog writer over BigQuery's streaming ``insertAll`` (``Client.insert_rows_json``).

Each change's changelog row is sent with its ``event_id`` as ``insertId``, so BigQuery drops
a row sent twice within about a minute (best effort) when a retry follows a lost response.

Requests stay within ``max_rows`` rows and ``max_bytes`` serialized bytes (BigQuery allows 50,000
rows and 10 MB per request and recommends 500 rows); a row larger than ``max_row_bytes`` is a
terminal failure reported without sending it. NULL values are left out of the row. Each row is
serialised once: the bytes measured for the limits are the bytes the light client sends.

Errors, row by row. With ``skipInvalidRows=false`` one invalid row fails the whole request:
BigQuery answers ``invalid`` (with the column in ``location``) for that row and ``stopped`` for
the others. Each ``invalid`` row becomes a terminal failure naming the column; the rows that were
only collateral are sent again, once, without the bad ones, so one bad row costs only itself.
A failure of the whole request (429, 5xx, timeout, reset connection, ``notFound`` when the
table was dropped) is retried by the :class:`~ddb2bq.bigquery.retry.RetryPolicy` when
:func:`~ddb2bq.bigquery.retry.classify` says it may pass, then reported for every row of the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from ddb2bq.bigquery.errors import RETRYABLE_REASONS
from ddb2bq.bigquery.failures import row_failure
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.sending import Pending, Refusal, Tally, chunks, send_chunk
from ddb2bq.contract import WriteResult, request_timeout
from ddb2bq.rows import Rows
from ddb2bq.schema import Column

MAX_ROW_BYTES = 10_000_000
"""BigQuery's limit on one streamed row."""
_REQUEST_OVERHEAD = 64  # '{"kind":..,"skipInvalidRows":false,"rows":[ ... ]}'
_ROW_OVERHEAD = len('{"insertId":,"json":},')  # around a row's id and values
_COLLATERAL = frozenset(("stopped", "timeout", *RETRYABLE_REASONS))


class InsertClient(Protocol):
    """The part of ``google.cloud.bigquery.Client`` this writer uses; the light
    :class:`~ddb2bq.bigquery.rest.RestClient` has it too, with the same semantics.

    A client whose ``takes_json_fragments`` is true (the light client, which encodes with
    orjson) is given each row as the ``orjson.Fragment`` of the bytes the writer measured, so
    that each row is serialised once; any other client gets dicts.
    """

    def insert_rows_json(
        self,
        table: str,
        json_rows: Sequence[Mapping[str, Any]],
        *,
        row_ids: Sequence[str | None],
        skip_invalid_rows: bool,
        retry: Any,
        timeout: float,
    ) -> Sequence[Mapping[str, Any]]:
        """Stream rows; return the ``insertErrors`` of the response."""
        ...


class InsertAllWriter:
    """Writes the changelog rows of a batch with ``insertAll``; a :class:`~ddb2bq.contract.Writer`.

    ``table_ref`` is ``"project.dataset.table"`` (or a ``TableReference``); ``columns`` are the
    table's columns: a row holding another column fails instead of being cut silently.
    ``row_of`` picks the row of each change to send (default: its changelog row).

    Example (with a client, a layout and changes)::

        writer = InsertAllWriter(client, "my-project.dynamodb.orders_changes",
                                 layout.changelog_columns())
        result = writer.write(RowBuilder(layout).build_all(changes))
        [f.reason for f in result.failures]  # []
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
        self._fragments = bool(getattr(client, "takes_json_fragments", False))

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Stream ``batch``; every change not written is in the result's ``failures``."""
        tally = Tally()
        pending = [p for i, rows in enumerate(batch) if (p := self._prepare(i, rows, tally))]
        for chunk in chunks(
            pending, max_rows=self._max_rows, max_bytes=self._max_bytes, overhead=_REQUEST_OVERHEAD
        ):
            send_chunk(chunk, self._insert, self._policy, self._table_name, tally)
        return tally.result()

    def _prepare(self, index: int, rows: Rows, tally: Tally) -> Pending | None:
        """The row of one change ready to send, or None (and a failure) when it cannot be."""
        row = self._row_of(rows)
        if row is None:
            return None
        change = rows.change
        if not row.keys() <= self._columns:
            unknown = sorted(set(row) - self._columns)
            message = f"the row has columns the table lacks: {', '.join(unknown)}"
            tally.failures.append(
                row_failure(index, change, self._table_name, message, column=unknown[0])
            )
            return None
        values = row
        if None in row.values():  # (a C scan: most rows of a batch have no NULL to leave out)
            values = {name: value for name, value in row.items() if value is not None}
        insert_id = change.event_id or None
        # once: for the size, and as the request's own bytes. Copied to bytes of its own size:
        # orjson's result keeps the whole buffer it grew (16 KB for a 1.3 KB row), and a batch
        # of them held until the request costs memory and time.
        encoded = memoryview(orjson.dumps(values)).tobytes()
        size = len(encoded) + len(orjson.dumps(insert_id)) + _ROW_OVERHEAD
        if size > self._max_row_bytes:
            message = (
                f"the row is {size} bytes, over the {self._max_row_bytes}-byte limit "
                "of a streamed row; it was not sent"
            )
            tally.failures.append(row_failure(index, change, self._table_name, message))
            return None
        payload = orjson.Fragment(encoded) if self._fragments else values
        return Pending(index, change, payload, size, insert_id)

    def _insert(self, rows: list[Pending]) -> dict[int, Refusal]:
        errors = self._client.insert_rows_json(
            self._table,
            [p.payload for p in rows],
            row_ids=[p.insert_id for p in rows],
            skip_invalid_rows=False,
            retry=None,
            timeout=request_timeout(self._timeout),
        )
        refusals = {}
        for entry in errors:
            position = entry.get("index")
            if isinstance(position, int) and 0 <= position < len(rows):
                refusals[position] = _refusal(entry.get("errors") or [])
        if errors and not refusals:  # errors we cannot place: nothing of the request landed
            return {0: Refusal(f"unplaceable insertErrors {list(errors)!r}", collateral=True)}
        return refusals


def _refusal(errors: Sequence[Mapping[str, Any]]) -> Refusal:
    """The refusal of one row from its ``errors``: its own error wins over a collateral one."""
    parsed = [
        (
            str(e.get("reason") or "invalid"),
            str(e.get("location") or ""),
            str(e.get("message") or ""),
        )
        for e in errors
    ]
    own = [p for p in parsed if p[0] not in _COLLATERAL]
    reason, location, message = (own or parsed or [("stopped", "", "")])[0]
    if own:
        return Refusal(f"{reason}: {message}", location or None)
    detail = f": {message}" if message else ""
    return Refusal(f"not written ({reason}{detail})", location or None, collateral=True)
