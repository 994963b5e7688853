"""Shard lineage: the shards of a stream, the order to read them in, the children of an ended one.

A DynamoDB stream is a forest of shards. Each has a ``ShardId``, a ``ParentShardId`` (absent on
roots, and pointing at nothing once the parent has been trimmed away) and a
``SequenceNumberRange``: open while it has no ``EndingSequenceNumber``, closed once it has one.
A shard may end with one child or several, and a parent must be read before its children: within
one item's lineage the changes come in order (DESIGN.md, "Ordering and idempotency").

When a shard ends, its children are asked for with DescribeStream's
``ShardFilter={"Type": "CHILD_SHARDS", "ShardId": parent}`` (AWS, July 2025). Not every endpoint
honours it: older botocore refuses the parameter, moto ignores it and lists every shard.
:func:`child_shards` answers None in both cases, and the caller falls back to :func:`list_shards`.
Children may also be invisible for a moment after their parent ends: an empty answer means "ask
again later", not "no children".

>>> lineage_order([{"ShardId": "b", "ParentShardId": "a"}, {"ShardId": "a"}])
['a', 'b']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from ddb2bq.dynamodb.client import StreamsClient

REFUSAL_CODES = frozenset(
    {
        "InvalidArgumentException",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "SerializationException",
        "UnknownOperationException",
        "UnsupportedOperation",
        "UnsupportedOperationException",
        "ValidationException",
    }
)
"""Error codes by which an endpoint says it does not understand ``ShardFilter``."""


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard as DescribeStream describes it."""

    shard_id: str
    parent_shard_id: str | None = None
    starting_sequence_number: str | None = None
    ending_sequence_number: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the shard may still receive records: it has no ending sequence number yet.

        >>> ShardInfo("shardId-1", starting_sequence_number="400000000000000000100").is_open
        True
        """
        return self.ending_sequence_number is None


def shard_info(shard: Mapping[str, Any]) -> ShardInfo:
    """A DescribeStream ``Shards`` entry as a :class:`ShardInfo`.

    >>> shard_info({"ShardId": "b", "ParentShardId": "a",
    ...     "SequenceNumberRange": {"StartingSequenceNumber": "300", "EndingSequenceNumber": "400"}})
    ShardInfo(shard_id='b', parent_shard_id='a', starting_sequence_number='300', ending_sequence_number='400')
    """
    numbers: Mapping[str, Any] = shard.get("SequenceNumberRange") or {}
    return ShardInfo(
        shard_id=shard["ShardId"],
        parent_shard_id=shard.get("ParentShardId") or None,
        starting_sequence_number=numbers.get("StartingSequenceNumber"),
        ending_sequence_number=numbers.get("EndingSequenceNumber"),
    )


def list_shards(streams: StreamsClient, stream_arn: str) -> list[Mapping[str, Any]]:
    """All shards of the stream, following DescribeStream's pagination to its end.

    The end is an empty ``LastEvaluatedShardId``; a non-empty one may still be followed by an
    empty page.

    >>> [s["ShardId"] for s in list_shards(streams, stream_arn)]  # doctest: +SKIP
    ['shardId-00000001795996800000-0a1b2c3d', 'shardId-00000001796010000000-4e5f6a7b']
    """
    return list(_described_shards(streams, {"StreamArn": stream_arn}))


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


def child_shards(streams: StreamsClient, stream_arn: str, parent_id: str) -> list[ShardInfo] | None:
    """The children of shard ``parent_id``, asked for with ``ShardFilter`` CHILD_SHARDS; or None
    when the endpoint refuses the filter or ignores it: then list every shard instead.

    An empty list means no child is visible yet (children may appear a little after their parent
    ends): ask again later. Throttling and server errors are raised as they come.

    >>> child_shards(streams, stream_arn, "shardId-00000001795996800000-0a1b2c3d")  # doctest: +SKIP
    [ShardInfo(shard_id='shardId-00000001796010000000-4e5f6a7b', parent_shard_id='shardId-...', ...)]
    """
    # botocore is needed only when talking to AWS: imported here, the module stays importable
    # (and its lineage helpers usable) without the aws extra.
    from botocore.exceptions import ClientError, ParamValidationError  # noqa: PLC0415

    request: _DescribeStream = {
        "StreamArn": stream_arn,
        "ShardFilter": {"Type": "CHILD_SHARDS", "ShardId": parent_id},
    }
    try:
        children = [shard_info(s) for s in _described_shards(streams, request)]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in REFUSAL_CODES:
            return None
        raise
    except (TypeError, ParamValidationError):  # a botocore (or client) that predates the filter
        return None
    if any(child.parent_shard_id != parent_id for child in children):
        return None  # the filter was ignored: this is (part of) the full listing
    return children


class _DescribeStream(TypedDict, total=False):
    StreamArn: str
    ExclusiveStartShardId: str
    ShardFilter: Mapping[str, str]


def _described_shards(streams: StreamsClient, request: _DescribeStream) -> Iterator[Any]:
    """The ``Shards`` of every DescribeStream page of ``request``."""
    while True:
        description = streams.describe_stream(**request)["StreamDescription"]
        yield from description.get("Shards", [])
        last = description.get("LastEvaluatedShardId")
        if not last:
            return
        request = {**request, "ExclusiveStartShardId": last}
