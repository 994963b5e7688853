"""Reading a DynamoDB stream once, from its oldest record to its newest, with an injected client.

Shards are read parents before children (DESIGN.md: within one item's shard lineage sequence
numbers rise, and a child shard only holds changes made after its parent closed), each from
``TRIM_HORIZON`` until it answers no more records. This is the one-pass reader the demo and
the tests use; the continuously running runner (checkpoints, iterator renewal, trimmed data) is
built on the same order.

Example::

    streams = boto3.client("dynamodbstreams")
    for change in read_stream(streams, stream_arn):
        print(change.op, change.keys)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ddb2bq.records import Change, from_get_records


def read_stream(
    streams: Any, stream_arn: str, *, generation: int = 0, page_size: int = 1000
) -> Iterator[Change]:
    """Every change in the stream now, shard by shard in lineage order, each shard in order."""
    for shard_id in lineage_order(list_shards(streams, stream_arn)):
        yield from read_shard(
            streams, stream_arn, shard_id, generation=generation, page_size=page_size
        )


def list_shards(streams: Any, stream_arn: str) -> list[Mapping[str, Any]]:
    """All shards of the stream, following DescribeStream's pagination."""
    shards: list[Mapping[str, Any]] = []
    start: dict[str, str] = {}
    while True:
        description = streams.describe_stream(StreamArn=stream_arn, **start)["StreamDescription"]
        shards.extend(description.get("Shards", []))
        last = description.get("LastEvaluatedShardId")
        if not last:
            return shards
        start = {"ExclusiveStartShardId": last}


def lineage_order(shards: Sequence[Mapping[str, Any]]) -> list[str]:
    """Shard ids ordered so that every parent comes before its children.

    >>> lineage_order([{"ShardId": "b", "ParentShardId": "a"}, {"ShardId": "a"}])
    ['a', 'b']
    """
    parents = {s["ShardId"]: s.get("ParentShardId") for s in shards}
    ordered: list[str] = []
    placed: set[str] = set()

    def place(shard_id: str) -> None:
        parent = parents.get(shard_id)
        if parent is not None and parent in parents and parent not in placed:
            place(parent)
        if shard_id not in placed:
            placed.add(shard_id)
            ordered.append(shard_id)

    for shard in shards:
        place(shard["ShardId"])
    return ordered


def read_shard(
    streams: Any, stream_arn: str, shard_id: str, *, generation: int = 0, page_size: int = 1000
) -> Iterator[Change]:
    """The changes of one shard from its oldest record until it answers none."""
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while iterator:
        response = streams.get_records(ShardIterator=iterator, Limit=page_size)
        yield from from_get_records(response, shard_id=shard_id, generation=generation)
        iterator = response.get("NextShardIterator") if response["Records"] else None
