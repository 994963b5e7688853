"""A batch of real-looking DynamoDB stream records and their rows, for the writer tests.

The records are Lambda DynamoDB Streams records (as AWS delivers them, binary as base64 text);
the layout promotes one attribute of every column type, so a batch that lands exactly proves
each type's encoding.
"""

from __future__ import annotations

import copy
from typing import Any

from ddb2bq.records import Change, from_lambda_record
from ddb2bq.rows import RowBuilder, Rows
from ddb2bq.schema import TableLayout, build_layout

TABLE = "orders"
INGESTED_AT_US = 1_700_000_000_123_456
PROMOTED = {
    "status": "STRING",
    "total": "NUMERIC",
    "qty": "INT64",
    "paid": "BOOL",
    "blob": "BYTES",
    "tags": "ARRAY<STRING>",
    "sizes": "ARRAY<INT64>",
    "meta": "JSON",
}


def layout(*, soft_deletes: bool = False, promoted: dict[str, str] | None = None) -> TableLayout:
    """The ``orders`` table: hash key ``Id`` (N), range key ``Sk`` (S), every column type."""
    return build_layout(
        [("Id", "N"), ("Sk", "S")],
        promoted=PROMOTED if promoted is None else promoted,
        soft_deletes=soft_deletes,
    )


def item(order: int, **overrides: Any) -> dict[str, Any]:
    """An ``orders`` item in DynamoDB JSON, one attribute of every promoted type."""
    image: dict[str, Any] = {
        "Id": {"N": str(order)},
        "Sk": {"S": f"order#{order:04d}"},
        "status": {"S": "PAID" if order % 2 else "NEW"},
        "total": {"N": f"{order}123456789.123456789"},
        "qty": {"N": str(order * 3)},
        "paid": {"BOOL": bool(order % 2)},
        "blob": {"B": "AAEC/w=="},
        "tags": {"SS": ["gift", f"t{order}"]},
        "sizes": {"NS": ["42", str(order)]},
        "meta": {"M": {"note": {"S": "ünïcode ✓"}, "n": {"N": "1.50"}}},
        "note": {"S": f"only in item {order}"},
    }
    image.update(overrides)
    return image


def record(
    order: int, op: str = "INSERT", sequence: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """A Lambda DynamoDB Streams record for order ``order``."""
    new = item(order, **overrides)
    keys = {"Id": new["Id"], "Sk": new["Sk"]}
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1_700_000_000 + order,
        "Keys": keys,
        "SequenceNumber": str(sequence if sequence is not None else 1000 + order),
        "SizeBytes": 200,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if op in ("INSERT", "MODIFY"):
        dynamodb["NewImage"] = new
    if op in ("MODIFY", "REMOVE"):
        dynamodb["OldImage"] = item(order)
    return {
        "eventID": f"evt-{order:04d}-{op.lower()}",
        "eventName": op,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
        "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/stream/2024-01-01T00:00:00.000",
    }


def changes(count: int, op: str = "INSERT") -> list[Change]:
    return [from_lambda_record(copy.deepcopy(record(n, op)), index=n) for n in range(1, count + 1)]


def rows_of(batch: list[Change], table_layout: TableLayout | None = None) -> list[Rows]:
    builder = RowBuilder(table_layout or layout(), clock=lambda: INGESTED_AT_US)
    return builder.build_all(batch)
