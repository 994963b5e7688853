"""Fake writers: the :class:`~ddb2bq.contract.Writer` contract, scripted per change."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ddb2bq.contract import Failure, WriteResult
from ddb2bq.exceptions import RetryableError
from ddb2bq.rows import Rows

Verdict = bool | None
"""What a fake writer does with one row: None writes it; True fails it retryable, False
terminal."""


class FakeWriter:
    """Records each batch; ``fail(rows)`` decides each row's fate (default: every row written).

    ``written`` keeps the event ids of the rows that landed, in order; ``down`` makes the whole
    request raise a RetryableError, as a writer whose retries ran out.
    """

    def __init__(
        self,
        fail: Callable[[Rows], Verdict] = lambda rows: None,
        reason: Callable[[int, Rows], str] = lambda index, rows: f"row {index} refused",
    ) -> None:
        self.batches: list[list[Rows]] = []
        self.written: list[str] = []
        self.down = False
        self._fail = fail
        self._reason = reason

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        self.batches.append(list(batch))
        if self.down:
            raise RetryableError("BigQuery is unavailable (a fake writer's outage).")
        failures = []
        for index, rows in enumerate(batch):
            retryable = self._fail(rows)
            if retryable is None:
                self.written.append(rows.change.event_id)
            else:
                reason = self._reason(index, rows)
                failures.append(Failure(index, reason, retryable, "total"))
        return WriteResult(
            written=len(batch) - len(failures),
            failures=tuple(failures),
            requests=1,
            bytes_sent=100 * len(batch),
        )

    def batch_ids(self) -> list[list[str]]:
        """The event ids of each batch the writer was given."""
        return [[rows.change.event_id for rows in batch] for batch in self.batches]


def by_event_id(statuses: dict[str, str]) -> Callable[[Rows], Verdict]:
    """A ``fail`` function from ``{event id: "retryable" | "terminal"}`` (others written)."""

    def fail(rows: Rows) -> Verdict:
        status = statuses.get(rows.change.event_id)
        if status is None:
            return None
        return status == "retryable"

    return fail
