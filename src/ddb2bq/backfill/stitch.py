"""``ddb2bq start``: the stream and the backfill in the one safe order, by itself.

1. The stream is turned on if it is off (NEW_AND_OLD_IMAGES), and the tables are created
   (``ddb2bq init``, idempotent).
2. With ``new_generation`` (after a gap), the generation is raised in the state store: the stream
   is read again from its oldest record, and the new snapshot outranks everything older.
3. The stream is replicated from its oldest record by a runner in the background, **while** the
   backfill runs, so that a backfill of many hours never lets the stream fall behind its 24 hours.
4. The backfill (Scan, or an export) writes every item as a SNAPSHOT change; when it is complete,
   the generation's snapshot is recorded as complete (``T_generations``: from then on the mirror
   counts only keys whose newest change is of this generation or later, so an item deleted while
   the stream was lost does not linger) and the merge mirror is refreshed.
5. The runner goes on in the foreground (``until_caught_up``: until caught up, then exit 0).

Why it converges: every change made after the stream was turned on is replicated, with a ``seq``
above the snapshot's ``generation/0/0/0``, so for each key the newest change wins whatever the
snapshot read; an item the snapshot read is either unchanged since (the snapshot is right) or
changed after the stream was on (the change wins). It rests on two assumptions, said in
docs/backfill.md: the stream was on before the snapshot began (step 1 comes first), and the
stream keeps what the backfill overlaps (a Scan is no snapshot and an export at T may or may not
hold writes from a minute around T: both are covered because those writes are on the stream).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ddb2bq.backfill.run import Backfill, BackfillOptions, BackfillReport
from ddb2bq.config import Config
from ddb2bq.exceptions import RetryableError
from ddb2bq.pipeline import Unparsed
from ddb2bq.records import Change
from ddb2bq.runner.loop import Runner
from ddb2bq.runner.signals import StopFlag

logger = logging.getLogger(__name__)

EXIT_STOPPED = 130


@dataclass(frozen=True, slots=True)
class StartOptions:
    """``ddb2bq start``'s options."""

    until_caught_up: bool = False
    new_generation: bool = False
    backfill: BackfillOptions = field(default_factory=BackfillOptions)


@dataclass
class Parts:
    """How the pieces are made (the tests give their own clients)."""

    dynamodb: Any
    bigquery: Any
    make_runner: Callable[..., Runner]
    make_backfill: Callable[..., Backfill]
    run_backfill: Callable[[Backfill], BackfillReport]


def start(
    config: Config, options: StartOptions, parts: Parts, *, out: TextIO, stop: StopFlag
) -> int:
    """Run the steps of the module docstring; the exit code (130 when stopped by ``stop``)."""
    table = config.source.table
    _stream_on(config, parts, out)
    _init(config, parts, out)
    if options.new_generation:
        _raise_generation(config, parts, out)
    background_stop = StopFlag()
    background = parts.make_runner(config, stop=background_stop)
    runner = _Background(background)
    print(f"Replicating the stream of {table} from its oldest record while the backfill runs.",
          file=out)  # fmt: skip
    try:
        backfill = parts.make_backfill(config, options.backfill, stop=stop)
        report = parts.run_backfill(backfill)
    finally:
        background_stop.request()
        runner.join()
    if not report.complete or stop.requested:
        print("Stopped; run the same command again to resume the backfill.", file=out)
        return EXIT_STOPPED
    _snapshot_complete(config, parts, backfill, out)
    foreground = parts.make_runner(config, stop=stop)
    result = foreground.run(until_caught_up=options.until_caught_up)
    state = "caught up" if result.caught_up else "stopped"
    print(f"{table}: the stream is replicated ({state}).", file=out)
    return 0


class _Background:
    """A runner in a thread; its error, if any, is raised when it is joined."""

    def __init__(self, runner: Runner) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(runner,), daemon=True)
        self._thread.start()

    def _run(self, runner: Runner) -> None:
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 (handed to the main thread)
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _stream_on(config: Config, parts: Parts, out: TextIO) -> None:
    from ddb2bq.deploy.stack import enable_stream  # noqa: PLC0415

    state = enable_stream(parts.dynamodb, config.source.table)
    if state.changed:
        print(f"Turned on the stream of {config.source.table} (NEW_AND_OLD_IMAGES): "
              f"{state.stream_arn}.", file=out)  # fmt: skip
        _wait_active(parts.dynamodb, config.source.table)


def _wait_active(dynamodb: Any, table: str, timeout_s: float = 300.0) -> None:
    """Wait until the table is ACTIVE again after the stream was turned on: the backfill must
    not begin before the stream records every write."""
    deadline = time.monotonic() + timeout_s
    while dynamodb.describe_table(TableName=table)["Table"].get("TableStatus") != "ACTIVE":
        if time.monotonic() > deadline:
            raise RetryableError(
                f"The DynamoDB table {table!r} is not ACTIVE {timeout_s:.0f} s after its stream "
                "was turned on; run ddb2bq start again once it is."
            )
        time.sleep(1.0)


def _init(config: Config, parts: Parts, out: TextIO) -> None:
    from ddb2bq.bigquery.tables import init_tables, initial_layout  # noqa: PLC0415
    from ddb2bq.dynamodb.tables import describe_key_schema  # noqa: PLC0415

    key_schema = describe_key_schema(parts.dynamodb, config.source.table)
    for action in init_tables(parts.bigquery, config, initial_layout(config, key_schema)).actions:
        print(action, file=out)


def _raise_generation(config: Config, parts: Parts, out: TextIO) -> None:
    from ddb2bq.state.factory import generation_of, state_store_from_setting  # noqa: PLC0415

    store = state_store_from_setting(
        config.runner.checkpoints, dynamodb_client_factory=lambda: parts.dynamodb
    )
    generation = generation_of(config, store=store)
    new = generation.raise_to(generation.current() + 1)
    print(f"Generation {new}: the stream is read again from its oldest record, and the new "
          "snapshot outranks everything older. A Lambda function on this stream needs "
          f"DDB2BQ_SOURCE_GENERATION={new}.", file=out)  # fmt: skip


def _remove_zombies(backfill: Backfill, refs: Any, parts: Parts, out: TextIO) -> None:
    """The cdc mirror's keys older than the new snapshot: a REMOVE each, through the pipeline."""
    from ddb2bq.bigquery.generations import zombie_removes  # noqa: PLC0415
    from ddb2bq.records import now_micros  # noqa: PLC0415

    removes = zombie_removes(
        parts.bigquery, refs.mirror, refs.generations, backfill.pipeline.layout,
        generation=backfill.generation, table=backfill.table, now_us=now_micros(),
    )  # fmt: skip
    count = 0
    batch: list[Change | Unparsed] = []
    for change in removes:
        batch.append(change)
        if len(batch) == 500:
            count += backfill.write(batch)
            batch = []
    if batch:
        count += backfill.write(batch)
    print(f"Removed {count} items deleted while the stream was lost from the cdc mirror.",
          file=out)  # fmt: skip


def _snapshot_complete(config: Config, parts: Parts, backfill: Backfill, out: TextIO) -> None:
    from ddb2bq.backfill.build import refresh_mirror  # noqa: PLC0415
    from ddb2bq.bigquery.generations import record_complete  # noqa: PLC0415
    from ddb2bq.bigquery.tables import TableRefs  # noqa: PLC0415

    refs = TableRefs.from_config(config, parts.bigquery.project)
    record_complete(parts.bigquery, refs.generations, backfill.generation, backfill.taken_at_us)
    if config.target.mirror == "cdc":
        _remove_zombies(backfill, refs, parts, out)
    done = refresh_mirror(config, parts.bigquery)
    print(f"The snapshot of generation {backfill.generation} is complete"
          + (f"; mirror refreshed: {done}." if done else "."), file=out)  # fmt: skip
