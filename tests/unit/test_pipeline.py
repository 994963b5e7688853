"""BigQuerySink with fake writers and dead letters: every change gets exactly one outcome."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from google.api_core import exceptions as api

from ddb2bq.config import ColumnsConfig, Config, SourceConfig, TargetConfig
from ddb2bq.exceptions import RetryableError
from ddb2bq.records import Change, make_seq
from ddb2bq.rows import Rows
from ddb2bq.schema import TableLayout, build_layout
from ddb2bq.sinks.base import DeadLetter, Failure, WriteResult
from ddb2bq.sinks.bigquery import BigQuerySink, ConflictCounter

CONFIG = Config(
    source=SourceConfig(table="orders"),
    target=TargetConfig(project="p", dataset="d"),
    columns=ColumnsConfig(promote=("total",), types={"total": "INT64"}),
)
LAYOUT = build_layout([("id", "S")], promoted={"total": "INT64"})


class FakeWriter:
    """Records each batch; fails the changes whose id ``fail`` names, as ``fail`` says."""

    def __init__(self, fail: Callable[[Rows], bool | None] = lambda rows: None) -> None:
        self.batches: list[list[Rows]] = []
        self._fail = fail

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        self.batches.append(list(batch))
        failures = []
        for index, rows in enumerate(batch):
            retryable = self._fail(rows)
            if retryable is not None:
                failures.append(Failure(index, f"row {index} refused", retryable, "total"))
        return WriteResult(written=len(batch) - len(failures), failures=tuple(failures))


class FakeDeadLetters:
    def __init__(self, down: bool = False) -> None:
        self.letters: list[DeadLetter] = []
        self._down = down

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if self._down:
            raise RetryableError("The dead-letter bucket is unreachable.")
        self.letters.extend(letters)


def change(key: str, position: int, **attributes: dict[str, Any]) -> Change:
    keys = {"id": {"S": key}}
    new = {**keys, **attributes}
    record = {"eventID": f"e{position}", "dynamodb": {"Keys": keys, "NewImage": new}}
    return Change("INSERT", keys, new, None, make_seq(0, position), 1_700_000_000_000_000,
                  f"e{position}", table="orders", record=record)  # fmt: skip


def sink(writer: FakeWriter, letters: FakeDeadLetters, **kwargs: Any) -> BigQuerySink:
    def factory(layout: TableLayout) -> FakeWriter:
        return writer

    return BigQuerySink(CONFIG, LAYOUT, None, factory, letters, clock=lambda: 42, **kwargs)  # type: ignore[arg-type]


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
    result = sink(writer, FakeDeadLetters(down=True)).write([change("a", 1), change("b", 2)])
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


def evolving_sink(client: RefusingClient, writer: FakeWriter) -> BigQuerySink:
    settings = Config(
        source=SourceConfig(table="orders"),
        target=TargetConfig(project="p", dataset="d"),
        columns=ColumnsConfig(promote=("total", "status")),
    )
    return BigQuerySink(settings, LAYOUT, client, lambda layout: writer, FakeDeadLetters())  # type: ignore[arg-type]


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
