"""InsertAllWriter: chunking, insert ids, and every insertErrors entry mapped to its change."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions as api

from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.retry import RetryPolicy
from tests.sink_data import changes, layout, rows_of

TABLE = "p.d.orders_changes"
RECORDED = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "insert_all_errors.json").read_text()
)
Answer = Sequence[Mapping[str, Any]] | BaseException


class FakeBigQuery:
    """Answers each insert_rows_json call from ``answers`` (a list, or a function of the rows);
    an empty list means every row landed. Keeps what it was sent."""

    def __init__(
        self, answers: list[Answer] | Callable[[list[dict[str, Any]]], Answer] = ()
    ) -> None:  # type: ignore[assignment]
        self.answers = answers
        self.calls: list[dict[str, Any]] = []
        self.landed: list[dict[str, Any]] = []

    def insert_rows_json(
        self, table: Any, json_rows: Any, **kwargs: Any
    ) -> Sequence[Mapping[str, Any]]:
        self.calls.append({"table": table, "rows": list(json_rows), **kwargs})
        if callable(self.answers):
            answer = self.answers(list(json_rows))
        else:
            answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, BaseException):
            raise answer
        if not answer:
            self.landed += json_rows
        return answer


def no_wait_policy(**bounds: Any) -> RetryPolicy:
    return RetryPolicy(sleep=lambda _: None, random=lambda: 0.0, **bounds)


def writer(client: FakeBigQuery, **options: Any) -> InsertAllWriter:
    options.setdefault("retry_policy", no_wait_policy())
    return InsertAllWriter(client, TABLE, layout().changelog_columns(), **options)


def test_a_clean_batch_lands_whole_with_event_ids_as_insert_ids() -> None:
    # GIVEN three changes and a BigQuery that accepts everything
    client = FakeBigQuery()
    batch = rows_of(changes(3))
    # WHEN they are written
    result = writer(client).write(batch)
    # THEN one request carries the three rows, keyed by event id, with no client-side retry
    assert (result.written, result.failures, result.requests) == (3, (), 1)
    (call,) = client.calls
    assert call["row_ids"] == ["evt-0001-insert", "evt-0002-insert", "evt-0003-insert"]
    assert call["skip_invalid_rows"] is False
    assert call["retry"] is None
    assert call["rows"][0]["total"] == "1123456789.123456789"
    assert "old_image" not in call["rows"][0]  # NULL columns are left out of the row
    sent = [{"insertId": i, "json": r} for i, r in zip(call["row_ids"], call["rows"], strict=True)]
    assert result.bytes_sent == sum(len(_compact(s)) + 1 for s in sent)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_requests_are_cut_by_row_count() -> None:
    client = FakeBigQuery()
    result = writer(client, max_rows=2).write(rows_of(changes(5)))
    assert [len(c["rows"]) for c in client.calls] == [2, 2, 1]
    assert result.written == 5


def test_requests_are_cut_by_serialized_bytes() -> None:
    # GIVEN a request budget of two and a half rows
    client = FakeBigQuery()
    batch = rows_of(changes(5))
    row_bytes = max(
        len(_compact({"insertId": r.change.event_id, "json": r.changelog})) for r in batch
    )
    result = writer(client, max_bytes=row_bytes * 5 // 2).write(batch)
    # THEN each request holds at most two rows, and every row is sent once, in order
    assert [len(c["rows"]) for c in client.calls] == [2, 2, 1]
    assert [r["event_id"] for c in client.calls for r in c["rows"]] == [
        rows.change.event_id for rows in batch
    ]
    assert result.written == 5


def test_a_row_over_the_row_limit_fails_terminally_without_a_request() -> None:
    # GIVEN a row limit smaller than the second row (whose note is long)
    client = FakeBigQuery()
    batch = rows_of(changes(3))
    batch[1].changelog["item"] = json.dumps({"note": "x" * 5_000})
    result = writer(client, max_row_bytes=4_000).write(batch)
    # THEN that change fails, naming table and key; the others land
    (failure,) = result.failures
    assert failure.index == 1
    assert failure.retryable is False
    assert "orders_changes" in failure.reason
    assert "Id='2'" in failure.reason
    assert "4000-byte limit" in failure.reason
    assert [r["event_id"] for r in client.landed] == ["evt-0001-insert", "evt-0003-insert"]


def test_one_invalid_row_costs_only_itself() -> None:
    # GIVEN BigQuery refusing row 2 of 3 (recorded payload) and then accepting the re-send
    client = FakeBigQuery([RECORDED["one_invalid_of_three"], []])
    batch = rows_of(changes(3))
    # WHEN the batch is written
    result = writer(client).write(batch)
    # THEN row 2 fails terminally naming its column; rows 0 and 1 were re-sent once and landed
    (failure,) = result.failures
    assert (failure.index, failure.retryable, failure.column) == (2, False, "total")
    assert "Cannot convert value to numeric (bad value): x" in failure.reason
    assert "event evt-0003-insert" in failure.reason
    assert [len(c["rows"]) for c in client.calls] == [3, 2]
    assert client.calls[1]["row_ids"] == ["evt-0001-insert", "evt-0002-insert"]
    assert result.written == 2


def test_error_indices_are_mapped_from_the_chunk_to_the_batch() -> None:
    # GIVEN two requests of two rows; the second request refuses its first row
    refusal = [
        {"index": 0, "errors": [{"reason": "invalid", "location": "qty", "message": "bad int"}]},
        {"index": 1, "errors": [{"reason": "stopped", "location": "", "message": ""}]},
    ]
    client = FakeBigQuery([[], refusal, []])
    result = writer(client, max_rows=2).write(rows_of(changes(4)))
    # THEN the failure names batch index 2, not chunk index 0
    assert [(f.index, f.column) for f in result.failures] == [(2, "qty")]
    assert result.written == 3


def test_rows_stopped_again_after_the_resend_are_reported_retryable() -> None:
    stopped = [{"index": i, "errors": [{"reason": "stopped"}]} for i in range(2)]
    client = FakeBigQuery([RECORDED["one_invalid_of_three"], stopped])
    result = writer(client).write(rows_of(changes(3)))
    assert [(f.index, f.retryable) for f in result.failures] == [(0, True), (1, True), (2, False)]
    assert len(client.calls) == 2  # re-sent once only
    assert result.written == 0


def test_a_row_level_backend_error_is_resent() -> None:
    client = FakeBigQuery([RECORDED["backend_error_row"], []])
    result = writer(client).write(rows_of(changes(2)))
    assert result.ok
    assert result.written == 2
    assert [len(c["rows"]) for c in client.calls] == [2, 2]


def test_a_missing_required_field_names_the_column() -> None:
    client = FakeBigQuery([RECORDED["missing_required"]])
    result = writer(client).write(rows_of(changes(1)))
    assert result.failures[0].column == "event_id"
    assert "Missing required field: event_id." in result.failures[0].reason


@pytest.mark.parametrize(
    "error",
    [
        api.ServiceUnavailable("503 Service Unavailable"),
        api.TooManyRequests("429 Too Many Requests"),
        api.Forbidden("403 Exceeded rate limits", errors=[{"reason": "rateLimitExceeded"}]),
        requests.ConnectionError("('Connection aborted.', ConnectionResetError(104))"),
        requests.ReadTimeout("Read timed out. (read timeout=30)"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_request_errors_are_retried_then_succeed(error: BaseException) -> None:
    client = FakeBigQuery([error, error, []])
    result = writer(client).write(rows_of(changes(2)))
    assert result.ok
    assert result.written == 2
    assert (result.requests, result.retries) == (3, 2)


def test_a_lasting_outage_is_reported_retryable_for_every_change() -> None:
    client = FakeBigQuery(lambda rows: api.ServiceUnavailable("503 Service Unavailable"))
    result = writer(client, retry_policy=no_wait_policy(max_attempts=3)).write(rows_of(changes(2)))
    assert [(f.index, f.retryable) for f in result.failures] == [(0, True), (1, True)]
    assert "sent 3 times" in result.failures[0].reason
    assert "503" in result.failures[0].reason
    assert result.written == 0
    assert len(client.calls) == 3


def test_a_dropped_table_is_terminal_and_not_retried() -> None:
    error = api.NotFound("Not found: Table p:d.orders_changes", errors=[{"reason": "notFound"}])
    client = FakeBigQuery([error])
    result = writer(client).write(rows_of(changes(2)))
    assert [(f.index, f.retryable) for f in result.failures] == [(0, False), (1, False)]
    assert "Not found: Table" in result.failures[0].reason
    assert len(client.calls) == 1


def test_a_row_with_a_column_the_table_lacks_fails_instead_of_being_cut() -> None:
    client = FakeBigQuery()
    batch = rows_of(changes(2))
    batch[0].changelog["colour"] = "red"
    result = writer(client).write(batch)
    assert [(f.index, f.column) for f in result.failures] == [(0, "colour")]
    assert result.written == 1


def test_a_request_refused_whole_as_malformed_is_split_to_isolate_the_row() -> None:
    # GIVEN a service answering 400 for any request holding a row with bad base64 (as
    # local-bigquery does: "Could not decode string ... as base64")
    def answer(rows: list[dict[str, Any]]) -> Answer:
        if any(r["blob"] == "!!" for r in rows):
            return api.BadRequest('Could not decode string "!!" as base64')
        return []

    client = FakeBigQuery(answer)
    batch = rows_of(changes(5))
    batch[3].changelog["blob"] = "!!"
    # WHEN the batch is written
    result = writer(client).write(batch)
    # THEN only change 3 fails, terminally, with the service's message
    assert [(f.index, f.retryable) for f in result.failures] == [(3, False)]
    assert "as base64" in result.failures[0].reason
    assert result.written == 4
    assert [len(c["rows"]) for c in client.calls] == [5, 2, 3, 1, 2, 1, 1]
