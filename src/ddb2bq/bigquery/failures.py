"""Failure values shared by the writers: each names the table, the change's event and key.

>>> from ddb2bq.records import Change
>>> change = Change("INSERT", {"Id": {"N": "7"}}, None, None, "0/0/0/1", 0, "e1")
>>> describe(change)
"event e1 (key Id='7')"
>>> row_failure(3, change, "p.d.t_changes", "Cannot convert value to numeric", column="price")
Failure(index=3, reason="BigQuery rejected the row of event e1 (key Id='7') in table p.d.t_changes: column 'price': Cannot convert value to numeric", retryable=False, column='price')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ddb2bq.contract import Failure
from ddb2bq.records import Change


def describe(change: Change) -> str:
    """``event <id> (key <name>=<value>, ...)``: how messages name a change."""
    keys = ", ".join(f"{name}={_scalar(value)!r}" for name, value in change.keys.items())
    return f"event {change.event_id or '?'} (key {keys})"


def row_failure(
    index: int,
    change: Change,
    table: str,
    message: str,
    *,
    column: str | None = None,
    retryable: bool = False,
) -> Failure:
    """A failure of one row that BigQuery (or the writer, before sending) refused."""
    where = f"column {column!r}: " if column else ""
    reason = f"BigQuery rejected the row of {describe(change)} in table {table}: {where}{message}"
    return Failure(index, reason, retryable, column or None)


def request_failures(
    indexed: Iterable[tuple[int, Change]],
    table: str,
    error: BaseException,
    *,
    retryable: bool,
    attempts: int,
) -> list[Failure]:
    """One failure per change of a request that failed as a whole."""
    tries = "once" if attempts == 1 else f"{attempts} times"
    what = "may pass later" if retryable else "will fail again as it is"
    message = f"{type(error).__name__}: {error}".strip()
    return [
        Failure(
            index,
            f"Writing {describe(change)} to table {table} failed (sent {tries}; this {what}): "
            f"{message}",
            retryable,
        )
        for index, change in indexed
    ]


def _scalar(value: Any) -> Any:
    return next(iter(value.values()), None) if isinstance(value, dict) else value
