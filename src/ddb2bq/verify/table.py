"""The DynamoDB side of verify: a parallel Scan of the table, and the items of given keys.

:func:`scan_items` runs one thread per segment (``Segment``/``TotalSegments``, each segment
paging with its own ``LastEvaluatedKey``) and hands their pages to the caller through a queue of
at most two pages a segment: a Scan page is at most 1 MB (and :data:`SCAN_LIMIT` items), so the
items in hand stay bounded whatever the table's size. :func:`get_items` reads keys with BatchGetItem (the batched
GetItem), strongly consistent by default, retrying what DynamoDB leaves unprocessed. Items are
in boto3's low-level form (``{"S": ...}``, B as ``bytes``); botocore's errors reach the caller
as they are (``ddb2bq.dynamodb.connect.aws_errors`` turns them into sentences).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

from ddb2bq.dynamodb.scan import SegmentStart, read_segments
from ddb2bq.exceptions import RetryableError
from ddb2bq.records import Item

SCAN_LIMIT = 1000
"""Items per Scan page at most (``Limit``): pages stay short, so no segment waits long on
another's page (AWS's advice for parallel scans) and no request runs into a client timeout."""
BATCH_GET_KEYS = 100
"""BatchGetItem's limit of keys per request."""
_UNPROCESSED_TRIES = 12


def scan_items(
    dynamodb: Any,
    table: str,
    *,
    segments: int = 4,
    consistent: bool = False,
    limit: int = SCAN_LIMIT,
) -> Generator[Item, None, None]:
    """Every item of ``table``, read by ``segments`` parallel Scan segments
    (:func:`ddb2bq.dynamodb.scan.read_segments`; in no order; one segment is a plain Scan).

    >>> for item in scan_items(boto3.client("dynamodb"), "orders", segments=8):  # doctest: +SKIP
    ...     print(item["pk"])
    """
    starts = [SegmentStart(segment, segments) for segment in range(segments)]
    pages = read_segments(
        dynamodb, table, starts, consistent=consistent, page_limit=limit, in_flight=2 * segments
    )
    for page in pages:
        yield from page.items


def get_items(
    dynamodb: Any,
    table: str,
    keys: Sequence[Item],
    *,
    consistent: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Item]:
    """The items of ``keys`` that exist (in no order), ``consistent`` reads by default.

    Keys are in boto3's form (B as ``bytes``); duplicates are read once.
    """
    unique = list({_key_id(key): key for key in keys}.values())
    found: list[Item] = []
    for start in range(0, len(unique), BATCH_GET_KEYS):
        chunk = unique[start : start + BATCH_GET_KEYS]
        request: dict[str, Any] = {table: {"Keys": chunk, "ConsistentRead": consistent}}
        for attempt in range(_UNPROCESSED_TRIES):
            response = dynamodb.batch_get_item(RequestItems=request)
            found.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            sleep(min(5.0, 0.05 * 2**attempt))
        else:
            raise RetryableError(
                f"DynamoDB left keys of table {table!r} unprocessed after {_UNPROCESSED_TRIES} "
                "BatchGetItem tries (throttled); try again later."
            )
    return found


def estimated_item_count(dynamodb: Any, table: str) -> int:
    """DescribeTable's ``ItemCount``: DynamoDB updates it about every six hours."""
    description = dynamodb.describe_table(TableName=table)["Table"]
    return int(description.get("ItemCount") or 0)


def _key_id(key: Item) -> tuple[tuple[str, str, Any], ...]:
    return tuple((name, *next(iter(value.items()))) for name, value in sorted(key.items()))
