"""Data loss on the stream: what it is, and the one message that says so.

A stream keeps records 24 hours. When the runner finds it cannot read on from a shard's
checkpoint — ``TrimmedDataAccessException``, a shard gone from the listing before it was read to
its end, or a checkpoint older than the retention — the changes between that checkpoint and the
oldest record still kept are lost for BigQuery. The runner never continues past such a gap
silently: it records it on the shard's checkpoint (``ddb2bq status`` shows it) and stops with
:class:`StreamGapError` (exit code 3).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ddb2bq.exceptions import Ddb2bqError
from ddb2bq.state import Checkpoint

RETENTION_S = 24 * 3600.0
"""How long DynamoDB Streams keeps a record (after that it "is susceptible to trimming")."""

EXIT_GAP = 3


@dataclass(frozen=True, slots=True)
class Gap:
    """Changes of one shard that can no longer be read.

    ``since`` is when the shard was last replicated (its checkpoint's time): the changes from then
    to the oldest record the stream still keeps (``detected_at`` minus the retention) are lost.
    """

    shard_id: str
    cause: str
    since: float
    detected_at: float
    sequence_number: str | None = None

    @property
    def lost_hours(self) -> float:
        """Roughly how many hours of changes are lost (0 when the checkpoint is recent)."""
        return max(0.0, self.detected_at - RETENTION_S - self.since) / 3600

    def describe(self) -> str:
        """One line for the checkpoint and the logs.

        >>> Gap("shardId-1", "TrimmedDataAccessException", 0.0, 100_000.0, "500").describe()
        'TrimmedDataAccessException after sequence number 500 (last replicated 1970-01-01T00:00:00Z)'
        """
        after = f" after sequence number {self.sequence_number}" if self.sequence_number else ""
        return f"{self.cause}{after} (last replicated {timestamp(self.since)})"


GONE = "the shard no longer exists although it was not read to its end"
TOO_OLD = "the checkpoint is older than the stream's 24-hour retention"


def stored_gap_cause(
    checkpoint: Checkpoint, listed: Collection[str], now: float, retention: float = RETENTION_S
) -> str | None:
    """Why a stored checkpoint means lost changes (the runner refuses to start past it, and
    ``ddb2bq status`` shows it), or None: a gap recorded on it, its shard gone from the listing
    (``listed``) before it was read to its end, or a checkpoint older than the retention.

    >>> stored_gap_cause(Checkpoint("s-1", None, "5", False, 0.0), {"s-1"}, 100_000.0)
    "the checkpoint is older than the stream's 24-hour retention"
    """
    if checkpoint.finished:
        return None
    if checkpoint.gap is not None:
        return checkpoint.gap
    if checkpoint.shard_id not in listed:
        return GONE
    if now - checkpoint.updated_at > retention:
        return TOO_OLD
    return None


class StreamGapError(Ddb2bqError):
    """The stream lost changes the runner had not replicated: retrying cannot bring them back; a
    new backfill in a new generation can. The message names the shards, since when, roughly how
    many hours of changes, and the repair."""

    def __init__(self, table: str, gaps: Sequence[Gap], config_path: str = "FILE") -> None:
        self.table = table
        self.gaps = tuple(gaps)
        super().__init__(gap_message(table, self.gaps, config_path))


def gap_message(table: str, gaps: Sequence[Gap], config_path: str = "FILE") -> str:
    """The sentence(s) :class:`StreamGapError` carries.

    >>> print(gap_message("orders", [Gap("shardId-1", "TrimmedDataAccessException", 0.0, 90_000.0)]))
    The stream of table 'orders' lost changes that were never replicated: shard shardId-1 (TrimmedDataAccessException (last replicated 1970-01-01T00:00:00Z)). About 1.0 hours of changes, from 1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z, are missing from BigQuery. The runner stopped rather than go on past the gap: take a new backfill in a new generation (`ddb2bq start --config FILE --new-generation`, see docs/backfill.md).
    """
    since = min(gap.since for gap in gaps)
    detected = max(gap.detected_at for gap in gaps)
    kept_from = max(since, detected - RETENTION_S)
    hours = max(gap.lost_hours for gap in gaps)
    shards = "; ".join(f"shard {gap.shard_id} ({gap.describe()})" for gap in gaps)
    amount = (
        f"About {hours:.1f} hours of changes, from {timestamp(since)} to {timestamp(kept_from)}, "
        "are missing from BigQuery."
        if hours > 0
        else f"Changes made since {timestamp(since)} may be missing from BigQuery."
    )
    return (
        f"The stream of table {table!r} lost changes that were never replicated: {shards}. "
        f"{amount} The runner stopped rather than go on past the gap: take a new backfill in a "
        f"new generation (`ddb2bq start --config {config_path} --new-generation`, see "
        "docs/backfill.md)."
    )


def timestamp(epoch_s: float) -> str:
    """ISO 8601 UTC, to the second.

    >>> timestamp(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
