"""The stream runner: what Lambda's event source mapping does, in one process of your own.

:meth:`Runner.run` holds the table's lease (or waits as a standby until it can), then loops:

1. **shards**: a full DescribeStream listing at start and every ``listing_interval``; when a
   shard ends, its children are asked for with ``ShardFilter`` CHILD_SHARDS (retried briefly:
   children may appear a moment later), falling back to a full listing where the filter is
   refused or ignored. A child is read only after its parent is read to its end.
2. **reads**: each readable shard in lineage order, one GetRecords page at a time; a page with
   records is written through the pipeline with ``ordered=True`` and the shard is read again at
   once; an empty page of an open shard backs off (:class:`~ddb2bq.runner.pacing.Pacing`).
3. **checkpoints** after each written batch: the last record written or dead-lettered, never a
   record after the first one BigQuery must take again (those stay in memory and are retried
   with back-off). A restart resumes AFTER the checkpoint; what comes again is absorbed by the
   changelog's ``event_id`` and the mirror's ``seq``.
4. **gaps** stop it (:class:`~ddb2bq.runner.gaps.StreamGapError`, exit 3): trimmed data, a shard
   gone before it was read to its end, a checkpoint older than the retention.
5. **upkeep**: renew the lease, run the mirror's MERGE every ``merge_interval`` (``merge``
   mode), report progress every ``report_interval``.

A stop request (SIGTERM/SIGINT, :class:`StopFlag`) ends the loop after the batch in hand. With
``until_caught_up`` it ends once every change made before it started is written: each shard that
existed at the start is either read to its end (closed shards, and their children), or has shown
a record created after the start, or has answered ``empty_pages_caught_up`` empty pages in a row
with nothing pending (open shards: an empty page of an open shard means it is idle).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ddb2bq.dynamodb.client import StreamsClient
from ddb2bq.dynamodb.shards import ShardInfo, child_shards, lineage_order, list_shards, shard_info
from ddb2bq.exceptions import RecordError, RetryableError
from ddb2bq.heap import frozen_heap
from ddb2bq.pipeline import Pipeline, Unparsed
from ddb2bq.records import from_get_records_record
from ddb2bq.runner.gaps import GONE, RETENTION_S, Gap, StreamGapError, stored_gap_cause
from ddb2bq.runner.pacing import Pacing
from ddb2bq.runner.reading import Read, ShardCursor, read_page, sequence_number
from ddb2bq.runner.signals import StopFlag
from ddb2bq.state import Checkpoint, Generation, Lease, StateStore

logger = logging.getLogger(__name__)

SOURCE = "getrecords"
"""The dead letters' name of the record format the runner reads (replay parses it back)."""


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """``[runner]`` settings the loop uses (seconds unless said)."""

    page_size: int = 1000
    lease_seconds: float = 30.0
    listing_interval: float = 60.0
    merge_interval: float = 60.0
    report_interval: float = 10.0
    empty_pages_caught_up: int = 3
    child_attempts: int = 10
    touch_interval: float = 300.0
    """How often an idle shard's checkpoint time is confirmed (so an old one means downtime)."""
    retention: float = RETENTION_S
    pacing: Pacing = field(default_factory=Pacing)


@dataclass(frozen=True, slots=True)
class ShardView:
    """One shard in a progress snapshot or in ``ddb2bq status``."""

    shard_id: str
    parent_id: str | None
    open: bool
    checkpoint: str | None
    finished: bool
    lag_s: float | None
    pending: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the runner reports every ``report_interval``."""

    table: str
    at: float
    written: int
    dead_lettered: int
    retries: int
    changes_per_s: float
    shards: tuple[ShardView, ...]


@dataclass(frozen=True, slots=True)
class RunReport:
    """How a run ended."""

    written: int
    dead_lettered: int
    caught_up: bool
    stopped: bool


Reporter = Callable[[Snapshot], None]


class Runner:
    """Replicates one table's stream through ``pipeline``; state in ``store``.

    >>> Runner(table="orders", stream_arn=arn, streams=boto3.client("dynamodbstreams"),
    ...        pipeline=pipeline, store=store, generation=generation).run()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        table: str,
        stream_arn: str,
        streams: StreamsClient,
        pipeline: Pipeline,
        store: StateStore,
        generation: Generation,
        settings: RunnerSettings | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
        merge: Callable[[], object] | None = None,
        report: Reporter | None = None,
        stop: StopFlag | None = None,
        config_path: str = "FILE",
    ) -> None:
        self.table = table
        self.stream_arn = stream_arn
        self.checkpoint_key = checkpoint_key(stream_arn, generation.current())
        self._streams = streams
        self._pipeline = pipeline
        self._store = store
        self._generation = generation
        self.settings = settings or RunnerSettings()
        self._clock = clock
        self._sleep = sleep
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._merge = merge
        self._report = report
        self.stop = stop or StopFlag()
        self._config_path = config_path
        self._cursors: dict[str, ShardCursor] = {}
        self._targets: set[str] | None = None
        self._lease: Lease | None = None
        self._started = 0.0
        self._next: dict[str, float] = {}
        self._last_report = (0.0, 0)

    # --- the loop ----------------------------------------------------------------------------

    def run(self, *, until_caught_up: bool = False) -> RunReport:
        """Replicate until stopped (or caught up); raises StreamGapError on a gap, LeaseLost
        when another runner took the table over."""
        self._lease = self._acquire()
        if self._lease is None:
            return self._finish(caught_up=False)
        try:
            self._started = self._clock()
            self._start()
            if until_caught_up:
                self._targets = {i for i, c in self._cursors.items() if not c.finished}
            with frozen_heap():
                caught_up = self._loop(until_caught_up)
            if self._merge is not None:  # the mirror up to date with what was written
                self._run_merge()
            return self._finish(caught_up=caught_up)
        finally:
            self._store.release_lease(self._lease)

    def _loop(self, until_caught_up: bool) -> bool:
        while not self.stop.requested:
            now = self._clock()
            self._upkeep(now)
            if until_caught_up and self.caught_up():
                return True
            due = self._due(now)
            if not due:
                self._idle(now)
                continue
            for cursor in due:
                self._poll(cursor)
                if self.stop.requested:
                    break
        return False

    def _finish(self, *, caught_up: bool) -> RunReport:
        counters = self._pipeline.counters
        self._last_report = (self._started, 0)  # the last report shows the run's average rate
        self._emit(self._clock())
        return RunReport(counters.written, counters.dead_lettered, caught_up, self.stop.requested)

    # --- the lease ---------------------------------------------------------------------------

    def _acquire(self) -> Lease | None:
        """The table's lease, waiting as a standby while another runner holds it."""
        announced = False
        while not self.stop.requested:
            lease = self._store.acquire_lease(
                self.table, self.owner, now=self._clock(), duration_s=self.settings.lease_seconds
            )
            if lease is not None:
                logger.info("Holding the lease of table %s as %s.", self.table, self.owner)
                return lease
            if not announced:
                holder = self._store.lease_holder(self.table)
                logger.info(
                    "Standing by: table %s is replicated by %s; taking over if its lease expires.",
                    self.table,
                    holder.owner if holder else "another runner",
                )
                announced = True
            self._nap(self.settings.lease_seconds / 3)
        return None

    def _renew(self, now: float) -> None:
        assert self._lease is not None
        self._lease = self._store.renew_lease(self._lease, now=now)

    # --- shards ------------------------------------------------------------------------------

    def _start(self) -> None:
        stored = self._store.checkpoints(self.checkpoint_key)
        listed = [shard_info(s) for s in list_shards(self._streams, self.stream_arn)]
        now = self._clock()
        for shard in listed:
            self._track(shard, stored.get(shard.shard_id))
        gaps = [g for g in (self._stored_gap(cp, now, listed) for cp in stored.values()) if g]
        if gaps:
            self._stop_at(gaps)
        self._next["listing"] = now + self.settings.listing_interval
        self._next["merge"] = now + self.settings.merge_interval
        self._next["report"] = now + self.settings.report_interval
        logger.info(
            "Replicating %s: %d shards (%d read to their end), generation %d.",
            self.stream_arn,
            len(self._cursors),
            sum(1 for c in self._cursors.values() if c.finished),
            self._generation.current(),
        )

    def _stored_gap(self, cp: Checkpoint, now: float, listed: Sequence[ShardInfo]) -> Gap | None:
        ids = {s.shard_id for s in listed}
        cause = stored_gap_cause(cp, ids, now, self.settings.retention)
        return (
            None
            if cause is None
            else Gap(cp.shard_id, cause, cp.updated_at, now, cp.sequence_number)
        )

    def _track(self, shard: ShardInfo, checkpoint: Checkpoint | None) -> ShardCursor:
        cursor = self._cursors.get(shard.shard_id)
        if cursor is None:
            cursor = ShardCursor(shard.shard_id, shard.parent_shard_id)
            if checkpoint is not None:
                cursor.checkpoint = checkpoint.sequence_number
                cursor.checkpoint_at = checkpoint.updated_at
                cursor.finished = checkpoint.finished
            self._cursors[shard.shard_id] = cursor
        return cursor

    def _refresh(self) -> None:
        """A full listing: new shards are tracked; an unfinished shard that left is a gap."""
        listed = [shard_info(s) for s in list_shards(self._streams, self.stream_arn)]
        for shard in listed:
            self._track(shard, None)
        present = {s.shard_id for s in listed}
        now = self._clock()
        gone = [c for i, c in self._cursors.items() if i not in present and not c.finished]
        if gone:
            cause = GONE
            self._stop_at(
                [Gap(c.shard_id, cause, c.checkpoint_at, now, c.checkpoint) for c in gone]
            )
        for shard_id in [i for i in self._cursors if i not in present]:
            del self._cursors[shard_id]  # finished and trimmed away: nothing left to read
        self._next["listing"] = now + self.settings.listing_interval

    def _children(self, parent: ShardCursor) -> None:
        """Track the children of a shard read to its end (they may appear a moment later)."""
        for attempt in range(1, self.settings.child_attempts + 1):
            children = child_shards(self._streams, self.stream_arn, parent.shard_id)
            if children is None:  # the filter is refused or ignored here (moto)
                self._refresh()
                return
            if children:
                for child in children:
                    self._track(child, None)
                    if self._targets is not None and parent.shard_id in self._targets:
                        self._targets.add(child.shard_id)
                return
            self._sleep(min(1.0, 0.05 * 2 ** (attempt - 1)))
        logger.info("Shard %s ended with no child visible yet.", parent.shard_id)

    def _readable(self, cursor: ShardCursor) -> bool:
        parent = self._cursors.get(cursor.parent_id) if cursor.parent_id else None
        return not cursor.finished and (parent is None or parent.finished)

    def _due(self, now: float) -> list[ShardCursor]:
        order = lineage_order(
            [{"ShardId": c.shard_id, "ParentShardId": c.parent_id} for c in self._cursors.values()]
        )
        ready = (self._cursors[i] for i in order)
        return [c for c in ready if self._readable(c) and c.due_at <= now]

    # --- one shard ---------------------------------------------------------------------------

    def _poll(self, cursor: ShardCursor) -> None:
        if cursor.pending:
            self._settle(cursor)
        else:
            read = read_page(self._streams, self.stream_arn, cursor, self.settings.page_size)
            self._after(cursor, read)
        if cursor.ended and not cursor.pending and not cursor.finished:
            cursor.finished = True
            self._save(cursor, finished=True)
            self._children(cursor)

    def _after(self, cursor: ShardCursor, read: Read) -> None:
        now, pacing = self._clock(), self.settings.pacing
        if read.kind == "records":
            cursor.empty_pages = cursor.throttled = 0
            cursor.pending = list(read.records)
            self._settle(cursor)
        elif read.kind == "idle":
            cursor.empty_pages += 1
            cursor.due_at = now + pacing.idle_wait(cursor.empty_pages)
            if now - cursor.checkpoint_at > self.settings.touch_interval:
                self._save(cursor)
        elif read.kind in ("throttled", "transient"):
            cursor.throttled += 1
            cursor.due_at = now + pacing.throttled_wait(cursor.throttled)
            logger.info("Shard %s: %s; backing off.", cursor.shard_id, read.error)
        elif read.kind in ("trimmed", "gone"):
            cause = f"{read.error.split(':')[0]} reading on after the checkpoint"
            self._stop_at(
                [Gap(cursor.shard_id, cause, cursor.checkpoint_at, now, cursor.checkpoint)]
            )

    def _settle(self, cursor: ShardCursor) -> None:
        """Write the pending records; checkpoint what was settled; keep the rest for a retry."""
        records = cursor.pending
        generation = self._generation.current()
        items = [_parse(r, cursor.shard_id, generation, i) for i, r in enumerate(records)]
        result = self._pipeline.process(items, ordered=True)
        cut = len(records) if result.first_retryable is None else result.first_retryable
        done, cursor.pending = records[:cut], records[cut:]
        settled = [n for n in (sequence_number(r) for r in done) if n is not None]
        if settled:
            cursor.checkpoint = settled[-1]
            cursor.newest_change_at = _created(done[-1]) or cursor.newest_change_at
            self._save(cursor)
        if cursor.pending:
            cursor.retries += 1
            wait = self.settings.pacing.retry_wait(cursor.retries)
            cursor.due_at = self._clock() + wait
            logger.warning(
                "Shard %s: %d changes will be written again in %.1f s: %s",
                cursor.shard_id,
                len(cursor.pending),
                wait,
                result.outcomes[cut].reason,
            )
        else:
            cursor.retries = 0

    def _save(self, cursor: ShardCursor, *, finished: bool = False, gap: str | None = None) -> None:
        now = self._clock()
        checkpoint = Checkpoint(
            cursor.shard_id, cursor.parent_id, cursor.checkpoint, finished, now, gap
        )
        self._store.save_checkpoint(self.checkpoint_key, checkpoint, lease=self._lease)
        cursor.checkpoint_at = now

    def _stop_at(self, gaps: Sequence[Gap]) -> None:
        for gap in gaps:
            cursor = self._cursors.get(gap.shard_id)
            if cursor is not None:
                self._save(cursor, gap=gap.describe())
        raise StreamGapError(self.table, gaps, self._config_path)

    # --- catching up, upkeep, reports --------------------------------------------------------

    def caught_up(self) -> bool:
        """Every change made before the run started is written (see the module docstring)."""
        if self._targets is None:
            return False
        return all(self._shard_caught_up(i) for i in self._targets)

    def _shard_caught_up(self, shard_id: str) -> bool:
        cursor = self._cursors.get(shard_id)
        if cursor is None or cursor.finished:
            return True
        if cursor.pending or cursor.ended:
            return False
        newer = cursor.newest_change_at is not None and cursor.newest_change_at > self._started
        return newer or cursor.empty_pages >= self.settings.empty_pages_caught_up

    def _upkeep(self, now: float) -> None:
        if now >= self._next.get("lease", 0.0):
            self._renew(now)
            self._next["lease"] = now + self.settings.lease_seconds / 3
        if now >= self._next.get("listing", 0.0):
            self._refresh()
        if self._merge is not None and now >= self._next["merge"]:
            self._run_merge()
        if now >= self._next["report"]:
            self._emit(now)

    def _run_merge(self) -> None:
        assert self._merge is not None
        try:
            self._merge()
        except RetryableError as exc:
            logger.warning("The mirror's MERGE failed and will run again: %s", exc)
        self._next["merge"] = self._clock() + self.settings.merge_interval

    def _emit(self, now: float) -> None:
        self._next["report"] = now + self.settings.report_interval
        if self._report is None:
            return
        counters = self._pipeline.counters
        then, written_then = self._last_report
        rate = (counters.written - written_then) / (now - then) if now > then and then else 0.0
        self._last_report = (now, counters.written)
        self._report(
            Snapshot(
                self.table,
                now,
                counters.written,
                counters.dead_lettered,
                counters.retries,
                rate,
                tuple(self.shard_views(now)),
            )
        )

    def shard_views(self, now: float) -> list[ShardView]:
        """Each tracked shard, for a report."""
        return [
            ShardView(
                c.shard_id,
                c.parent_id,
                not c.ended and not c.finished,
                c.checkpoint,
                c.finished,
                _lag(c, now),
                len(c.pending),
            )
            for c in self._cursors.values()
        ]

    def _idle(self, now: float) -> None:
        waits = [c.due_at for c in self._cursors.values() if self._readable(c)]
        waits += [self._next.get("listing", now + 1), self._next.get("lease", now + 1)]
        self._nap(max(0.0, min(waits) - now))

    def _nap(self, seconds: float) -> None:
        """Sleep in short slices, so that a stop request is seen soon."""
        end = self._clock() + seconds
        while not self.stop.requested:
            left = end - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, 0.25))


def _lag(cursor: ShardCursor, now: float) -> float | None:
    """How far behind a shard is: 0 once it answered an empty page with nothing pending (idle
    and caught up), else now minus the newest change read (None before any)."""
    if cursor.empty_pages and not cursor.pending:
        return 0.0
    if cursor.newest_change_at is None:
        return None
    return max(0.0, now - cursor.newest_change_at)


def checkpoint_key(stream_arn: str, generation: int) -> str:
    """Where a stream's checkpoints are kept for ``generation``: a new generation reads the
    stream again from its oldest record, past the gap that ended the old one.

    >>> checkpoint_key("arn:s", 0), checkpoint_key("arn:s", 2)
    ('arn:s', 'arn:s#generation=2')
    """
    return stream_arn if generation == 0 else f"{stream_arn}#generation={generation}"


def _parse(record: Mapping[str, Any], shard_id: str, generation: int, index: int) -> Any:
    try:
        return from_get_records_record(
            record, shard_id=shard_id, generation=generation, index=index
        )
    except RecordError as exc:
        return Unparsed(record, str(exc), str(record.get("eventID", "")))


def _created(record: Mapping[str, Any]) -> float | None:
    body = record.get("dynamodb")
    value = body.get("ApproximateCreationDateTime") if isinstance(body, Mapping) else None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


__all__ = ["RunReport", "Runner", "RunnerSettings", "Snapshot"]
