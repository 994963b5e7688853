"""What DescribeTable says about a source table: its key schema and its stream.

Example::

    dynamodb = boto3.client("dynamodb")
    describe_key_schema(dynamodb, "orders")  # [("customer", "S"), ("order_id", "N")]
    stream_arn_of(dynamodb, "orders")  # "arn:aws:dynamodb:...:table/orders/stream/..." or None
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ddb2bq.exceptions import ConfigError


def describe_key_schema(dynamodb: Any, table: str) -> list[tuple[str, str]]:
    """The key of DynamoDB ``table`` as ``[(attribute, "S"|"N"|"B")]``, hash key first.

    >>> describe_key_schema(boto3.client("dynamodb"), "orders")  # doctest: +SKIP
    [('customer', 'S'), ('order_id', 'N')]
    """
    description = _describe_table(dynamodb, table)
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    keys = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    return [(k["AttributeName"], types[k["AttributeName"]]) for k in keys]


def stream_arn_of(dynamodb: Any, table: str) -> str | None:
    """The ARN of ``table``'s current stream, or None when its stream is off.

    DescribeTable keeps ``LatestStreamArn`` after a stream is disabled (its records stay readable
    for 24 hours), so the ARN counts only while ``StreamSpecification.StreamEnabled`` is true;
    re-enabling a stream gives a new ARN.

    >>> stream_arn_of(boto3.client("dynamodb"), "orders")  # doctest: +SKIP
    'arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000'
    """
    description = _describe_table(dynamodb, table)
    specification: Mapping[str, Any] = description.get("StreamSpecification") or {}
    if not specification.get("StreamEnabled"):
        return None
    arn = description.get("LatestStreamArn")
    return str(arn) if arn else None


def _describe_table(dynamodb: Any, table: str) -> Mapping[str, Any]:
    try:
        description: Mapping[str, Any] = dynamodb.describe_table(TableName=table)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException as exc:
        raise ConfigError(f"The DynamoDB table {table!r} does not exist: check [source]") from exc
    return description
