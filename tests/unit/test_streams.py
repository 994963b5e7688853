"""Reading a stream once: parents before children, every shard to its end."""

from __future__ import annotations

from typing import Any

from ddb2bq.streams import lineage_order, read_stream


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
