"""Reading a stream once: parents before children, every shard to its end; and finding the stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ddb2bq.dynamodb.events import lambda_events
from ddb2bq.dynamodb.shards import lineage_order
from ddb2bq.dynamodb.streams import read_pages, read_records, read_stream
from ddb2bq.dynamodb.tables import stream_arn_of
from ddb2bq.exceptions import ConfigError
from ddb2bq.records import from_lambda_event
from tests.doubles.streams import StreamDouble

KEY = {"pk": {"S": "a"}}


def put(stream: StreamDouble, shard_id: str, count: int = 1) -> list[str]:
    """``count`` changes of the item ``KEY`` into shard ``shard_id``: their sequence numbers."""
    return [
        stream.put(KEY, {**KEY, "n": {"N": str(n)}}, KEY, shard_id=shard_id) for n in range(count)
    ]


def test_children_are_read_after_their_parents_whatever_the_listing_order() -> None:
    # GIVEN a stream whose shard split twice, listed children first (shard id order), over
    # several DescribeStream pages, with the sibling's change written between the child's
    stream = StreamDouble(shard_ids=["d-root"], describe_page_size=2)
    root = put(stream, "d-root", 3)
    stream.split("d-root", ids=["b-child", "c-sibling"])
    child = put(stream, "b-child")
    sibling = put(stream, "c-sibling")
    child += put(stream, "b-child", 2)
    stream.split("b-child", children=1, ids=["a-grandchild"])
    grandchild = put(stream, "a-grandchild", 2)
    # WHEN it is read once, two records a page
    changes = list(read_stream(stream, stream.stream_arn, page_size=2))
    # THEN every record is there, each shard in order, and parents come first
    assert [c.sequence_number for c in changes] == root + child + grandchild + sibling
    assert [c.shard_id for c in changes][:3] == ["d-root"] * 3
    # AND no page held more than two records
    pages = [page for _, page in read_pages(stream, stream.stream_arn, page_size=2)]
    assert max(len(page["Records"]) for page in pages) == 2


def test_a_parent_trimmed_away_does_not_hide_its_child() -> None:
    assert lineage_order([{"ShardId": "child", "ParentShardId": "gone"}]) == ["child"]


def test_a_stream_whose_parent_was_trimmed_away_is_read_from_the_child() -> None:
    # GIVEN a parent shard that ended and was trimmed away, leaving its child's parent dangling
    stream = StreamDouble()
    (root,) = stream.open_shards()
    put(stream, root, 2)
    (child,) = stream.split(root, children=1)
    kept = put(stream, child, 2)
    stream.trim_before(kept[0])
    # WHEN it is read once
    records = list(read_records(stream, stream.stream_arn))
    # THEN the child's records are all there
    assert [r["dynamodb"]["SequenceNumber"] for r in records] == kept


def test_get_records_records_become_the_events_lambda_delivers() -> None:
    # GIVEN two GetRecords records as boto3 returns them (datetime, bytes)
    record = {
        "eventID": "e1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 11, 30, tzinfo=UTC),
            "Keys": {"pk": {"B": b"\x00"}},
            "NewImage": {"pk": {"B": b"\x00"}, "bs": {"BS": [b"\x01"]}},
            "SequenceNumber": "100",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    arn = "arn:aws:dynamodb:eu-west-1:1:table/t/stream/2026"
    # WHEN batched as Lambda would, one record per event
    events = list(
        lambda_events([record, {**record, "eventID": "e2"}], arn, "eu-west-1", batch_size=1)
    )
    # THEN each event has Lambda's fields, epoch seconds and base64 text
    assert len(events) == 2
    first = events[0]["Records"][0]
    assert (
        first["eventSource"],
        first["eventVersion"],
        first["awsRegion"],
        first["eventSourceARN"],
    ) == (
        "aws:dynamodb",
        "1.1",
        "eu-west-1",
        arn,
    )
    assert first["dynamodb"]["ApproximateCreationDateTime"] == 1795996800.0
    assert first["dynamodb"]["NewImage"] == {"pk": {"B": "AA=="}, "bs": {"BS": ["AQ=="]}}
    # AND the handler's parser reads it back as the same change
    (change,) = from_lambda_event(events[0])
    assert change.table == "t"
    assert change.keys == {"pk": {"B": "AA=="}}


def test_the_double_s_records_become_lambda_events_the_handler_reads_back() -> None:
    # GIVEN a change read from the stream double, in boto3's form
    stream = StreamDouble(table="t")
    sequence_number = stream.put({"pk": {"B": b"\x00"}}, {"pk": {"B": b"\x00"}})
    records = list(read_records(stream, stream.stream_arn))
    # WHEN delivered as Lambda would
    (event,) = lambda_events(records, stream.stream_arn, stream.region)
    # THEN the handler's parser reads the same change
    (change,) = from_lambda_event(event)
    assert (change.op, change.table, change.sequence_number) == ("INSERT", "t", sequence_number)
    assert change.keys == {"pk": {"B": "AA=="}}


class FakeDynamoDB:
    """DescribeTable answers: ``orders`` with its stream on, ``old`` with its stream turned off."""

    class exceptions:  # noqa: N801 (boto3's spelling)
        class ResourceNotFoundException(Exception):  # noqa: N818 (boto3's name)
            pass

    ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        enabled = {"orders": True, "old": False}.get(TableName)
        if enabled is None:
            raise self.exceptions.ResourceNotFoundException(TableName)
        specification = {"StreamEnabled": enabled, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        return {"Table": {"StreamSpecification": specification, "LatestStreamArn": self.ARN}}


def test_the_stream_of_a_table_is_its_latest_stream_only_while_enabled() -> None:
    assert stream_arn_of(FakeDynamoDB(), "orders") == FakeDynamoDB.ARN
    assert stream_arn_of(FakeDynamoDB(), "old") is None
    with pytest.raises(ConfigError, match="'nope' does not exist"):
        stream_arn_of(FakeDynamoDB(), "nope")
