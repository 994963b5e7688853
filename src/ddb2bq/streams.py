"""Reading a DynamoDB stream once, from its oldest record to its newest, with an injected client;
and turning its records into the events Lambda would deliver.

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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from ddb2bq.records import Change, encode_binary, from_get_records


def read_stream(
    streams: Any, stream_arn: str, *, generation: int = 0, page_size: int = 1000
) -> Iterator[Change]:
    """Every change in the stream now, shard by shard in lineage order, each shard in order."""
    for shard_id, page in read_pages(streams, stream_arn, page_size=page_size):
        yield from from_get_records(page, shard_id=shard_id, generation=generation)


def read_records(
    streams: Any, stream_arn: str, *, page_size: int = 1000
) -> Iterator[Mapping[str, Any]]:
    """Every record in the stream now, as GetRecords returns them (boto3 form), in order."""
    for _, page in read_pages(streams, stream_arn, page_size=page_size):
        yield from page["Records"]


def read_pages(
    streams: Any, stream_arn: str, *, page_size: int = 1000
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(shard id, GetRecords response)`` for every non-empty page, parents' shards first."""
    for shard_id in lineage_order(list_shards(streams, stream_arn)):
        for page in read_shard(streams, stream_arn, shard_id, page_size=page_size):
            yield shard_id, page


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
    streams: Any, stream_arn: str, shard_id: str, *, page_size: int = 1000
) -> Iterator[Mapping[str, Any]]:
    """The GetRecords pages of one shard from its oldest record until it answers none."""
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while iterator:
        response = streams.get_records(ShardIterator=iterator, Limit=page_size)
        if not response["Records"]:
            return
        yield response
        iterator = response.get("NextShardIterator")


def lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record (boto3 form) as Lambda delivers it in a DynamoDB Streams event:
    ``eventVersion`` 1.1, ``eventSource``, ``awsRegion``, ``eventSourceARN``, the creation time in
    epoch seconds and binary values as base64 text."""
    body = dict(record["dynamodb"])
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        body["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": encode_binary(body),
        "eventSourceARN": stream_arn,
        **({"userIdentity": record["userIdentity"]} if "userIdentity" in record else {}),
    }


def lambda_events(
    records: Iterable[Mapping[str, Any]], stream_arn: str, region: str, *, batch_size: int = 100
) -> Iterator[dict[str, Any]]:
    """The events Lambda would invoke the function with: ``{"Records": [...]}`` of
    ``batch_size`` records at most, in stream order."""
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(lambda_record(record, stream_arn, region))
        if len(batch) == batch_size:
            yield {"Records": batch}
            batch = []
    if batch:
        yield {"Records": batch}
