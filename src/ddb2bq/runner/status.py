"""What ``ddb2bq status`` reports: the generation, the lease, each shard and its checkpoint, how
long before the oldest unread change is trimmed, and any gap.

It reads the state store and lists the stream; it changes nothing. Time left is counted from each
unfinished shard's checkpoint time: the runner confirms an idle shard's checkpoint every few
minutes, so a checkpoint that grows old means nothing has been read since, and the changes made
after it are trimmed 24 hours after they were made.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddb2bq.dynamodb.client import StreamsClient
from ddb2bq.dynamodb.shards import ShardInfo, list_shards, shard_info
from ddb2bq.runner.gaps import RETENTION_S, stored_gap_cause, timestamp
from ddb2bq.runner.loop import checkpoint_key
from ddb2bq.state import Checkpoint, Lease, StateStore

EXIT_GAP = 3


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One shard, listed or only remembered by its checkpoint."""

    shard_id: str
    parent_id: str | None
    state: str
    """``open``, ``closed``, or ``gone`` (no longer listed)."""
    checkpoint: Checkpoint | None

    @property
    def behind(self) -> str:
        """Records still to read, where known: none once read to its end."""
        return "0" if self.checkpoint is not None and self.checkpoint.finished else "?"


@dataclass(frozen=True, slots=True)
class Status:
    """The whole report."""

    table: str
    stream_arn: str
    generation: int
    lease: Lease | None
    shards: tuple[ShardStatus, ...]
    now: float

    @property
    def gaps(self) -> list[str]:
        """One line per shard that lost changes (recorded by the runner, or evident now)."""
        listed = {s.shard_id for s in self.shards if s.state != "gone"}
        causes = (
            (s.shard_id, stored_gap_cause(s.checkpoint, listed, self.now))
            for s in self.shards
            if s.checkpoint is not None
        )
        return [f"shard {shard_id}: {cause}" for shard_id, cause in causes if cause]

    @property
    def time_left_s(self) -> float | None:
        """Seconds until the oldest unread change may be trimmed (None: nothing read yet)."""
        times = [
            s.checkpoint.updated_at
            for s in self.shards
            if s.checkpoint is not None and not s.checkpoint.finished
        ]
        return None if not times else min(times) + RETENTION_S - self.now

    def lines(self) -> list[str]:
        """The report as text lines."""
        lease = (
            f"{self.lease.owner} (expires {timestamp(self.lease.expires_at)})"
            if self.lease is not None and not self.lease.expired(self.now)
            else "none (no runner holds the table)"
        )
        left = self.time_left_s
        out = [
            f"table        {self.table}",
            f"stream       {self.stream_arn}",
            f"generation   {self.generation}",
            f"lease        {lease}",
            "time left    "
            + ("unknown (nothing replicated yet)" if left is None else _duration(left)),
            "",
            f"{'shard':<44} {'state':<6} {'parent':<44} {'checkpoint':<24} {'age':>8} behind",
        ]
        for shard in self.shards:
            cp = shard.checkpoint
            out.append(
                f"{shard.shard_id:<44} {shard.state:<6} {shard.parent_id or '-':<44} "
                f"{_checkpoint_text(cp):<24} "
                f"{'-' if cp is None else _duration(self.now - cp.updated_at):>8} {shard.behind}"
            )
        out += [f"GAP: {gap}" for gap in self.gaps]
        return out


def read_status(
    *,
    table: str,
    stream_arn: str,
    streams: StreamsClient,
    store: StateStore,
    generation: int,
    now: float,
) -> Status:
    """Gather the report from the stream's listing and the store."""
    checkpoints = store.checkpoints(checkpoint_key(stream_arn, generation))
    listed = [shard_info(s) for s in list_shards(streams, stream_arn)]
    shards = [_listed(s, checkpoints.get(s.shard_id)) for s in listed]
    present = {s.shard_id for s in listed}
    shards += [
        ShardStatus(cp.shard_id, cp.parent_shard_id, "gone", cp)
        for cp in checkpoints.values()
        if cp.shard_id not in present
    ]
    return Status(table, stream_arn, generation, store.lease_holder(table), tuple(shards), now)


def _listed(shard: ShardInfo, checkpoint: Checkpoint | None) -> ShardStatus:
    state = "open" if shard.is_open else "closed"
    return ShardStatus(shard.shard_id, shard.parent_shard_id, state, checkpoint)


def _checkpoint_text(cp: Checkpoint | None) -> str:
    if cp is None:
        return "-"
    if cp.finished:
        return "read to its end"
    return cp.sequence_number or "nothing read yet"


def _duration(seconds: float) -> str:
    """
    >>> _duration(5400), _duration(-60), _duration(42)
    ('1.5 h', 'trimmed', '42 s')
    """
    if seconds < 0:
        return "trimmed"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
