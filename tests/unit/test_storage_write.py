"""StorageWriteWriter: the run-time descriptor, the encoded rows (plain and CDC), and every
row error and request error mapped to its change."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.api_core import exceptions as api
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2
from google.rpc import status_pb2

from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.storage_write import (
    StorageWriteWriter,
    build_descriptor,
    message_class,
    timestamp_micros,
)
from ddb2bq.records import from_lambda_record
from ddb2bq.schema import Column
from tests.sink_data import changes, layout, record, rows_of

TABLE = "projects/p/datasets/d/tables/orders_changes"
F = descriptor_pb2.FieldDescriptorProto
Answer = types.AppendRowsResponse | BaseException


class FakeWriteClient:
    """Answers each append_rows call with the next answer (default: success); keeps requests."""

    def __init__(
        self, answers: list[Answer] | Callable[[types.AppendRowsRequest], Answer] = ()
    ) -> None:  # type: ignore[assignment]
        self.answers = answers
        self.requests: list[types.AppendRowsRequest] = []
        self.kwargs: list[dict[str, Any]] = []

    def append_rows(
        self, requests: Iterator[types.AppendRowsRequest], **kwargs: Any
    ) -> list[types.AppendRowsResponse]:
        (request,) = list(requests)
        self.requests.append(request)
        self.kwargs.append(kwargs)
        if callable(self.answers):
            answer = self.answers(request)
        else:
            answer = self.answers.pop(0) if self.answers else success()
        if isinstance(answer, BaseException):
            raise answer
        return [answer]

    @staticmethod
    def decoded(request: types.AppendRowsRequest) -> list[dict[str, Any]]:
        """The rows of ``request`` decoded with the descriptor it carries."""
        descriptor = descriptor_pb2.DescriptorProto()
        descriptor.ParseFromString(
            types.ProtoSchema.pb(
                request.proto_rows.writer_schema
            ).proto_descriptor.SerializeToString()
        )
        message = message_class(descriptor)
        rows = []
        for data in request.proto_rows.rows.serialized_rows:
            decoded = message.FromString(data)
            rows.append({f.name: v for f, v in decoded.ListFields()})  # type: ignore[attr-defined]
        return rows


def success() -> types.AppendRowsResponse:
    return types.AppendRowsResponse(append_result=types.AppendRowsResponse.AppendResult())


def row_errors(*errors: tuple[int, str]) -> types.AppendRowsResponse:
    """A response as local-bigquery and BigQuery send it for invalid rows."""
    return types.AppendRowsResponse(
        error=status_pb2.Status(code=3, message="Rows are invalid"),
        row_errors=[
            types.RowError(index=i, code=types.RowError.RowErrorCode.FIELDS_ERROR, message=m)
            for i, m in errors
        ],
    )


def status(code: int, message: str) -> types.AppendRowsResponse:
    return types.AppendRowsResponse(error=status_pb2.Status(code=code, message=message))


def no_wait(**bounds: Any) -> RetryPolicy:
    return RetryPolicy(sleep=lambda _: None, random=lambda: 0.0, **bounds)


def changelog_writer(client: FakeWriteClient, **options: Any) -> StorageWriteWriter:
    options.setdefault("retry_policy", no_wait())
    return StorageWriteWriter(client, TABLE, layout().changelog_columns(), **options)


def test_the_descriptor_maps_every_column_type() -> None:
    columns = [
        Column("s", "STRING"), Column("j", "JSON"), Column("n", "NUMERIC"),
        Column("bn", "BIGNUMERIC"), Column("i", "INT64"), Column("f", "FLOAT64"),
        Column("b", "BOOL"), Column("y", "BYTES"), Column("t", "TIMESTAMP"),
        Column("tags", "ARRAY<STRING>"), Column("nums", "ARRAY<INT64>"),
    ]  # fmt: skip
    descriptor = build_descriptor(columns)
    assert [(f.name, f.number, f.type, f.label) for f in descriptor.field] == [
        ("s", 1, F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("j", 2, F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("n", 3, F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("bn", 4, F.TYPE_STRING, F.LABEL_OPTIONAL),
        ("i", 5, F.TYPE_INT64, F.LABEL_OPTIONAL),
        ("f", 6, F.TYPE_DOUBLE, F.LABEL_OPTIONAL),
        ("b", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL),
        ("y", 8, F.TYPE_BYTES, F.LABEL_OPTIONAL),
        ("t", 9, F.TYPE_INT64, F.LABEL_OPTIONAL),
        ("tags", 10, F.TYPE_STRING, F.LABEL_REPEATED),
        ("nums", 11, F.TYPE_INT64, F.LABEL_REPEATED),
    ]


def test_the_cdc_descriptor_adds_the_pseudo_columns_last() -> None:
    descriptor = build_descriptor(layout().mirror_columns(), cdc=True)
    assert [(f.name, f.type) for f in descriptor.field][-2:] == [
        ("_CHANGE_TYPE", F.TYPE_STRING),
        ("_CHANGE_SEQUENCE_NUMBER", F.TYPE_STRING),
    ]


def test_two_writers_with_different_columns_do_not_clash() -> None:
    first = message_class(build_descriptor([Column("a", "STRING")]))
    second = message_class(build_descriptor([Column("a", "INT64")]))
    assert second(a=5).SerializeToString() != first(a="5").SerializeToString()


def test_timestamps_are_exact_microseconds() -> None:
    assert timestamp_micros("2023-11-14T22:13:20.123456Z") == 1_700_000_000_123_456
    assert timestamp_micros("1969-12-31T23:59:59.999999Z") == -1
    assert timestamp_micros(42) == 42


def test_a_timestamp_in_another_shape_is_parsed_the_general_way() -> None:
    # GIVEN texts of the rows' own shape sharing a second, and texts of other shapes
    # WHEN converted THEN each is its exact instant, whichever way it went
    assert timestamp_micros("2023-11-14T22:13:20.000007Z") == 1_700_000_000_000_007
    assert timestamp_micros("2023-11-14T22:13:20.999999Z") == 1_700_000_000_999_999
    assert timestamp_micros("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000
    assert timestamp_micros("2023-11-14 22:13:20.000001Z") == 1_700_000_000_000_001
    # AND text of the same length that is no time is refused, not read as one
    with pytest.raises(ValueError, match="Invalid isoformat string"):
        timestamp_micros("2023-11-14T22:13+01.123456Z")


def test_the_one_call_encoding_equals_setting_each_field() -> None:
    # GIVEN rows of every column type, with NULLs, and with values of another type than their
    # column's that the encoder converts (an integer for a STRING column: its JSON text)
    writer = changelog_writer(FakeWriteClient())
    rows = [r.changelog for r in rows_of(changes(3))] + [
        r.changelog for r in rows_of(changes(2, "REMOVE"))
    ]
    rows[1]["total"] = None
    rows[2]["status"] = 5
    # WHEN each is encoded
    # THEN the bytes are those of the message built field by field
    for row in rows:
        assert writer.encoder.encode(row) == writer.encoder._encode_each(row)
    assert dict(message_of(writer, writer.encoder.encode(rows[2])))["status"] == "5"


def test_the_request_is_the_one_proto_plus_builds_from_its_parts() -> None:
    # GIVEN a writer and the encoded rows of a batch
    writer = changelog_writer(FakeWriteClient())
    payloads = [writer.encoder.encode(r.changelog) for r in rows_of(changes(4))]
    # WHEN its request is made (in place in the underlying message)
    request = writer.request(payloads)
    # THEN it is byte for byte the request proto-plus builds from the stream, schema and rows
    expected = types.AppendRowsRequest(
        write_stream=f"{TABLE}/streams/_default",
        proto_rows=types.AppendRowsRequest.ProtoData(
            writer_schema=types.ProtoSchema(proto_descriptor=writer.encoder.descriptor),
            rows=types.ProtoRows(serialized_rows=payloads),
        ),
    )
    assert types.AppendRowsRequest.serialize(request) == types.AppendRowsRequest.serialize(expected)
    # AND the next request starts empty: nothing of this one is shared with it
    assert list(writer.request(payloads[:1]).proto_rows.rows.serialized_rows) == payloads[:1]
    assert len(request.proto_rows.rows.serialized_rows) == 4


def message_of(writer: StorageWriteWriter, payload: bytes) -> dict[str, Any]:
    message = writer.encoder.message.FromString(payload)
    return {field.name: value for field, value in message.ListFields()}


def test_changelog_rows_are_encoded_value_for_value() -> None:
    # GIVEN one change with every column type
    client = FakeWriteClient()
    batch = rows_of(changes(1))
    # WHEN it is written
    result = changelog_writer(client).write(batch)
    # THEN the request goes to the default stream, without the client's own retry, and the row
    # decodes to the exact values
    assert (result.written, result.failures) == (1, ())
    (request,) = client.requests
    assert request.write_stream == f"{TABLE}/streams/_default"
    assert client.kwargs[0]["retry"] is None
    (row,) = client.decoded(request)
    expected = batch[0].changelog
    assert row["event_id"] == "evt-0001-insert"
    assert row["seq"] == expected["seq"]
    assert row["changed_at"] == 1_700_000_001_000_000
    assert row["ingested_at"] == 1_700_000_000_123_456
    assert row["Id"] == "1"  # BIGNUMERIC as exact decimal text
    assert row["total"] == "1123456789.123456789"
    assert row["qty"] == 3
    assert row["paid"] is True
    assert row["blob"] == base64.b64decode("AAEC/w==")
    assert list(row["tags"]) == ["gift", "t1"]
    assert list(row["sizes"]) == [1, 42]
    assert row["meta"] == expected["meta"]
    assert row["item"] == expected["item"]
    assert row["item_types"] == expected["item_types"]  # the sidecar of blob, tags and sizes
    assert "new_image" not in row
    assert "old_image" not in row


def test_cdc_rows_upsert_mirror_rows_and_delete_by_key() -> None:
    # GIVEN an insert, a modify and a hard delete
    batch_changes = [
        from_lambda_record(record(1, "INSERT", sequence=10)),
        from_lambda_record(record(2, "MODIFY", sequence=11, status={"S": "SHIPPED"})),
        from_lambda_record(record(3, "REMOVE", sequence=12)),
    ]
    table_layout = layout()
    client = FakeWriteClient()
    writer = StorageWriteWriter(
        client, "projects/p/datasets/d/tables/orders", table_layout.mirror_columns(),
        cdc=True, keys=[c.name for c in table_layout.keys], retry_policy=no_wait(),
    )  # fmt: skip
    # WHEN they are written as CDC
    result = writer.write(rows_of(batch_changes, table_layout))
    # THEN two UPSERTs carry the mirror rows and a DELETE carries only the keys, each with seq
    assert result.written == 3
    upsert_1, upsert_2, delete = client.decoded(client.requests[0])
    assert (upsert_1["_CHANGE_TYPE"], upsert_2["_CHANGE_TYPE"]) == ("UPSERT", "UPSERT")
    assert upsert_1["_CHANGE_SEQUENCE_NUMBER"] == batch_changes[0].seq
    assert upsert_1["_CHANGE_SEQUENCE_NUMBER"] == (
        "0000000000000000/0000000000000000/0000000000000000/000000000000000a"
    )
    assert upsert_2["status"] == "SHIPPED"
    assert upsert_2["_changed_at"] == 1_700_000_002_000_000
    assert delete == {
        "Id": "3",
        "Sk": "order#0003",
        "_CHANGE_TYPE": "DELETE",
        "_CHANGE_SEQUENCE_NUMBER": batch_changes[2].seq,
    }


def test_cdc_soft_delete_is_an_upsert_flagged_deleted() -> None:
    table_layout = layout(soft_deletes=True)
    client = FakeWriteClient()
    writer = StorageWriteWriter(
        client, "projects/p/datasets/d/tables/orders", table_layout.mirror_columns(),
        cdc=True, keys=["Id", "Sk"], retry_policy=no_wait(),
    )  # fmt: skip
    writer.write(rows_of([from_lambda_record(record(4, "REMOVE"))], table_layout))
    (row,) = client.decoded(client.requests[0])
    assert (row["_CHANGE_TYPE"], row["_deleted"], row["status"]) == ("UPSERT", True, "NEW")


def test_cdc_skips_a_change_without_a_new_image() -> None:
    keys_only = record(5, "INSERT")
    del keys_only["dynamodb"]["NewImage"]
    client = FakeWriteClient()
    writer = StorageWriteWriter(
        client,
        TABLE,
        layout().mirror_columns(),
        cdc=True,
        keys=["Id", "Sk"],
        retry_policy=no_wait(),
    )
    result = writer.write(rows_of([from_lambda_record(keys_only)]))
    assert (result.written, result.failures, result.extra) == (0, (), {"skipped": 1})
    assert client.requests == []


def test_a_row_error_costs_only_its_row_and_the_valid_rows_are_resent() -> None:
    # GIVEN BigQuery refusing row 1 of 3, then accepting the re-send
    client = FakeWriteClient(
        [row_errors((1, "Cannot convert value to numeric (bad value): x")), success()]
    )
    result = changelog_writer(client).write(rows_of(changes(3)))
    # THEN change 1 fails terminally with the message; changes 0 and 2 landed on the re-send
    (failure,) = result.failures
    assert (failure.index, failure.retryable) == (1, False)
    assert "FIELDS_ERROR: Cannot convert value to numeric (bad value): x" in failure.reason
    assert "event evt-0002-insert" in failure.reason
    assert [r["event_id"] for r in client.decoded(client.requests[1])] == [
        "evt-0001-insert",
        "evt-0003-insert",
    ]
    assert result.written == 2


def test_row_error_indices_map_from_the_request_to_the_batch() -> None:
    client = FakeWriteClient([success(), row_errors((0, "bad")), success()])
    result = changelog_writer(client, max_rows=2).write(rows_of(changes(4)))
    assert [f.index for f in result.failures] == [2]
    assert result.written == 3


def test_a_value_the_column_cannot_hold_fails_before_sending() -> None:
    client = FakeWriteClient()
    batch = rows_of(changes(2))
    batch[0].changelog["qty"] = "three"
    result = changelog_writer(client).write(batch)
    assert [(f.index, f.column) for f in result.failures] == [(0, "qty")]
    assert "'three'" in result.failures[0].reason
    assert [r["event_id"] for r in client.decoded(client.requests[0])] == ["evt-0002-insert"]


def test_requests_stay_under_the_byte_limit() -> None:
    client = FakeWriteClient()
    batch = rows_of(changes(6))
    writer = changelog_writer(client, max_bytes=2_000)
    result = writer.write(batch)
    assert result.written == 6
    assert len(client.requests) > 1
    assert all(types.AppendRowsRequest.pb(r).ByteSize() <= 2_000 for r in client.requests)


def test_a_row_larger_than_a_request_fails_without_a_request() -> None:
    client = FakeWriteClient()
    batch = rows_of(changes(1))
    batch[0].changelog["item"] = '"' + "x" * 5_000 + '"'
    result = changelog_writer(client, max_bytes=4_000).write(batch)
    assert result.failures[0].retryable is False
    assert "a request takes at most 4000" in result.failures[0].reason
    assert client.requests == []


@pytest.mark.parametrize(
    "error",
    [
        api.ServiceUnavailable("Socket closed"),
        api.ResourceExhausted("quota"),
        api.DeadlineExceeded("deadline"),
        api.InternalServerError("internal"),
        status(14, "backend unavailable"),
        status(13, "internal"),
    ],
    ids=repr,
)
def test_transient_errors_are_retried(error: Answer) -> None:
    client = FakeWriteClient([error, success()])
    result = changelog_writer(client).write(rows_of(changes(2)))
    assert (result.written, result.retries, result.requests) == (2, 1, 2)


def test_a_dropped_table_fails_the_request_terminally_at_once() -> None:
    client = FakeWriteClient([api.NotFound("Not found: Table p:d.orders_changes"), status(5, "x")])
    result = changelog_writer(client).write(rows_of(changes(2)))
    assert [(f.index, f.retryable) for f in result.failures] == [(0, False), (1, False)]
    assert "Not found: Table" in result.failures[0].reason
    assert len(client.requests) == 1


@pytest.mark.parametrize(
    "refusal",
    [api.InvalidArgument("bad request"), status(3, "Input schema has an unknown field")],
    ids=repr,
)
def test_a_request_refused_whole_is_split_until_the_bad_row_is_alone(refusal: Answer) -> None:
    # GIVEN a service that refuses whole any request holding change 2's row
    def answer(request: types.AppendRowsRequest) -> Answer:
        event_ids = [r["event_id"] for r in FakeWriteClient.decoded(request)]
        return refusal if "evt-0003-insert" in event_ids else success()

    client = FakeWriteClient(answer)
    # WHEN four changes are written
    result = changelog_writer(client).write(rows_of(changes(4)))
    # THEN halves are sent until change 2 fails alone; the three others land
    assert [(f.index, f.retryable) for f in result.failures] == [(2, False)]
    assert result.written == 3
    assert [len(r.proto_rows.rows.serialized_rows) for r in client.requests] == [4, 2, 2, 1, 1]
    assert result.extra == {"splits": 2}


def test_an_outage_that_lasts_is_reported_retryable() -> None:
    client = FakeWriteClient(lambda request: api.ServiceUnavailable("Connection reset by peer"))
    result = changelog_writer(client, retry_policy=no_wait(max_attempts=2)).write(
        rows_of(changes(2))
    )
    assert [(f.index, f.retryable) for f in result.failures] == [(0, True), (1, True)]
    assert "sent 2 times" in result.failures[0].reason


def test_cdc_needs_the_key_columns() -> None:
    with pytest.raises(ValueError, match="key column"):
        StorageWriteWriter(FakeWriteClient(), TABLE, layout().mirror_columns(), cdc=True)
