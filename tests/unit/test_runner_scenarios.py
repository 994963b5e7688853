"""The stream runner on the scriptable stream double: splits, lineage chains, trimmed data,
expiring iterators, throttling, late children, idle shards. Time is the double's clock: the
runner's sleeps move it forward, so nothing here waits and calls are counted, never timed."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import io
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ddb2bq.cli.run import run_runner, run_status
from ddb2bq.config import ColumnsConfig, Config, RunnerConfig, SourceConfig, TargetConfig
from ddb2bq.heap import is_frozen
from ddb2bq.pipeline import Pipeline
from ddb2bq.rows import Rows
from ddb2bq.runner.build import runner_from_config, status_from_config
from ddb2bq.runner.gaps import StreamGapError
from ddb2bq.runner.loop import Runner, RunnerSettings
from ddb2bq.runner.signals import StopFlag
from ddb2bq.schema import build_layout
from ddb2bq.state import Generation, SqliteStateStore
from tests.doubles.dead_letters import ListDeadLetters
from tests.doubles.streams import StreamDouble
from tests.doubles.writers import FakeWriter, Verdict

CONFIG = Config(
    source=SourceConfig(table="orders"),
    target=TargetConfig(project="p", dataset="d"),
    columns=ColumnsConfig(),
)
LAYOUT = build_layout([("pk", "S")])


class Harness:
    """A runner over ``stream`` whose writer keeps every changelog row it took, in order."""

    def __init__(self, stream: StreamDouble, path: Path, **settings: Any) -> None:
        self.stream = stream
        self.fail: dict[str, Verdict] = {}
        self.on_write: list[Any] = []
        self.writer = FakeWriter(self._verdict)
        self.letters = ListDeadLetters()
        self.store = SqliteStateStore(path / "state.sqlite")
        self.stop = StopFlag()
        self.settings = RunnerSettings(**{"lease_seconds": 30.0, **settings})

    def _verdict(self, rows: Rows) -> Verdict:
        for hook in self.on_write:
            hook(rows)
        return self.fail.get(rows.change.event_id)

    def runner(self) -> Runner:
        pipeline = Pipeline(CONFIG, LAYOUT, lambda layout: self.writer, self.letters)
        return Runner(
            table="orders",
            stream_arn=self.stream.stream_arn,
            streams=self.stream,
            pipeline=pipeline,
            store=self.store,
            generation=Generation(0, self.store, "orders"),
            settings=self.settings,
            clock=lambda: self.stream.clock,
            sleep=self.stream.advance,
            stop=self.stop,
        )

    def written(self) -> list[str]:
        """Sequence numbers of the changes written, in the order they were taken."""
        rows = [r for batch in self.writer.batches for r in batch]
        landed = set(self.writer.written)
        return [str(r.change.sequence_number) for r in rows if r.change.event_id in landed]


def put_many(stream: StreamDouble, count: int, start: int = 0) -> list[str]:
    return [
        stream.put({"pk": {"S": f"k{n % 17}"}}, {"pk": {"S": f"k{n % 17}"}, "n": {"N": str(n)}})
        for n in range(start, start + count)
    ]


def assert_once_and_in_lineage_order(harness: Harness, expected: list[str]) -> None:
    written = harness.written()
    assert Counter(written) == Counter(expected), "every record written exactly once"
    # per key, the order written is the order of the sequence numbers (parents before children)
    by_key: dict[str, list[int]] = {}
    rows = [r for batch in harness.writer.batches for r in batch]
    for r in rows:
        by_key.setdefault(r.change.keys["pk"]["S"], []).append(int(str(r.change.sequence_number)))
    assert all(numbers == sorted(numbers) for numbers in by_key.values())


def test_a_shard_that_splits_at_record_n_is_read_parent_first(tmp_path: Path) -> None:
    # GIVEN a stream whose only shard split after 40 records, 60 more going to its children
    stream = StreamDouble()
    before = put_many(stream, 40)
    stream.split(stream.open_shards()[0], 2)
    after = put_many(stream, 60, start=40)
    harness = Harness(stream, tmp_path, page_size=7)
    # WHEN the runner replicates until caught up
    report = harness.runner().run(until_caught_up=True)
    # THEN every record is written once, each key's changes in order, parent before children
    assert report.caught_up
    assert_once_and_in_lineage_order(harness, before + after)
    assert harness.written()[:40] == before


def test_the_loop_runs_with_the_heap_it_started_with_out_of_the_collectors_reach(
    tmp_path: Path,
) -> None:
    # GIVEN a stream of 20 records, and a look at the collector at each write
    stream = StreamDouble()
    put_many(stream, 20)
    harness = Harness(stream, tmp_path, page_size=5)
    frozen: list[int] = []
    harness.on_write.append(lambda rows: frozen.append(gc.get_freeze_count()))
    assert not is_frozen()
    # WHEN the runner replicates until caught up
    harness.runner().run(until_caught_up=True)
    # THEN what the process held before the loop was frozen while it ran (every module object:
    # thousands), and is back with the collector after
    assert len(frozen) == 20
    assert min(frozen) > 1_000
    assert not is_frozen()


def test_a_chain_of_closed_shards_generations_deep_is_read_in_lineage_order(
    tmp_path: Path,
) -> None:
    # GIVEN four generations of shards, each split after some records, all but the last closed
    stream = StreamDouble(describe_page_size=2)
    expected = put_many(stream, 10)
    for depth in range(4):
        for shard in stream.open_shards():
            stream.split(shard, 2 if depth % 2 == 0 else 1)
        expected += put_many(stream, 15, start=100 * (depth + 1))
    harness = Harness(stream, tmp_path, page_size=4)
    # WHEN replicated
    harness.runner().run(until_caught_up=True)
    # THEN each record once, and no child's record before its parent's end
    assert_once_and_in_lineage_order(harness, expected)


def test_a_checkpoint_behind_the_trim_horizon_stops_with_a_gap(tmp_path: Path) -> None:
    # GIVEN a replication that wrote 10 records, then was down for 30 hours while 20 more came
    # and the stream trimmed what is older than 24 hours
    stream = StreamDouble()
    put_many(stream, 10)
    harness = Harness(stream, tmp_path)
    harness.runner().run(until_caught_up=True)
    put_many(stream, 20, start=10)
    stream.advance(30 * 3600)
    stream.trim_older_than()
    put_many(stream, 5, start=30)
    # WHEN it runs again
    with pytest.raises(StreamGapError) as caught:
        harness.runner().run(until_caught_up=True)
    # THEN it stops, naming the shard, since when, how long, and the repair
    message = str(caught.value)
    shard = stream.open_shards()[0]
    assert f"shard {shard}" in message
    assert "orders" in message
    assert "About 6.0 hours of changes" in message
    assert "--new-generation" in message
    # AND the gap is recorded, so the next start refuses too
    (checkpoint,) = harness.store.checkpoints(stream.stream_arn).values()
    assert checkpoint.gap is not None
    with pytest.raises(StreamGapError):
        harness.runner().run(until_caught_up=True)
    assert len(harness.written()) == 10


def test_an_iterator_expiring_mid_shard_is_renewed_after_the_last_record_read(
    tmp_path: Path,
) -> None:
    # GIVEN a shard of 50 records whose iterators expire after the first batch is written
    stream = StreamDouble()
    expected = put_many(stream, 50)
    harness = Harness(stream, tmp_path, page_size=10)
    expired: list[bool] = []

    def expire_once(rows: Rows) -> None:
        if not expired:
            expired.append(True)
            stream.expire_iterators()

    harness.on_write.append(expire_once)
    # WHEN replicated THEN every record once, none skipped, none doubled
    harness.runner().run(until_caught_up=True)
    assert_once_and_in_lineage_order(harness, expected)
    assert stream.calls["GetShardIterator"] == 2


def test_throttling_bursts_back_off_and_lose_nothing(tmp_path: Path) -> None:
    # GIVEN 30 records and GetRecords throttled 6 times in a row
    stream = StreamDouble(shards=2)
    expected = put_many(stream, 30)
    stream.throttle(6, operation="GetRecords")
    harness = Harness(stream, tmp_path, page_size=5)
    start = stream.clock
    # WHEN replicated
    harness.runner().run(until_caught_up=True)
    # THEN all written once, and the runner waited (the clock moved) instead of hammering
    assert_once_and_in_lineage_order(harness, expected)
    assert stream.clock > start


def test_children_that_appear_late_are_still_read(tmp_path: Path) -> None:
    # GIVEN a split whose children are listed only after 3 more DescribeStream calls
    stream = StreamDouble()
    expected = put_many(stream, 12)
    stream.split(stream.open_shards()[0], 2, visible_after=3)
    expected += put_many(stream, 12, start=12)
    harness = Harness(stream, tmp_path)
    # WHEN replicated THEN the children's records arrive, after the parent's
    harness.runner().run(until_caught_up=True)
    assert_once_and_in_lineage_order(harness, expected)


@pytest.mark.parametrize("mode", ["ignore", "refuse", "unsupported"])
def test_without_the_shard_filter_children_come_from_a_full_listing(
    tmp_path: Path, mode: Any
) -> None:
    stream = StreamDouble(shard_filter=mode)
    expected = put_many(stream, 8)
    stream.split(stream.open_shards()[0], 2)
    expected += put_many(stream, 8, start=8)
    harness = Harness(stream, tmp_path)
    harness.runner().run(until_caught_up=True)
    assert_once_and_in_lineage_order(harness, expected)


def test_an_idle_shard_is_polled_a_bounded_number_of_times_per_second(tmp_path: Path) -> None:
    # GIVEN an idle stream of two open shards
    stream = StreamDouble(shards=2)
    harness = Harness(stream, tmp_path)
    runner = harness.runner()
    end = stream.clock + 120

    def stop_after_two_minutes(seconds: float) -> None:
        stream.advance(seconds)
        if stream.clock >= end:
            harness.stop.request()

    runner._sleep = stop_after_two_minutes
    # WHEN the runner runs for two minutes of the stream's clock
    runner.run()
    # THEN each shard got at most ~1 call a second (the first ones faster, then 1 a second)
    for shard in stream.open_shards():
        calls = stream.shard_calls[("GetRecords", shard)]
        assert 100 <= calls <= 130, calls


def test_a_retryable_write_is_not_checkpointed_and_is_written_later(tmp_path: Path) -> None:
    # GIVEN BigQuery refusing the 5th change for now
    stream = StreamDouble()
    numbers = put_many(stream, 10)
    harness = Harness(stream, tmp_path)
    fifth = None

    def record_fifth(rows: Rows) -> None:
        nonlocal fifth
        if rows.change.sequence_number == numbers[4] and fifth is None:
            fifth = rows.change.event_id
            harness.fail[fifth] = True

    harness.on_write.insert(0, record_fifth)
    first_run = harness.runner()
    # WHEN the runner runs a few (simulated) seconds, then the cause passes
    end = stream.clock + 3

    def stop_soon(seconds: float) -> None:
        stream.advance(seconds)
        if stream.clock >= end:
            harness.stop.request()

    first_run._sleep = stop_soon
    first_run.run()
    (checkpoint,) = harness.store.checkpoints(stream.stream_arn).values()
    # THEN the checkpoint stopped before the change that must be retried
    assert checkpoint.sequence_number == numbers[3]
    # AND once BigQuery takes it, a new run writes the rest (rows the writer took behind the
    # retried change come again: same event id and seq, absorbed by the mirror)
    assert fifth is not None
    harness.fail.clear()
    harness.stop = StopFlag()
    harness.runner().run(until_caught_up=True)
    assert sorted(set(harness.written())) == numbers
    (checkpoint,) = harness.store.checkpoints(stream.stream_arn).values()
    assert checkpoint.sequence_number == numbers[-1]
    assert harness.letters.letters == []


def test_a_second_runner_stands_by_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    # GIVEN a runner holding the table's lease
    stream = StreamDouble()
    put_many(stream, 3)
    first = Harness(stream, tmp_path)
    lease = first.store.acquire_lease("orders", "someone-else", now=stream.clock, duration_s=60)
    assert lease is not None
    # WHEN another starts THEN it stands by (reads nothing) until the lease expires, then works
    second = first.runner()
    second.run(until_caught_up=True)
    assert len(first.written()) == 3
    assert stream.clock - lease.expires_at >= 0


# --- the command line: exit 3 and the message, and status showing the gap ----------------------


class TableOf:
    """DescribeTable of the double's table: its stream on."""

    def __init__(self, stream: StreamDouble) -> None:
        self._stream = stream

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {
            "Table": {
                "TableName": TableName,
                "StreamSpecification": {
                    "StreamEnabled": True,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "LatestStreamArn": self._stream.stream_arn,
            }
        }


def test_trimmed_data_exits_3_with_the_message_and_status_shows_the_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a replication 30 hours behind a stream that trimmed what it had not read
    stream = StreamDouble()
    put_many(stream, 5)
    harness = Harness(stream, tmp_path)
    harness.runner().run(until_caught_up=True)
    put_many(stream, 5, start=5)
    stream.advance(30 * 3600)
    stream.trim_older_than()
    config = dataclasses.replace(
        CONFIG, runner=RunnerConfig(checkpoints=str(tmp_path / "state.sqlite"))
    )
    pipeline = Pipeline(CONFIG, LAYOUT, lambda layout: harness.writer, harness.letters)
    parts = {"dynamodb": TableOf(stream), "streams": stream, "clock": lambda: stream.clock}
    build = functools.partial(runner_from_config, pipeline=pipeline, **parts)
    args = argparse.Namespace(config="ddb2bq.toml", until_caught_up=True)
    err = io.StringIO()
    # WHEN `ddb2bq run` runs THEN it exits 3, naming the shard, the hours and the repair
    assert run_runner(args, config, stderr=err, build=build) == 3
    message = err.getvalue()
    assert f"shard {stream.open_shards()[0]}" in message
    assert "About 6.0 hours of changes" in message
    assert "ddb2bq start --config ddb2bq.toml --new-generation" in message
    assert "Traceback" not in message
    # AND `ddb2bq status` shows the gap and exits 3
    out = io.StringIO()
    status = functools.partial(status_from_config, dynamodb=TableOf(stream), streams=stream)
    assert run_status(args, config, stdout=out, build=status) == 3
    assert "GAP: shard " in out.getvalue()
    assert "older than the stream's 24-hour retention" in out.getvalue()


def test_records_trimmed_before_they_are_read_stop_the_run_mid_shard(tmp_path: Path) -> None:
    # GIVEN a running replication whose stream trims records it has not read yet
    stream = StreamDouble()
    put_many(stream, 10)
    harness = Harness(stream, tmp_path, page_size=4)
    trimmed: list[bool] = []

    def trim_ahead(rows: Rows) -> None:
        if not trimmed:
            trimmed.append(True)
            stream.trim_before(int(put_many(stream, 1, start=99)[0]))

    harness.on_write.append(trim_ahead)
    # WHEN it reads on THEN TrimmedDataAccessException stops it; what it wrote is kept
    with pytest.raises(StreamGapError, match="TrimmedDataAccessException"):
        harness.runner().run(until_caught_up=True)
    assert len(harness.written()) == 4


def test_on_gap_backfill_takes_a_new_generation_instead_of_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a replication 30 hours behind a trimmed stream, and [runner] on_gap = "backfill"
    stream = StreamDouble()
    put_many(stream, 5)
    harness = Harness(stream, tmp_path)
    harness.runner().run(until_caught_up=True)
    stream.advance(30 * 3600)
    stream.trim_older_than()
    runner_config = RunnerConfig(checkpoints=str(tmp_path / "state.sqlite"), on_gap="backfill")
    config = dataclasses.replace(CONFIG, runner=runner_config)
    pipeline = Pipeline(CONFIG, LAYOUT, lambda layout: harness.writer, harness.letters)
    build = functools.partial(runner_from_config, pipeline=pipeline, dynamodb=TableOf(stream),
                              streams=stream, clock=lambda: stream.clock)  # fmt: skip
    started: list[argparse.Namespace] = []

    def start(args: argparse.Namespace, config: Config) -> int:
        started.append(args)
        return 0

    monkeypatch.setattr("ddb2bq.cli.start.run_start", start)
    args = argparse.Namespace(config="ddb2bq.toml", until_caught_up=True)
    err = io.StringIO()
    # WHEN `ddb2bq run` meets the gap THEN it starts a new generation, with the backfill's defaults
    assert run_runner(args, config, stderr=err, build=build) == 0
    (given,) = started
    assert given.new_generation
    assert given.until_caught_up
    assert (given.segments, given.export, given.from_export) == (None, None, None)
    assert 'on_gap = "backfill"' in err.getvalue()
