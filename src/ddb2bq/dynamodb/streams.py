"""Reading a DynamoDB stream once, from its oldest record to its newest, through a typed client
(:class:`~ddb2bq.dynamodb.client.StreamsClient`: a boto3 ``dynamodbstreams`` client, or the
scriptable double the tests drive).

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

from collections.abc import Iterator, Mapping
from typing import Any

from ddb2bq.dynamodb.client import StreamsClient
from ddb2bq.dynamodb.shards import lineage_order, list_shards
from ddb2bq.records import Change, from_get_records

__all__ = ["StreamsClient", "read_pages", "read_records", "read_shard", "read_stream"]


def read_stream(
    streams: StreamsClient, stream_arn: str, *, generation: int = 0, page_size: int = 1000
) -> Iterator[Change]:
    """Every change in the stream now, shard by shard in lineage order, each shard in order.

    >>> [c.op for c in read_stream(boto3.client("dynamodbstreams"), arn)]  # doctest: +SKIP
    ['INSERT', 'MODIFY', 'REMOVE']
    """
    for shard_id, page in read_pages(streams, stream_arn, page_size=page_size):
        yield from from_get_records(page, shard_id=shard_id, generation=generation)


def read_records(
    streams: StreamsClient, stream_arn: str, *, page_size: int = 1000
) -> Iterator[Mapping[str, Any]]:
    """Every record in the stream now, as GetRecords returns them (boto3 form), in order.

    >>> [r["eventName"] for r in read_records(streams, arn)]  # doctest: +SKIP
    ['INSERT', 'MODIFY', 'REMOVE']
    """
    for _, page in read_pages(streams, stream_arn, page_size=page_size):
        yield from page["Records"]


def read_pages(
    streams: StreamsClient, stream_arn: str, *, page_size: int = 1000
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(shard id, GetRecords response)`` for every non-empty page, parents' shards first.

    >>> [(shard, len(page["Records"])) for shard, page in read_pages(streams, arn)]  # doctest: +SKIP
    [('shardId-00000001795996800000-0a1b2c3d', 3)]
    """
    for shard_id in lineage_order(list_shards(streams, stream_arn)):
        for page in read_shard(streams, stream_arn, shard_id, page_size=page_size):
            yield shard_id, page


def read_shard(
    streams: StreamsClient, stream_arn: str, shard_id: str, *, page_size: int = 1000
) -> Iterator[Mapping[str, Any]]:
    """The GetRecords pages of one shard from its oldest record until it answers none.

    One pass: it stops at the first empty page, so an open shard is read up to now.

    >>> sum(len(p["Records"]) for p in read_shard(streams, arn, shard_id))  # doctest: +SKIP
    3
    """
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while iterator:
        response = streams.get_records(ShardIterator=iterator, Limit=page_size)
        if not response["Records"]:
            return
        yield response
        iterator = response.get("NextShardIterator")
