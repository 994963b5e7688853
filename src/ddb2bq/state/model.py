"""The values the state store keeps, the interface both stores implement, and the rules they share.

- :class:`Checkpoint`: how far one shard of a stream has been replicated.
- :class:`Lease`: which runner may replicate a table now, with a fencing token.
- :class:`StateStore`: the interface of :mod:`ddb2bq.state.sqlite` and :mod:`ddb2bq.state.dynamodb`.
- :func:`merge_checkpoints`: the one rule that keeps checkpoints monotonic, applied by both stores
  inside their conditional write, so no caller can move a shard backwards.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from ddb2bq.state.errors import StateError

MAX_GENERATION = 2**64 - 1
"""A generation is the first of ``seq``'s four sections of 16 hex digits."""

_SEQUENCE_NUMBER = re.compile(r"[0-9]{1,64}")


@dataclass(frozen=True)
class Checkpoint:
    """How far one shard has been replicated.

    ``sequence_number`` is the last record written or dead-lettered (None: nothing read yet), a
    decimal string of up to 40 digits kept as text (it does not fit an int64 or a float).
    ``finished`` means the shard was read to its end; ``gap`` describes detected data loss, such as
    ``"TrimmedDataAccessException at 2026-01-02T03:04:05Z"``, and is None normally.

    >>> Checkpoint("shardId-1", None, "4000000000000000000001", False, 1700000000.0).position
    4000000000000000000001
    """

    shard_id: str
    parent_shard_id: str | None
    sequence_number: str | None
    finished: bool
    updated_at: float
    gap: str | None = None

    def __post_init__(self) -> None:
        if not self.shard_id:
            raise StateError("A checkpoint needs a shard id; got an empty one.")
        seq = self.sequence_number
        if seq is not None and not _SEQUENCE_NUMBER.fullmatch(seq):
            raise StateError(
                f"The checkpoint of shard {self.shard_id!r} has sequence number {seq!r}; "
                "a stream sequence number is a string of decimal digits."
            )
        check_time(self.updated_at, f"the checkpoint of shard {self.shard_id!r}")

    @property
    def position(self) -> int | None:
        """The sequence number as an integer, for comparisons (None: nothing read yet)."""
        return None if self.sequence_number is None else int(self.sequence_number)


@dataclass(frozen=True)
class Lease:
    """The right of one runner (``owner``) to replicate ``table`` until ``expires_at`` (epoch s).

    ``token`` is a fencing token: it rises on every acquisition, so a write made under an older
    token is refused even after that runner wakes from a long pause believing it still holds it.
    """

    table: str
    owner: str
    expires_at: float
    token: int

    def expired(self, now: float) -> bool:
        """True when another owner may take the lease over at ``now``.

        >>> Lease("orders", "runner-a", expires_at=100.0, token=1).expired(100.5)
        True
        """
        return self.expires_at < now


@dataclass(frozen=True)
class SegmentProgress:
    """How far one segment of a parallel-Scan backfill is safely in BigQuery.

    ``last_key`` is the segment's ``LastEvaluatedKey`` (boto3's form, as JSON text: binary keys
    as base64) after the last page whose items are loaded; None means start at the segment's
    beginning. ``done`` once the segment answered no ``LastEvaluatedKey``. ``total`` is the
    ``TotalSegments`` of the backfill, fixed for its life.
    """

    segment: int
    total: int
    last_key: str | None
    done: bool
    items: int
    updated_at: float


class StateStore(Protocol):
    """Per replicated table: its generation and lease; per stream shard: its checkpoint.

    Implemented by :class:`~ddb2bq.state.sqlite.SqliteStateStore` (a local file, the default) and
    :class:`~ddb2bq.state.dynamodb.DynamoDBStateStore` (a DynamoDB table, for containers).
    """

    def stored_generation(self, table: str) -> int | None:
        """The stored generation of ``table``; None when none was ever stored."""
        ...

    def store_generation(self, table: str, generation: int) -> None:
        """Store ``generation``; raises StateError when it is lower than the stored one."""
        ...

    def checkpoints(self, stream_arn: str) -> dict[str, Checkpoint]:
        """Every shard's checkpoint of the stream, by shard id."""
        ...

    def save_checkpoint(
        self, stream_arn: str, checkpoint: Checkpoint, *, lease: Lease | None = None
    ) -> None:
        """Merge ``checkpoint`` into the stored one (:func:`merge_checkpoints`); with ``lease``,
        only while it is still the table's current lease, else raise LeaseLost."""
        ...

    def acquire_lease(
        self, table: str, owner: str, *, now: float, duration_s: float
    ) -> Lease | None:
        """Take the lease of ``table``; None while another owner holds an unexpired one."""
        ...

    def renew_lease(self, lease: Lease, *, now: float, duration_s: float | None = None) -> Lease:
        """Extend ``lease`` to ``now + duration_s`` (default: its last duration); raises
        LeaseLost when another owner took it over."""
        ...

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up so another runner may take it at once; a lost lease is left alone."""
        ...

    def lease_holder(self, table: str) -> Lease | None:
        """The lease of ``table`` as stored (possibly expired); None when nobody holds it."""
        ...

    def backfill_progress(self, table: str, generation: int) -> dict[int, SegmentProgress]:
        """The saved progress of ``table``'s backfill in ``generation``, by segment."""
        ...

    def save_backfill_progress(
        self, table: str, generation: int, progress: SegmentProgress
    ) -> None:
        """Save one segment's progress (a done segment stays done)."""
        ...

    def close(self) -> None:
        """Release the store's resources (not the lease)."""
        ...


def merge_checkpoints(stored: Checkpoint | None, new: Checkpoint) -> Checkpoint:
    """The checkpoint to store when ``new`` is saved over ``stored``: never backwards.

    The sequence number only rises (compared as integers), a finished shard stays finished and a
    recorded gap stays recorded, so a late or replayed save cannot lose progress or hide data loss.

    >>> old = Checkpoint("s-1", None, "200", True, 10.0)
    >>> merge_checkpoints(old, Checkpoint("s-1", None, "100", False, 20.0))
    Checkpoint(shard_id='s-1', parent_shard_id=None, sequence_number='200', finished=True, updated_at=20.0, gap=None)
    """
    if stored is None:
        return new
    newer = new.position is not None and (stored.position is None or stored.position < new.position)
    return Checkpoint(
        shard_id=new.shard_id,
        parent_shard_id=new.parent_shard_id or stored.parent_shard_id,
        sequence_number=new.sequence_number if newer else stored.sequence_number,
        finished=stored.finished or new.finished,
        updated_at=max(stored.updated_at, new.updated_at),
        gap=new.gap if new.gap is not None else stored.gap,
    )


def check_generation(table: str, generation: int) -> int:
    """``generation`` if it can start a ``seq`` (an int from 0 to 2**64 - 1), else StateError."""
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise StateError(f"The generation of table {table!r} must be an int; got {generation!r}.")
    if not 0 <= generation <= MAX_GENERATION:
        raise StateError(
            f"The generation of table {table!r} must be from 0 to 2**64 - 1 (16 hex digits); "
            f"got {generation}."
        )
    return generation


def check_time(value: float, what: str) -> float:
    """``value`` if it is a finite number of epoch seconds, else StateError naming ``what``."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise StateError(f"The time of {what} must be finite epoch seconds; got {value!r}.")
    return float(value)


def check_lease_request(table: str, owner: str, now: float, duration_s: float) -> None:
    """StateError unless the table and owner are named and the times are usable."""
    if not table or not owner:
        raise StateError(f"A lease needs a table and an owner; got {table!r} and {owner!r}.")
    check_time(now, f"the lease of table {table!r}")
    if check_time(duration_s, f"the lease of table {table!r}") <= 0:
        raise StateError(f"The lease of table {table!r} needs a positive duration_s.")


def lease_lost(lease: Lease, holder: Lease | None) -> str:
    """The message of :class:`~ddb2bq.state.errors.LeaseLost` for ``lease``, naming the holder."""
    now_held = (
        f"{holder.owner!r} holds it now (token {holder.token})"
        if holder is not None
        else "nobody holds it now"
    )
    return (
        f"The lease on table {lease.table!r} of {lease.owner!r} (token {lease.token}) was lost: "
        f"{now_held}; stop this runner, another one is replicating the table."
    )
