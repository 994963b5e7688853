"""The Lambda invocation's deadline, from ``context.get_remaining_time_in_millis()`` through the
pipeline into the writer's retries: a batch is answered in time with the first change not
written, instead of Lambda killing the function mid-write."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from google.api_core import exceptions as api

from ddb2bq.aws_lambda import Handler, StreamEvent
from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.config import Config, load_config
from ddb2bq.contract import (
    Deadline,
    OutOfTime,
    current_deadline,
    deadline_scope,
    limit_retries,
    request_timeout,
    retry_limit,
)
from ddb2bq.credentials import CredentialsProvider
from ddb2bq.pipeline import Pipeline
from ddb2bq.rows import Rows
from ddb2bq.schema import build_layout
from tests.doubles.dead_letters import ListDeadLetters
from tests.doubles.writers import FakeWriter

FIXTURES = Path(__file__).parent.parent / "fixtures"
ENVIRON = {
    "DDB2BQ_SOURCE_TABLE": "ExampleTableWithStream",
    "DDB2BQ_TARGET_PROJECT": "analytics-prod",
    "DDB2BQ_TARGET_DATASET": "dynamodb",
    "DDB2BQ_TARGET_WRITER": "insert_all",
}
LAYOUT = build_layout([("Id", "N")])


def sample_event() -> StreamEvent:
    """AWS's sample event: three changes of item 101, sequence numbers 111, 222, 333."""
    return cast(StreamEvent, json.loads((FIXTURES / "aws_sample_event.json").read_text()))


class FakeContext:
    """Lambda's context object: a request id, and the time left, running down in real time."""

    aws_request_id = "c0ffee00-0000-4000-8000-000000000001"
    function_name = "ddb2bq-orders"

    def __init__(self, remaining_ms: int) -> None:
        self._ends = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


class SlowBigQuery:
    """insertAll that takes ``seconds`` per request (less when the timeout is shorter) and
    lands the first ``lands`` requests; every later one answers 503. Keeps when each request
    ended and the timeout it was given."""

    def __init__(self, seconds: float, lands: int) -> None:
        self.seconds = seconds
        self.lands = lands
        self.sent: list[tuple[list[str], float]] = []
        self.ended: list[float] = []

    def insert_rows_json(
        self, table: Any, json_rows: Sequence[Mapping[str, Any]], **kwargs: Any
    ) -> list[Any]:
        timeout = float(kwargs["timeout"])
        self.sent.append(([str(row["event_id"]) for row in json_rows], timeout))
        time.sleep(min(self.seconds, timeout))
        self.ended.append(time.monotonic())
        if len(self.sent) <= self.lands:
            return []
        raise api.ServiceUnavailable("The service is currently unavailable.")


def handler_over(writer_of: Any, dead_letters: ListDeadLetters | None = None) -> Handler:
    """The handler over the real pipeline; ``writer_of(layout)`` makes its writer."""
    letters = dead_letters or ListDeadLetters()

    def pipeline_factory(config: Config, credentials: CredentialsProvider) -> Pipeline:
        return Pipeline(config, LAYOUT, writer_of, letters, source="lambda")

    return Handler(load_config(environ=ENVIRON), pipeline_factory=pipeline_factory,
                   metrics_stream=_Discard())  # fmt: skip


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


# --- the handler -------------------------------------------------------------------------------


def test_a_slow_retrying_write_is_cut_at_the_deadline_and_reported_from_the_first_unwritten() -> (
    None
):
    # GIVEN BigQuery taking 0.3 s per request, landing the first and answering 503 to the rest,
    # the real insertAll writer with one change per request and its real retry policy
    bigquery = SlowBigQuery(seconds=0.3, lands=1)
    policy = RetryPolicy(random=lambda: 1.0)  # waits 0.2, 0.4, 0.8 ... s: no luck involved
    columns = LAYOUT.changelog_columns()
    table = "analytics-prod.dynamodb.t_changes"
    handler = handler_over(
        lambda layout: InsertAllWriter(
            bigquery, table, columns, max_rows=1, retry_policy=policy, timeout=30.0
        )
    )
    # AND an invocation with 2.5 s left (so 1.5 s after the safety margin of 1 s)
    context = FakeContext(remaining_ms=2500)
    started = time.monotonic()
    # WHEN the sample batch of three changes is handled
    response = handler(sample_event(), context)
    elapsed = time.monotonic() - started
    # THEN the answer names the second record: the first change not written
    assert response == {"batchItemFailures": [{"itemIdentifier": "222"}]}
    # AND it came before the function's end, the margin kept: no request ran past the deadline
    assert elapsed < 2.5, elapsed
    assert max(bigquery.ended) - started < 1.5 + 0.2
    # AND the first change was written, the others tried within the time left only
    assert bigquery.sent[0][0] == ["1"]
    assert {ids[0] for ids, _ in bigquery.sent[1:]} <= {"2", "3"}
    assert all(timeout <= 1.5 for _, timeout in bigquery.sent)


def test_the_pipeline_and_the_writer_see_the_invocations_deadline_less_the_margin() -> None:
    # GIVEN a writer that notes the deadline in force when it is called
    seen: list[Deadline | None] = []

    class Noting(FakeWriter):
        def write(self, batch: Sequence[Rows]) -> Any:
            seen.append(current_deadline())
            return super().write(batch)

    writer = Noting()
    handler = handler_over(lambda layout: writer)
    # WHEN a batch is handled with 20 s left
    assert handler(sample_event(), FakeContext(remaining_ms=20_000)) == {"batchItemFailures": []}
    # THEN the writer ran under a deadline 10 % (2 s) before the end, named in messages
    (deadline,) = seen
    assert deadline is not None
    assert 17.5 < deadline.remaining() <= 18.0
    assert "Lambda invocation's deadline" in deadline.why
    # AND nothing of it is left once the invocation is over (containers are reused)
    assert current_deadline() is None


def test_less_time_than_the_margin_writes_nothing_and_asks_for_the_whole_batch_again() -> None:
    # GIVEN an invocation with 0.8 s left: less than the 1 s safety margin
    writer = FakeWriter()
    letters = ListDeadLetters()
    handler = handler_over(lambda layout: writer, letters)
    event = sample_event()
    event["Records"][0]["dynamodb"]["NewImage"]["price"] = {"N": "12,50"}  # would be a letter
    # WHEN the batch is handled
    response = handler(event, FakeContext(remaining_ms=800))
    # THEN nothing was sent anywhere, and Lambda delivers the batch again from its first record
    assert response == {"batchItemFailures": [{"itemIdentifier": "111"}]}
    assert writer.batches == []
    assert letters.letters == []


def test_without_a_context_there_is_no_deadline() -> None:
    # GIVEN a handler called as a plain function (a test, a replay): no context object
    seen: list[Deadline | None] = []

    class Noting(FakeWriter):
        def write(self, batch: Sequence[Rows]) -> Any:
            seen.append(current_deadline())
            return super().write(batch)

    handler = handler_over(lambda layout: Noting())
    # WHEN a batch is handled  THEN it is written without a deadline
    assert handler(sample_event(), None) == {"batchItemFailures": []}
    assert seen == [None]


# --- the time limits themselves ----------------------------------------------------------------


def test_nested_deadlines_keep_the_earlier_one() -> None:
    # GIVEN a deadline in 10 s, and inside it one in 60 s, then one in 1 s
    with deadline_scope(Deadline.after(10.0, "outer")):
        with deadline_scope(Deadline.after(60.0, "later")):
            # THEN the later one does not extend the outer one
            assert current_deadline() is not None
            assert current_deadline().why == "outer"  # type: ignore[union-attr]
        with deadline_scope(Deadline.after(1.0, "sooner")) as inner:
            # AND an earlier one takes over
            assert inner is not None
            assert inner.why == "sooner"
            assert request_timeout(30.0) <= 1.0
        assert current_deadline().why == "outer"  # type: ignore[union-attr]
    assert current_deadline() is None
    assert request_timeout(30.0) == 30.0


def test_an_expired_deadline_explains_itself() -> None:
    now = [100.0]
    deadline = Deadline.after(5.0, "the test's deadline", clock=lambda: now[0])
    assert (deadline.remaining(), deadline.expired) == (5.0, False)
    now[0] = 106.0
    assert (deadline.remaining(), deadline.expired) == (0.0, True)
    error = deadline.out_of_time("Writing 3 changes")
    assert isinstance(error, OutOfTime)
    assert str(error) == (
        "Writing 3 changes was not done: the test's deadline passed; it will be tried again."
    )


def test_retry_limits_nest_to_the_tighter_and_belong_to_their_thread() -> None:
    with limit_retries(30.0):
        with limit_retries(5.0):
            assert retry_limit() == 5.0
        with limit_retries(None), limit_retries(60.0):
            assert retry_limit() == 30.0
        other: list[float | None] = []
        thread = threading.Thread(target=lambda: other.append(retry_limit()))
        thread.start()
        thread.join()
        assert other == [None]  # a context variable: threads start without it
    assert retry_limit() is None


@pytest.mark.parametrize("remaining_ms", [0, -50])
def test_no_time_left_at_all_is_still_an_answer(remaining_ms: int) -> None:
    # GIVEN an invocation already at (or past) its end
    writer = FakeWriter()
    handler = handler_over(lambda layout: writer)
    # WHEN handled  THEN the whole batch is asked for again; nothing raised, nothing sent
    response = handler(sample_event(), FakeContext(remaining_ms=remaining_ms))
    assert response == {"batchItemFailures": [{"itemIdentifier": "111"}]}
    assert writer.batches == []
