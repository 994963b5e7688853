"""Every input format parsed into one Change value."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb2bq.exceptions import RecordError
from ddb2bq.images import new_image
from ddb2bq.records import (
    UNCHECKED,
    encode_binary,
    from_export_line,
    from_get_records,
    from_kinesis_record,
    from_lambda_event,
    from_lambda_record,
    from_scan_item,
    make_seq,
    parse_one,
    record_name,
    snapshot_seq,
)
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import build_layout
from ddb2bq.verify.canonical import canonical_map
from tests.strategies import items, to_event_json

FIXTURES = Path(__file__).parent.parent / "fixtures"
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"


def sample_event() -> dict[str, Any]:
    return json.loads((FIXTURES / "aws_sample_event.json").read_text())


def stream_record(name: str = "INSERT", **dynamodb: Any) -> dict[str, Any]:
    body = {
        "ApproximateCreationDateTime": 1764460800,
        "Keys": {"pk": {"S": "a"}},
        "SequenceNumber": "4421584500000000017450439091",
        "SizeBytes": 20,
        **dynamodb,
    }
    return {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": body,
        "eventSourceARN": ARN,
    }


def test_the_aws_sample_event_is_insert_modify_remove_of_item_101() -> None:
    # GIVEN AWS's documented sample event  WHEN parsed
    changes = from_lambda_event(sample_event())
    # THEN three changes of Id 101, in order, with the documented fields
    assert [c.op for c in changes] == ["INSERT", "MODIFY", "REMOVE"]
    assert all(c.keys == {"Id": {"N": "101"}} for c in changes)
    assert changes[0].new_image == {"Message": {"S": "New item!"}, "Id": {"N": "101"}}
    assert changes[0].old_image is None
    assert changes[1].old_image == changes[0].new_image
    assert changes[2].new_image is None
    assert [c.sequence_number for c in changes] == ["111", "222", "333"]
    assert [c.event_id for c in changes] == ["1", "2", "3"]
    assert changes[0].changed_at_us == 1693997155_000000
    assert {c.table for c in changes} == {"ExampleTableWithStream"}
    assert changes[0].seq < changes[1].seq < changes[2].seq


@pytest.mark.parametrize(
    ("view", "images"),
    [
        ("KEYS_ONLY", {}),
        ("NEW_IMAGE", {"NewImage": {"pk": {"S": "a"}, "v": {"N": "2"}}}),
        ("OLD_IMAGE", {"OldImage": {"pk": {"S": "a"}, "v": {"N": "1"}}}),
        (
            "NEW_AND_OLD_IMAGES",
            {
                "NewImage": {"pk": {"S": "a"}, "v": {"N": "2"}},
                "OldImage": {"pk": {"S": "a"}, "v": {"N": "1"}},
            },
        ),
    ],
)
def test_all_four_stream_view_types_parse(view: str, images: dict[str, Any]) -> None:
    # GIVEN a MODIFY record of each stream view type
    record = stream_record("MODIFY", StreamViewType=view, **images)
    # WHEN parsed
    (change,) = from_lambda_event({"Records": [record]})
    # THEN the images present are kept, the absent ones are None
    assert change.new_image == images.get("NewImage")
    assert change.old_image == images.get("OldImage")
    assert change.keys == {"pk": {"S": "a"}}


def test_ttl_deletes_are_flagged() -> None:
    record = stream_record("REMOVE", OldImage={"pk": {"S": "a"}})
    record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    user_delete = stream_record("REMOVE", OldImage={"pk": {"S": "a"}})
    ttl, user = from_lambda_event({"Records": [record, user_delete]})
    assert ttl.is_ttl_delete
    assert not user.is_ttl_delete


def test_get_records_response_with_datetime_and_bytes() -> None:
    # GIVEN a boto3 GetRecords response: datetime times and bytes binaries
    response = {
        "Records": [
            {
                "eventID": "e1",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "eu-west-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": datetime(
                        2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC
                    ),
                    "Keys": {"pk": {"B": b"\x00\x01"}},
                    "NewImage": {"pk": {"B": b"\x00\x01"}, "bs": {"BS": [b"\xff", b"\x00"]}},
                    "SequenceNumber": "300000000000000499659",
                    "SizeBytes": 9,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
        ]
    }
    # WHEN parsed
    (change,) = from_get_records(response, shard_id="shardId-1")
    # THEN times are microseconds and binaries base64 text, as in event JSON
    assert change.changed_at_us == 1796040001_250000
    assert change.keys == {"pk": {"B": "AAE="}}
    assert change.new_image == {"pk": {"B": "AAE="}, "bs": {"BS": ["/w==", "AA=="]}}
    assert change.shard_id == "shardId-1"
    assert change.seq == make_seq(0, 300000000000000499659)


def kinesis_record(
    payload: dict[str, Any],
    sequence: str = "49590338271490256608559692538361571095921575989136588898",
) -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "ABCD",
            "sequenceNumber": sequence,
            "data": base64.b64encode(json.dumps(payload).encode()).decode(),
            "approximateArrivalTimestamp": 1764460800.5,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000003:{sequence}",
        "eventName": "aws:kinesis:record",
        "awsRegion": "eu-west-1",
        "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/orders-cdc",
    }


def test_kinesis_data_streams_records_as_lambda_delivers_them() -> None:
    # GIVEN a Kinesis Data Streams for DynamoDB record (base64 JSON, epoch milliseconds)
    payload = {
        "awsRegion": "eu-west-1",
        "eventID": "0e8e1a7f-1f37-4f8b-9f3b-5e2a6b1d5c11",
        "eventName": "MODIFY",
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": "orders",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764460800123,
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}, "b": {"B": "AAE="}},
            "OldImage": {"pk": {"S": "a"}},
            "SizeBytes": 30,
        },
        "eventSource": "aws:dynamodb",
    }
    # WHEN parsed through the Lambda event entry point
    (change,) = from_lambda_event({"Records": [kinesis_record(payload)]})
    # THEN the DynamoDB change is inside, with the time in microseconds
    assert change.op == "MODIFY"
    assert change.changed_at_us == 1764460800123_000
    assert change.table == "orders"
    assert change.event_id == payload["eventID"]
    assert change.new_image == {"pk": {"S": "a"}, "b": {"B": "AAE="}}
    assert change.shard_id == "shardId-000000000003"
    # AND later changes (by creation time) order after earlier ones
    later = dict(
        payload, dynamodb={**payload["dynamodb"], "ApproximateCreationDateTime": 1764460800124}
    )
    (after,) = from_lambda_event({"Records": [kinesis_record(later, sequence="1")]})
    assert after.seq > change.seq


def test_kinesis_microsecond_precision() -> None:
    payload = {
        "eventID": "x",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764460800123456,
            "ApproximateCreationDateTimePrecision": "MICROSECOND",
            "Keys": {"pk": {"S": "a"}},
        },
    }
    change = from_kinesis_record(kinesis_record(payload))
    assert change.changed_at_us == 1764460800123456


def test_export_lines_and_scan_items_are_snapshots_older_than_any_stream_change() -> None:
    # GIVEN a DynamoDB S3 export line and a Scan item of generation 2
    line = '{"Item":{"pk":{"S":"a"},"sk":{"N":"1"},"b":{"B":"AAE="}}}'
    exported = from_export_line(line, key_names=["pk", "sk"], exported_at_us=5, generation=2)
    scanned = from_scan_item(
        {"pk": {"S": "a"}, "sk": {"N": "1"}, "b": {"B": b"\x00\x01"}},
        key_names=["pk", "sk"],
        scanned_at_us=5,
        generation=2,
    )
    # THEN both are the same snapshot change, binary as base64 text
    assert exported.op == scanned.op == "SNAPSHOT"
    assert exported.new_image == scanned.new_image
    assert exported.keys == {"pk": {"S": "a"}, "sk": {"N": "1"}}
    assert exported.event_id == scanned.event_id
    assert exported.seq == snapshot_seq(2)
    # AND any stream change of the same generation is newer, any of the next generation too
    assert make_seq(2, 1) > exported.seq
    assert snapshot_seq(3) > make_seq(2, 2**133 - 1)


def test_seq_string_order_is_numeric_order() -> None:
    positions = [0, 1, 9, 10, 255, 2**64, 10**20, 10**39, 2**133 - 1]
    seqs = [make_seq(0, p) for p in positions]
    assert seqs == sorted(seqs)
    assert all(len(part) == 16 for part in seqs[-1].split("/"))
    assert seqs[-1] == "0000000000000000/000000000000001f/ffffffffffffffff/ffffffffffffffff"


@given(st.integers(0, 2**133 - 1), st.integers(0, 2**133 - 1), st.integers(0, 5), st.integers(0, 5))
def test_seq_order_follows_generation_then_position(a: int, b: int, ga: int, gb: int) -> None:
    assert (make_seq(ga, a) < make_seq(gb, b)) == ((ga, a) < (gb, b))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"eventID": "9", "eventName": "UPSERT"}, r"record 0 \(eventID 9\).*'UPSERT'"),
        ({"eventID": "9", "eventName": "INSERT"}, r"eventID 9.*'dynamodb'"),
        (
            {
                "eventID": "9",
                "eventName": "INSERT",
                "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "x1"},
            },
            r"record 0 \(eventID 9, key pk='a'\): 'dynamodb.SequenceNumber'",
        ),
        (
            {"eventID": "9", "eventName": "INSERT", "dynamodb": {"SequenceNumber": "1"}},
            r"eventID 9.*Keys",
        ),
    ],
)
def test_malformed_records_are_named_in_the_error(record: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        from_lambda_event({"Records": [record]})


def test_an_event_without_records_is_refused() -> None:
    with pytest.raises(RecordError, match="no 'Records' list"):
        from_lambda_event({"hello": "world"})


@settings(max_examples=200)
@given(items())
def test_item_to_changelog_image_to_item_is_identity(item: dict[str, Any]) -> None:
    # GIVEN any item as boto3 returns it (bytes), in a GetRecords record
    record = {
        "eventID": "e",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
            "Keys": {"pk": item["pk"], "sk": item["sk"]},
            "NewImage": item,
            "SequenceNumber": "1",
        },
    }
    (change,) = from_get_records({"Records": [record]})
    # WHEN it becomes a changelog row
    rows = RowBuilder(build_layout([("pk", "S"), ("sk", "N")]), clock=lambda: 0).build(change)
    # THEN the item rebuilt from the row is the item, exactly (as DynamoDB compares items)
    assert canonical_map(new_image(rows.changelog) or {}) == canonical_map(to_event_json(item))
    # AND the same item arriving as Lambda event JSON gives the same image
    lambda_record = dict(
        record, dynamodb={**record["dynamodb"], "ApproximateCreationDateTime": 1767225600}
    )
    lambda_record["dynamodb"]["NewImage"] = to_event_json(item)
    lambda_record["dynamodb"]["Keys"] = to_event_json(record["dynamodb"]["Keys"])
    (from_event,) = from_lambda_event({"Records": [lambda_record]})
    assert from_event.new_image == change.new_image


# --- values outside what DynamoDB streams can hold ---------------------------------------------


@pytest.mark.parametrize(
    "sequence",
    ["9" * 58, "7" * 5000, "-1", "1.5", "１２", "²", "", 12, None],
)
def test_a_sequence_number_that_cannot_be_a_stream_position_is_refused(sequence: Any) -> None:
    # GIVEN a record whose SequenceNumber is not a decimal below 2**192
    record = stream_record(SequenceNumber=sequence)
    # WHEN parsed  THEN refused, naming record, event and key
    with pytest.raises(
        RecordError, match=r"record 0 \(eventID c4ca.*, key pk='a'\): 'dynamodb.Seq"
    ):
        from_lambda_record(record)


def test_the_largest_stream_position_is_accepted() -> None:
    # GIVEN a 57-digit sequence number (below 2**192, far above DynamoDB's 40 digits)
    change = from_lambda_record(stream_record(SequenceNumber="9" * 57))
    # THEN it orders as its value
    assert change.seq == make_seq(0, int("9" * 57))


@pytest.mark.parametrize(
    "created", [-1, 253402300800, 1e300, float("inf"), float("-inf"), float("nan"), "1", True]
)
def test_a_change_time_outside_1970_to_9999_is_refused(created: Any) -> None:
    with pytest.raises(RecordError, match=r"record 0 .*'ApproximateCreationDateTime'"):
        from_lambda_record(stream_record(ApproximateCreationDateTime=created))


def test_the_last_second_bigquery_holds_is_accepted() -> None:
    change = from_lambda_record(stream_record(ApproximateCreationDateTime=253402300799))
    assert change.changed_at_us == 253402300799_000000


@pytest.mark.parametrize(
    "created", ["9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59+00:00", "soon", 5j]
)
def test_a_getrecords_time_outside_the_range_is_refused(created: Any) -> None:
    record = stream_record(ApproximateCreationDateTime=created)
    with pytest.raises(RecordError, match=r"record 0 .*'ApproximateCreationDateTime'"):
        from_get_records({"Records": [record]})


@pytest.mark.parametrize("created", [-5, -0.5, 2**70, 1e300, "1764460800000", None])
def test_a_kinesis_time_before_1970_or_after_9999_is_refused(created: Any) -> None:
    # GIVEN a Kinesis record whose change time cannot order it (it is seq's high 64 bits)
    payload = {
        "eventID": "p1",
        "eventName": "INSERT",
        "dynamodb": {"ApproximateCreationDateTime": created, "Keys": {"pk": {"S": "a"}}},
    }
    # WHEN parsed  THEN refused by name, not a ValueError from make_seq
    with pytest.raises(RecordError, match=r"record 0 \(eventID p1, key pk='a'\): 'Approx"):
        from_kinesis_record(kinesis_record(payload))


@pytest.mark.parametrize(
    "keys",
    [
        {"pk": {"BOOL": True}},
        {"pk": {"S": 5}},
        {"pk": {"S": "a", "N": "1"}},
        {"pk": {"M": {}}},
        {"pk": "a"},
        {"pk": {"S": "\ud800"}},
        {},
    ],
)
def test_keys_that_are_not_s_n_or_b_values_are_refused(keys: dict[str, Any]) -> None:
    with pytest.raises(RecordError, match=r"record 0 \(eventID c4ca.*\): .*(key attribute|empty)"):
        from_lambda_record(stream_record(Keys=keys))


@pytest.mark.parametrize("name", [["INSERT"], {"INSERT": 1}, 5, None, "insert"])
def test_an_event_name_of_any_type_is_refused_by_name(name: Any) -> None:
    record = {**stream_record(), "eventName": name}
    with pytest.raises(RecordError, match=r"record 0 \(eventID c4ca.*'eventName'"):
        from_lambda_record(record)


def test_input_nested_deeper_than_any_dynamodb_value_is_refused_by_attribute() -> None:
    # GIVEN a boto3 GetRecords record with a map 1000 levels deep (Python's recursion limit)
    deep: dict[str, Any] = {"N": "1"}
    for _ in range(1000):
        deep = {"M": {"x": deep}}
    record = stream_record(NewImage={"pk": {"S": "a"}, "d": deep})
    # WHEN parsed  THEN refused naming the record and attribute, not a RecursionError
    with pytest.raises(RecordError, match=r"record 0 \(eventID c4ca.*\): attribute 'd' of 'dyn"):
        from_get_records({"Records": [record]})
    with pytest.raises(RecordError, match="nested more than"):
        encode_binary(deep)


UNPARSABLE = {
    "lambda": {**stream_record(), "eventName": "RESHARD"},
    "getrecords": {**stream_record(), "eventName": "RESHARD"},
    "kinesis": kinesis_record({"eventID": "p", "eventName": "INSERT", "dynamodb": {}}),
    "export": '{"Item": {"sk": {"N": "1"}}}',
    "scan": {"sk": {"N": "1"}},
}


@pytest.mark.parametrize("source", list(UNPARSABLE))
def test_every_format_numbers_its_records_the_same_way(source: str) -> None:
    # GIVEN the third record of an input, in each format, that cannot be parsed
    # WHEN parsed as record 2  THEN the error names "record 2", as every format does
    with pytest.raises(RecordError, match=r"^record 2\b") as caught:
        parse_one(UNPARSABLE[source], source, index=2, key_names=["pk", "sk"])
    assert UNCHECKED not in str(caught.value)


def test_record_names_quote_hostile_values_briefly() -> None:
    # GIVEN an event id and key values that are long, nested and multi-line
    deep: Any = []
    for _ in range(2000):
        deep = [deep]
    name = record_name(3, event_id="x" * 500, keys={"pk": {"S": "a\nb" * 1000}, "sk": deep})
    # THEN the name is one short line
    assert name.startswith("record 3 (eventID 'xxx")
    assert "\n" not in name
    assert len(name) < 400
