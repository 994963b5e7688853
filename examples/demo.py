"""The local end-to-end demo: DynamoDB (moto) -> stream -> ddb2bq -> BigQuery (local-bigquery).

Run it with ``scripts/demo`` (which sets everything up first). It starts both local stand-ins,
writes items of every DynamoDB type (extreme numbers included) to a table with a
NEW_AND_OLD_IMAGES stream, changes and deletes some, reads the stream with boto3, converts each
change with ddb2bq, inserts the changelog rows into the local BigQuery, queries them back and
prints them as a table, then checks that every value came back exactly.
"""

from __future__ import annotations

import base64
import sys
from decimal import Decimal
from typing import Any

import boto3
import orjson
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from ddb2bq.local import AWS_DUMMY_CREDENTIALS, REGION, local_servers
from ddb2bq.records import Change
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import build_layout
from ddb2bq.streams import read_stream

PROJECT = "demo-project"
TABLE = "orders"
RETRY = bigquery.DEFAULT_RETRY.with_timeout(20.0)

ITEMS: list[dict[str, Any]] = [
    {
        "pk": {"S": "order#1"},
        "sk": {"N": "1"},
        "customer": {"S": "Zoë Ångström ✓"},
        "total": {"N": "1234.50"},
        "huge": {"N": "9.9999999999999999999999999999999999999E+125"},
        "tiny": {"N": "1E-130"},
        "exact38": {"N": "1234567895171680000000000000000000000000"},
        "paid": {"BOOL": True},
        "coupon": {"NULL": True},
        "receipt": {"B": b"\x00\x01PDF"},
        "tags": {"SS": ["gift", "express"]},
        "sizes": {"NS": ["42", "-0.5"]},
        "chunks": {"BS": [b"\x02", b"\x01"]},
        "address": {
            "M": {"city": {"S": "Zürich"}, "geo": {"L": [{"N": "47.3769"}, {"N": "8.5417"}]}}
        },
        "lines": {"L": [{"M": {"sku": {"S": "A-1"}, "qty": {"N": "2"}}}, {"S": ""}]},
    },
    {"pk": {"S": "order#2"}, "sk": {"N": "1"}, "customer": {"S": "Ada"}, "total": {"N": "0.1"}},
    {"pk": {"S": "order#3"}, "sk": {"N": "1"}, "customer": {"S": "Grace"}, "total": {"N": "-0"}},
]


def main() -> int:
    print("Starting moto (DynamoDB + Streams) and local-bigquery on 127.0.0.1 ...")
    with local_servers(PROJECT) as servers:
        dynamodb, streams = aws_clients(servers.moto.endpoint)
        stream_arn = create_source_table(dynamodb)
        write_history(dynamodb)
        changes = list(read_stream(streams, stream_arn))
        print(f"Read {len(changes)} changes from the stream {stream_arn}")
        client = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=servers.bigquery.endpoint),
        )
        rows = load_changelog(client, changes)
        print_table(rows)
        return verify(rows)


def aws_clients(endpoint: str) -> tuple[Any, Any]:
    session = boto3.Session(
        aws_access_key_id=AWS_DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    return session.client("dynamodb", endpoint_url=endpoint), session.client(
        "dynamodbstreams", endpoint_url=endpoint
    )


def create_source_table(dynamodb: Any) -> str:
    response = dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(response["TableDescription"]["LatestStreamArn"])


def write_history(dynamodb: Any) -> None:
    for item in ITEMS:
        dynamodb.put_item(TableName=TABLE, Item=item)
    dynamodb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "order#2"}, "sk": {"N": "1"}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "total"},
        ExpressionAttributeValues={":t": {"N": "0.10000000000000000000000000000000000001"}},
    )
    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "order#3"}, "sk": {"N": "1"}})


def load_changelog(client: bigquery.Client, changes: list[Change]) -> list[dict[str, Any]]:
    layout = build_layout([("pk", "S"), ("sk", "N")], promoted={"total": "STRING"})
    builder = RowBuilder(layout)
    built = [builder.build(change) for change in changes]
    dataset = client.create_dataset("dynamodb", exists_ok=True, retry=RETRY, timeout=30)
    schema = [
        bigquery.SchemaField(c.name, c.field_type, mode=c.field_mode)
        for c in layout.changelog_columns()
    ]
    table = bigquery.Table(dataset.table(f"{TABLE}_changes"), schema=schema)
    table.time_partitioning = bigquery.TimePartitioning(field="changed_at")
    table.clustering_fields = ["pk", "sk"]
    table = client.create_table(table, exists_ok=True, retry=RETRY, timeout=30)
    errors = client.insert_rows_json(
        table, [b.changelog for b in built], row_ids=[b.change.event_id for b in built], retry=RETRY
    )
    if errors:
        raise SystemExit(f"BigQuery refused rows: {errors}")
    sql = f"SELECT * FROM `{PROJECT}.dynamodb.{TABLE}_changes` ORDER BY seq"
    result = client.query(sql, retry=RETRY, job_retry=RETRY).result(retry=RETRY, timeout=30)
    return [dict(row) for row in result]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\nBigQuery `{PROJECT}.dynamodb.{TABLE}_changes`, queried back:\n")
    header = ("op", "pk", "seq (last section)", "total", "item (plain JSON)")
    lines = [
        (row["op"], row["pk"], row["seq"].rsplit("/", 1)[1], str(row["total"]), _short(row["item"]))
        for row in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))


def _short(value: Any, width: int = 90) -> str:
    text = (
        value
        if isinstance(value, str)
        else orjson.dumps(value).decode()
        if value is not None
        else "NULL"
    )
    return text if len(text) <= width else text[: width - 3] + "..."


def verify(rows: list[dict[str, Any]]) -> int:
    """Every image read back equals what DynamoDB holds, to the last digit and byte."""
    inserted = {row["pk"]: row for row in rows if row["op"] == "INSERT"}
    mismatches = []
    for item in ITEMS:
        image = _json(inserted[item["pk"]["S"]]["new_image"])
        if _binary_back(image) != item:
            mismatches.append(item["pk"]["S"])
    numbers = _json(inserted["order#1"]["item"])
    exact38 = Decimal(repr(numbers["exact38"]))
    print(
        f"\nIn item: huge={numbers['huge']!r} (a string: float64 would round it), "
        f"tiny={numbers['tiny']!r}, exact38={numbers['exact38']!r} (float64 gives it back: "
        f"{exact38 == Decimal('1234567895171680000000000000000000000000')})"
    )
    if mismatches:
        print(f"MISMATCH in {mismatches}", file=sys.stderr)
        return 1
    print(f"All {len(ITEMS)} items came back exactly; {len(rows)} changes in the changelog.")
    return 0


def _json(value: Any) -> Any:
    """JSON columns come back parsed from the query API; accept JSON text too."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _binary_back(value: Any, tag: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _binary_back(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_binary_back(v, tag if tag == "BS" else "") for v in value]
    return base64.b64decode(value) if tag in ("B", "BS") and isinstance(value, str) else value


if __name__ == "__main__":
    sys.exit(main())
