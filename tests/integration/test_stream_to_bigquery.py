"""DynamoDB (moto, with a stream) -> boto3 GetRecords -> convert -> local-bigquery -> query: exact."""

from __future__ import annotations

import base64
import time
from decimal import Decimal
from typing import Any

import orjson
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.dynamodb.streams import read_stream
from ddb2bq.images import new_image
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import Column, build_layout
from ddb2bq.verify.canonical import canonical_map
from tests.integration.dynamodb_support import create_source_table
from tests.strategies import from_event_json

EXTREME_NUMBERS = [
    "1E-130",
    "-1E-130",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1234567895171680000000000000000000000000",
    "0.12345678901234567890123456789012345678",
    "-12345678901234567890123456789.123456789",
]

ITEMS: list[dict[str, Any]] = [
    {
        "pk": {"S": "every-type"},
        "sk": {"N": "1"},
        "s": {"S": 'héllo ✓ \u0000 "quoted" \\ back'},
        "empty": {"S": ""},
        "n": {"N": "-12.5"},
        "b": {"B": b"\x00\xff\x10binary"},
        "flag": {"BOOL": True},
        "nothing": {"NULL": True},
        "ss": {"SS": ["zeta", "alpha", "Émile"]},
        "ns": {"NS": ["10", "-1E-130", "9.9999999999999999999999999999999999999E+125"]},
        "bs": {"BS": [b"\x02", b"\x01\x00"]},
        "m": {"M": {"nested": {"M": {"deeper": {"L": [{"N": "1"}, {"M": {}}, {"L": []}]}}}}},
        "l": {"L": [{"S": "x"}, {"BOOL": False}, {"NULL": True}, {"N": "1E+125"}]},
        "total": {"N": "99999999999999999999999999999.999999999"},
        "count": {"N": "-9223372036854775808"},
        "ratio": {"N": "12345678901234567890.123456789012345678"},
    },
    *(
        {"pk": {"S": "extreme"}, "sk": {"N": str(i)}, "n": {"N": text}, "exact": {"N": text}}
        for i, text in enumerate(EXTREME_NUMBERS, start=2)
    ),
]

PROMOTED = {
    "total": "NUMERIC",
    "count": "INT64",
    "ratio": "BIGNUMERIC",  # fits the emulator's DECIMAL(38,18); real BIGNUMERIC holds far more
    "exact": "STRING",
    "b": "BYTES",
    "flag": "BOOL",
    "ss": "ARRAY<STRING>",
    "m": "JSON",
}


def test_items_of_every_type_reach_bigquery_exactly(
    dynamodb: Any,
    dynamodbstreams: Any,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a moto table with a NEW_AND_OLD_IMAGES stream holding items of every type
    table_name = f"every_type_{int(time.time() * 1000)}"
    stream_arn = create_source_table(dynamodb, table_name)
    assert stream_arn is not None
    for item in ITEMS:
        dynamodb.put_item(TableName=table_name, Item=item)

    # WHEN the stream is read with boto3, converted, and inserted into local-bigquery
    changes = list(read_stream(dynamodbstreams, stream_arn))
    layout = build_layout([("pk", "S"), ("sk", "N")], promoted=PROMOTED)
    builder = RowBuilder(layout)
    rows = [builder.build(change) for change in changes]
    table = create_bq_table(bq_client, dataset, "every_type_changes", layout.changelog_columns())
    errors = bq_client.insert_rows_json(
        table,
        [r.changelog for r in rows],
        row_ids=[r.change.event_id for r in rows],
        retry=bq_retry,
    )
    assert errors == []

    # THEN every value read back with a query is exact
    back = {(row["pk"], row["sk"]): row for row in query_all(bq_client, table, bq_retry)}
    assert len(back) == len(ITEMS) == len(changes)
    for item in ITEMS:
        row = back[(item["pk"]["S"], Decimal(item["sk"]["N"]))]
        assert row["op"] == "INSERT"
        rebuilt = from_event_json(new_image(row))
        assert canonical_map(rebuilt) == canonical_map(item), "the changelog rebuilds the item"
        assert_item_json(item, as_json(row["item"]))
        assert_promoted(item, row)


def create_bq_table(
    client: bigquery.Client, dataset: bigquery.Dataset, name: str, columns: list[Column]
) -> bigquery.Table:
    schema = [bigquery.SchemaField(c.name, c.field_type, mode=c.field_mode) for c in columns]
    table = bigquery.Table(dataset.table(name), schema=schema)
    table.time_partitioning = bigquery.TimePartitioning(field="changed_at")
    table.clustering_fields = ["pk", "sk"]
    return client.create_table(table, timeout=30)


def query_all(client: bigquery.Client, table: bigquery.Table, retry: Retry) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM `{table.project}.{table.dataset_id}.{table.table_id}`"
    job = client.query(sql, retry=retry, job_retry=retry)
    return [dict(row) for row in job.result(retry=retry, timeout=30)]


def as_json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def number(value: Any) -> Decimal:
    if isinstance(value, str):
        return Decimal(value)
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def assert_item_json(item: dict[str, Any], plain: dict[str, Any]) -> None:
    assert plain.keys() == item.keys()
    for name, value in item.items():
        assert_plain_value(value, plain[name])


def assert_plain_value(value: dict[str, Any], plain: Any) -> None:
    ((tag, raw),) = value.items()
    checks = {
        "S": lambda: plain == raw,
        "N": lambda: number(plain) == Decimal(raw),
        "B": lambda: base64.b64decode(plain) == raw,
        "BOOL": lambda: plain is raw,
        "NULL": lambda: plain is None,
        "SS": lambda: plain == sorted(raw),
        "NS": lambda: [number(p) for p in plain] == sorted(Decimal(r) for r in raw),
        "BS": lambda: [base64.b64decode(p) for p in plain] == sorted(raw),
        "M": lambda: assert_item_json(raw, plain) is None,
        "L": lambda: all(assert_plain_value(v, p) is None for v, p in zip(raw, plain, strict=True)),
    }
    assert checks[tag](), f"{tag} {raw!r} came back as {plain!r}"


def assert_promoted(item: dict[str, Any], row: dict[str, Any]) -> None:
    if "total" in item:
        assert row["total"] == Decimal(item["total"]["N"])
        assert row["count"] == int(item["count"]["N"])
        assert row["ratio"] == Decimal(item["ratio"]["N"])
        assert row["b"] == item["b"]["B"]
        assert row["flag"] is True
        assert row["ss"] == sorted(item["ss"]["SS"])
        assert_item_json(item["m"]["M"], as_json(row["m"]))
    else:
        assert Decimal(row["exact"]) == Decimal(item["exact"]["N"])
