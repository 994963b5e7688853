"""The pipeline with fake writers and dead letters: every change gets exactly one outcome, and on
an ordered stream nothing after the first retryable change is acted upon."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions as api

from ddb2bq.bigquery import tables
from ddb2bq.config import ColumnsConfig, Config, SourceConfig, TargetConfig
from ddb2bq.contract import Deadline, current_deadline
from ddb2bq.pipeline import ConflictCounter, Pipeline, Unparsed
from ddb2bq.records import Change, make_seq
from ddb2bq.schema import TableLayout, build_layout
from tests.doubles.dead_letters import ListDeadLetters as FakeDeadLetters
from tests.doubles.writers import FakeWriter

CONFIG = Config(
    source=SourceConfig(table="orders"),
    target=TargetConfig(project="p", dataset="d"),
    columns=ColumnsConfig(promote=("total",), types={"total": "INT64"}),
)
LAYOUT = build_layout([("id", "S")], promoted={"total": "INT64"})


def change(key: str, position: int, **attributes: dict[str, Any]) -> Change:
    keys = {"id": {"S": key}}
    new = {**keys, **attributes}
    record = {"eventID": f"e{position}", "dynamodb": {"Keys": keys, "NewImage": new}}
    return Change("INSERT", keys, new, None, make_seq(0, position), 1_700_000_000_000_000,
                  f"e{position}", table="orders", record=record)  # fmt: skip


class Sink:
    """The pipeline, unordered (as a replay uses it): ``write`` is ``process(ordered=False)``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.conflicts = pipeline.conflicts

    def write(self, items: Any) -> Any:
        return self.pipeline.process(items, ordered=False)


def pipeline(writer: FakeWriter, letters: FakeDeadLetters, **kwargs: Any) -> Pipeline:
    def factory(layout: TableLayout) -> FakeWriter:
        return writer

    return Pipeline(CONFIG, LAYOUT, factory, letters, clock=lambda: 42, **kwargs)


def sink(writer: FakeWriter, letters: FakeDeadLetters, **kwargs: Any) -> Sink:
    return Sink(pipeline(writer, letters, **kwargs))


def test_every_change_is_written_when_the_writer_takes_all() -> None:
    # GIVEN three changes WHEN written THEN three outcomes, all written, one request
    writer, letters = FakeWriter(), FakeDeadLetters()
    result = sink(writer, letters).write([change("a", 1), change("b", 2), change("c", 3)])
    assert [o.status for o in result.outcomes] == ["written"] * 3
    assert result.first_retryable is None
    assert [r.changelog["id"] for r in writer.batches[0]] == ["a", "b", "c"]
    assert letters.letters == []


def test_a_change_that_cannot_be_converted_is_dead_lettered_alone() -> None:
    # GIVEN a change without its key attribute between two good ones
    broken = Change("INSERT", {"other": {"S": "x"}}, {"other": {"S": "x"}}, None,
                    make_seq(0, 2), 0, "e2", table="orders", record={"eventID": "e2"})  # fmt: skip
    writer, letters = FakeWriter(), FakeDeadLetters()
    # WHEN the batch is written
    result = sink(writer, letters).write([change("a", 1), broken, change("c", 3)])
    # THEN the others are written and the broken one goes whole to the dead letters
    assert [o.status for o in result.outcomes] == ["written", "dead_lettered", "written"]
    assert [r.change.event_id for r in writer.batches[0]] == ["e1", "e3"]
    (letter,) = letters.letters
    assert letter.record == {"eventID": "e2"}
    assert (letter.table, letter.event_id, letter.failed_at_us) == ("orders", "e2", 42)
    assert "key attribute 'id'" in letter.error


def test_terminal_row_failures_go_to_the_dead_letters_and_retryable_ones_are_reported() -> None:
    # GIVEN a writer refusing b for good and c for now
    fail = {"b": False, "c": True}
    writer = FakeWriter(lambda rows: fail.get(rows.changelog["id"]))
    letters = FakeDeadLetters()
    # WHEN four changes are written
    result = sink(writer, letters).write(
        [change("a", 1), change("b", 2), change("c", 3), change("d", 4)]
    )
    # THEN each change has its own outcome, and the first to retry is c
    assert [o.status for o in result.outcomes] == [
        "written", "dead_lettered", "retryable", "written",
    ]  # fmt: skip
    assert result.first_retryable == 2
    assert (result.count("written"), result.count("dead_lettered")) == (2, 1)
    assert [letter.event_id for letter in letters.letters] == ["e2"]
    assert letters.letters[0].error == "row 1 refused"


def test_when_the_dead_letters_are_down_terminal_changes_become_retryable() -> None:
    # GIVEN a row BigQuery refuses and dead letters that cannot be reached
    writer = FakeWriter(lambda rows: False if rows.changelog["id"] == "b" else None)
    # WHEN written THEN the refused change is not lost: it is to be retried
    result = sink(writer, FakeDeadLetters(unreachable=True)).write([change("a", 1), change("b", 2)])
    assert [o.status for o in result.outcomes] == ["written", "retryable"]
    assert "unreachable" in result.outcomes[1].reason


def test_type_conflicts_are_counted_per_column_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN values that do not fit the INT64 column `total`
    writer, letters = FakeWriter(), FakeDeadLetters()
    target = sink(writer, letters)
    batch = [change("a", 1, total={"S": "ten"}), change("b", 2, total={"N": "1.5"})]
    # WHEN written twice
    target.write(batch)
    target.write(batch)
    # THEN the rows are written with the column NULL, each conflict counted, one warning
    assert [o.status for o in target.write(batch).outcomes] == ["written", "written"]
    assert writer.batches[0][0].changelog["total"] is None
    assert target.conflicts.counts == {"total": 6}
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "ten" not in warnings[0].getMessage()  # values are user data: not in the warning


def test_cdc_mirror_rows_are_written_after_their_changelog_rows() -> None:
    # GIVEN a changelog writer refusing b and a cdc writer refusing c for now
    changelog = FakeWriter(lambda rows: False if rows.changelog["id"] == "b" else None)
    mirror = FakeWriter(lambda rows: True if rows.changelog["id"] == "c" else None)
    letters = FakeDeadLetters()
    target = sink(changelog, letters, mirror_writer_for=lambda layout: mirror)
    # WHEN written
    result = target.write([change("a", 1), change("b", 2), change("c", 3)])
    # THEN the mirror sees only the changes the changelog took, and c is retried
    assert [r.changelog["id"] for r in mirror.batches[0]] == ["a", "c"]
    assert [o.status for o in result.outcomes] == ["written", "dead_lettered", "retryable"]


def test_conflict_counter_counts_without_logging_again() -> None:
    counter = ConflictCounter()
    counter.add([("a", "x"), ("b", "y"), ("a", "z")])
    assert counter.counts == {"a": 2, "b": 1}


class RefusingClient:
    """A BigQuery client whose every table call fails with ``error``."""

    project = "p"

    def __init__(self, error: Exception) -> None:
        self._error = error

    def get_table(self, *args: Any, **kwargs: Any) -> Any:
        raise self._error


def evolving_sink(client: RefusingClient, writer: FakeWriter) -> Sink:
    settings = Config(
        source=SourceConfig(table="orders"),
        target=TargetConfig(project="p", dataset="d"),
        columns=ColumnsConfig(promote=("total", "status")),
    )

    def evolve(layout: TableLayout, attributes: Any) -> TableLayout:
        return tables.evolve(client, settings, layout, attributes)  # type: ignore[arg-type]

    return Sink(Pipeline(settings, LAYOUT, lambda layout: writer, FakeDeadLetters(), evolve=evolve))


def test_a_column_bigquery_will_not_add_leaves_the_values_in_item() -> None:
    # GIVEN a new promoted attribute and BigQuery refusing the schema change for good
    writer = FakeWriter()
    target = evolving_sink(RefusingClient(api.BadRequest("Too many columns")), writer)
    # WHEN a batch shows it twice THEN the rows are written without it, and it is tried once
    first = target.write([change("a", 1, status={"S": "new"})])
    second = target.write([change("b", 2, status={"S": "new"})])
    assert [o.status for o in (*first.outcomes, *second.outcomes)] == ["written", "written"]
    assert "status" not in writer.batches[0][0].changelog
    assert '"status":"new"' in writer.batches[1][0].changelog["item"]


def test_a_schema_change_that_may_pass_later_makes_the_batch_retryable() -> None:
    # GIVEN BigQuery unavailable while a new promoted attribute needs its column
    writer = FakeWriter()
    target = evolving_sink(RefusingClient(api.ServiceUnavailable("try later")), writer)
    # WHEN written THEN nothing is written and every change is to be retried
    result = target.write([change("a", 1, status={"S": "new"}), change("b", 2)])
    assert [o.status for o in result.outcomes] == ["retryable", "retryable"]
    assert writer.batches == []


# --- ordered streams ---------------------------------------------------------------------------


def test_on_an_ordered_stream_nothing_after_the_first_retryable_change_is_acted_upon() -> None:
    # GIVEN a writer refusing b for now and d for good, and an unparsable record at the end
    fail = {"b": True, "d": False}
    writer, letters = FakeWriter(lambda rows: fail.get(rows.changelog["id"])), FakeDeadLetters()
    bad = Unparsed({"eventID": "e5"}, "no dynamodb section", "e5")
    batch = [change("a", 1), change("b", 2), change("c", 3), change("d", 4), bad]
    # WHEN the batch is processed as an ordered stream
    result = pipeline(writer, letters).process(batch, ordered=True)
    # THEN a is written, b is to be retried, and everything after b is retryable too:
    # neither d (refused) nor the unparsable record is dead-lettered (they come again)
    assert [o.status for o in result.outcomes] == ["written"] + ["retryable"] * 4
    assert result.first_retryable == 1
    assert letters.letters == []
    assert "earlier change" in result.outcomes[2].reason


def test_unordered_the_same_batch_settles_everything_it_can() -> None:
    fail = {"b": True, "d": False}
    writer, letters = FakeWriter(lambda rows: fail.get(rows.changelog["id"])), FakeDeadLetters()
    bad = Unparsed({"eventID": "e5"}, "no dynamodb section", "e5")
    batch = [change("a", 1), change("b", 2), change("c", 3), change("d", 4), bad]
    result = pipeline(writer, letters).process(batch, ordered=False)
    assert [o.status for o in result.outcomes] == [
        "written", "retryable", "written", "dead_lettered", "dead_lettered",
    ]  # fmt: skip
    assert letters.event_ids() == ["e4", "e5"]


def test_unparsable_records_go_whole_to_the_dead_letters_in_order_with_the_refused_rows() -> None:
    # GIVEN an unparsable record, a change BigQuery refuses, and another unparsable record
    writer = FakeWriter(lambda rows: False if rows.changelog["id"] == "b" else None)
    letters = FakeDeadLetters()
    first = Unparsed({"eventID": "x1", "eventName": "RESHARD"}, "unknown eventName", "x1")
    last = Unparsed("not even an object", "a record must be an object")
    # WHEN processed in order
    batch = [first, change("a", 1), change("b", 2), last]
    result = pipeline(writer, letters).process(batch, ordered=True)
    # THEN all three go, in one send, in the batch's order, each record as it came
    assert [o.status for o in result.outcomes] == [
        "dead_lettered", "written", "dead_lettered", "dead_lettered",
    ]  # fmt: skip
    assert letters.sends == 1
    assert [x.record for x in letters.letters][0::2] == [
        {"eventID": "x1", "eventName": "RESHARD"},
        "not even an object",
    ]
    assert letters.letters[0].error == "The record cannot be parsed: unknown eventName"
    assert (letters.letters[0].table, letters.letters[0].source) == ("orders", "stream")


def test_when_the_dead_letters_are_down_the_ordered_batch_resumes_at_the_first_letter() -> None:
    # GIVEN a refused row at position 1 and unreachable dead letters
    writer = FakeWriter(lambda rows: False if rows.changelog["id"] == "b" else None)
    result = pipeline(writer, FakeDeadLetters(unreachable=True)).process(
        [change("a", 1), change("b", 2), change("c", 3)], ordered=True
    )
    # THEN the refused change and all after it are retried; nothing is lost
    assert [o.status for o in result.outcomes] == ["written", "retryable", "retryable"]


def test_a_writer_outage_makes_its_rows_retryable() -> None:
    writer = FakeWriter()
    writer.down = True
    result = pipeline(writer, FakeDeadLetters()).process([change("a", 1)], ordered=True)
    assert [o.status for o in result.outcomes] == ["retryable"]


def test_the_pipeline_counts_records_rows_dead_letters_retries_and_bytes() -> None:
    # GIVEN two batches through one pipeline
    writer = FakeWriter(lambda rows: False if rows.changelog["id"] == "b" else None)
    target = pipeline(writer, FakeDeadLetters())
    first = target.process([change("a", 1), change("b", 2)], ordered=True)
    target.process([change("c", 3)], ordered=True)
    # THEN each result carries its request costs and the counters add them up
    assert (first.requests, first.bytes_sent) == (1, 200)
    counters = target.counters
    assert (counters.batches, counters.records, counters.written) == (2, 3, 2)
    assert (counters.dead_lettered, counters.retryable, counters.bytes_sent) == (1, 0, 300)


# --- a deadline (the Lambda invocation's) ------------------------------------------------------


class Clock:
    """Seconds that pass only when a fake says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_after_the_deadline_nothing_is_written_or_dead_lettered() -> None:
    # GIVEN an ordered batch holding an unparsable record, and a deadline already passed
    clock = Clock()
    deadline = Deadline(at=-1.0, why="the invocation's deadline", clock=clock)
    writer, letters = FakeWriter(), FakeDeadLetters()
    bad = Unparsed({"eventID": "e0"}, "no dynamodb section", "e0")
    # WHEN it is processed
    result = pipeline(writer, letters).process(
        [bad, change("a", 1), change("b", 2)], ordered=True, deadline=deadline
    )
    # THEN nothing was acted upon: every item is retryable, for the deadline, from the first
    assert [o.status for o in result.outcomes] == ["retryable"] * 3
    assert result.first_retryable == 0
    assert "the invocation's deadline passed" in result.outcomes[0].reason
    assert (writer.batches, letters.sends) == ([], 0)


def test_a_deadline_passing_during_the_write_stops_the_steps_after_it() -> None:
    # GIVEN a writer whose write takes the batch past the deadline, and seeing that deadline
    clock = Clock()
    deadline = Deadline(at=5.0, why="the invocation's deadline", clock=clock)
    seen: list[Deadline | None] = []

    class Slow(FakeWriter):
        def write(self, batch: Any) -> Any:
            seen.append(current_deadline())
            clock.now = 6.0
            return super().write(batch)

    writer, letters = Slow(), FakeDeadLetters()
    bad = Unparsed({"eventID": "e0"}, "no dynamodb section", "e0")
    # WHEN an ordered batch [unparsable, change] is processed
    result = pipeline(writer, letters).process(
        [bad, change("a", 1)], ordered=True, deadline=deadline
    )
    # THEN the writer ran under the deadline, and the dead letter due after it was not sent:
    # the batch resumes at that record (the change written meanwhile comes back harmlessly)
    assert seen == [deadline]
    assert letters.sends == 0
    assert result.first_retryable == 0
    assert "Sending 1 change to the dead letters was not done" in result.outcomes[0].reason
    assert current_deadline() is None
