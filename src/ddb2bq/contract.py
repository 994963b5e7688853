"""The contracts the pipeline writes through: writers and dead letters.

A :class:`Writer` never raises for a row-level problem: it returns a :class:`WriteResult` whose
``failures`` name each change that was not written, classed as retryable (the same request may
succeed later: quota, 5xx, timeout) or terminal (the row itself is wrong: it goes to the dead
letters). A failure of the whole request marks every change of the batch. A
:class:`DeadLetterSink` stores :class:`DeadLetter` values durably or raises
:class:`~ddb2bq.exceptions.RetryableError`. Implementations: :mod:`ddb2bq.bigquery` (writers)
and :mod:`ddb2bq.dead_letters` (local, S3, SQS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ddb2bq.rows import Rows


@dataclass(frozen=True, slots=True)
class Failure:
    """One change that was not written.

    ``index`` is its position in the batch given to :meth:`Writer.write`; ``reason`` a full
    sentence naming the table, key and column where known.
    """

    index: int
    reason: str
    retryable: bool
    column: str | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a batch write did: how many rows landed and which changes failed."""

    written: int
    failures: tuple[Failure, ...] = ()
    retries: int = 0
    requests: int = 0
    bytes_sent: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every change of the batch was written."""
        return not self.failures


class Writer(Protocol):
    """Writes changelog rows (or mirror rows, for ``cdc``) of a batch of changes."""

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Write ``batch``; return the failures, never raise for a row-level error."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A change that cannot be written, kept whole: the original record, the error, the time.

    ``record`` is the change's original input record (``Change.record``), JSON-serialisable
    after :func:`ddb2bq.dead_letters.to_json` turns ``bytes``/``datetime`` into text.
    ``seq`` is the change's ordering token when it was parsed: a replay keeps it, so a letter
    replayed after the generation rose still orders as the old-generation change it is.
    """

    table: str
    error: str
    failed_at_us: int
    source: str
    record: object
    event_id: str = ""
    keys: object = None
    seq: str = ""


class DeadLetterSink(Protocol):
    """Where terminal failures go: a local directory, S3 or SQS."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` durably; raise RetryableError when that cannot be done now."""
        ...
