"""The typed interface of boto3's ``dynamodbstreams`` client, as ddb2bq uses it.

:class:`StreamsClient` names exactly the calls ddb2bq makes, with boto3's keyword arguments. A
boto3 client (typed ``Any``) satisfies it, and so does the scriptable stream double of the tests
(``tests/doubles/streams.py``), which is what lets the reader and the runner be tested on splits,
trimming and throttling that moto does not have.

Example::

    streams: StreamsClient = boto3.client("dynamodbstreams")
    streams.describe_stream(StreamArn=arn, Limit=100)["StreamDescription"]["Shards"]
"""

# The parameters are spelled as boto3 spells them (StreamArn, ShardId, ...): N803 does not apply.
# ruff: noqa: N803

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class StreamsClient(Protocol):
    """The calls ddb2bq makes on boto3's ``dynamodbstreams`` client, with boto3's keywords.

    Answers are the plain mappings boto3 returns (``StreamDescription``, ``ShardIterator``,
    ``Records`` and ``NextShardIterator``); errors are botocore ``ClientError`` with the service's
    codes (``TrimmedDataAccessException``, ``ExpiredIteratorException``, ...).
    """

    def describe_stream(
        self,
        *,
        StreamArn: str,
        Limit: int = ...,
        ExclusiveStartShardId: str = ...,
        ShardFilter: Mapping[str, str] = ...,
    ) -> Mapping[str, Any]:
        """DescribeStream: a page of the stream's shards, optionally only a shard's children."""
        ...

    def get_shard_iterator(
        self,
        *,
        StreamArn: str,
        ShardId: str,
        ShardIteratorType: str,
        SequenceNumber: str = ...,
    ) -> Mapping[str, Any]:
        """GetShardIterator: a position in a shard, valid for 15 minutes."""
        ...

    def get_records(self, *, ShardIterator: str, Limit: int = ...) -> Mapping[str, Any]:
        """GetRecords: at most ``Limit`` (<= 1000) records from the iterator's position."""
        ...
