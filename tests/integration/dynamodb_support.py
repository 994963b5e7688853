"""Source tables on the moto server, as the integration tests need them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def create_source_table(
    dynamodb: Any,
    name: str,
    keys: Sequence[tuple[str, str]] = (("pk", "S"), ("sk", "N")),
    *,
    stream: bool = True,
) -> str | None:
    """Create ``name`` keyed by ``keys`` (hash key first, then the range key, as
    ``(attribute, "S"|"N"|"B")``), on demand, with a NEW_AND_OLD_IMAGES stream unless
    ``stream`` is false. Returns the stream's ARN, or None without a stream."""
    key_types = ("HASH", "RANGE")
    response = dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": a, "KeyType": k} for (a, _), k in zip(keys, key_types, strict=False)
        ],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in keys],
        BillingMode="PAY_PER_REQUEST",
        **(
            {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
            if stream
            else {}
        ),
    )
    arn = response["TableDescription"].get("LatestStreamArn")
    return None if arn is None else str(arn)
