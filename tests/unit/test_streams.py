"""Reading a stream once: parents before children, every shard to its end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ddb2bq.records import from_lambda_event
from ddb2bq.streams import lambda_events, lineage_order, read_stream


class ScriptedStreams:
    """A stream double speaking boto3's dynamodbstreams interface: shards with parents, paged
    DescribeStream, and GetRecords pages of at most ``Limit`` records."""

    def __init__(
        self, shards: dict[str, tuple[str | None, list[str]]], describe_page: int = 2
    ) -> None:
        self.shards = shards  # shard id -> (parent id, sequence numbers)
        self.describe_page = describe_page

    def describe_stream(self, StreamArn: str, ExclusiveStartShardId: str = "") -> dict[str, Any]:
        ids = list(self.shards)
        start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId else 0
        page = ids[start : start + self.describe_page]
        description: dict[str, Any] = {
            "Shards": [
                {
                    "ShardId": s,
                    **({"ParentShardId": self.shards[s][0]} if self.shards[s][0] else {}),
                }
                for s in page
            ]
        }
        if start + self.describe_page < len(ids):
            description["LastEvaluatedShardId"] = page[-1]
        return {"StreamDescription": description}

    def get_shard_iterator(
        self, StreamArn: str, ShardId: str, ShardIteratorType: str
    ) -> dict[str, Any]:
        return {"ShardIterator": f"{ShardId}|0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard, position = ShardIterator.split("|")
        numbers = self.shards[shard][1][int(position) : int(position) + Limit]
        records = [
            {
                "eventID": f"{shard}-{n}",
                "eventName": "MODIFY",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1,
                    "Keys": {"pk": {"S": "a"}},
                    "SequenceNumber": n,
                },
            }
            for n in numbers
        ]
        return {"Records": records, "NextShardIterator": f"{shard}|{int(position) + len(numbers)}"}


def test_children_are_read_after_their_parents_whatever_the_listing_order() -> None:
    # GIVEN a stream whose shard split twice, listed children first, over several pages
    streams = ScriptedStreams(
        {
            "grandchild": ("child", ["700", "800"]),
            "child": ("root", ["400", "500", "600"]),
            "sibling": ("root", ["450"]),
            "root": (None, ["100", "200", "300"]),
        }
    )
    # WHEN it is read once, two records a page
    changes = list(read_stream(streams, "arn", page_size=2))
    # THEN every record is there, each shard in order, and parents come first
    assert [c.sequence_number for c in changes] == [
        "100",
        "200",
        "300",
        "400",
        "500",
        "600",
        "700",
        "800",
        "450",
    ]
    assert [c.shard_id for c in changes][:3] == ["root"] * 3


def test_a_parent_trimmed_away_does_not_hide_its_child() -> None:
    assert lineage_order([{"ShardId": "child", "ParentShardId": "gone"}]) == ["child"]


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
