"""The local end-to-end demo: DynamoDB (moto) -> stream -> the ddb2bq Lambda handler -> BigQuery.

Run it with ``scripts/demo`` (which sets everything up first). Against local stand-ins of both
clouds on 127.0.0.1 it does what a user does with real ones:

1. creates a DynamoDB table, turns its stream on (``ddb2bq enable-stream``) and creates the
   BigQuery changelog and mirror (``ddb2bq init``);
2. writes items of every DynamoDB type (extreme numbers included), updates and deletes some;
3. reads the stream with boto3 and hands its records to the Lambda handler in the events Lambda
   would deliver (batches of 4);
4. queries the mirror and the changelog back and prints them as tables, then checks that the
   mirror equals the DynamoDB table and that every changelog image is the item, to the last
   digit and byte.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import orjson
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from ddb2bq.aws_lambda import Handler
from ddb2bq.cli import main as ddb2bq
from ddb2bq.config import load_config
from ddb2bq.convert import plain_item
from ddb2bq.dynamodb.events import lambda_events
from ddb2bq.dynamodb.streams import read_records
from ddb2bq.local import REGION, local_servers
from ddb2bq.observability import configure_logging
from ddb2bq.records import encode_binary

PROJECT = "demo-project"
DATASET = "dynamodb"
TABLE = "orders"
RETRY = bigquery.DEFAULT_RETRY.with_timeout(20.0)
LOG = Path(__file__).resolve().parents[1] / ".cache" / "demo" / "lambda.log"

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
    with local_servers(PROJECT) as servers, tempfile.TemporaryDirectory() as work:
        os.environ.update(
            {
                **servers.environment(),
                "DDB2BQ_SOURCE_TABLE": TABLE,
                "DDB2BQ_TARGET_DATASET": DATASET,
                "DDB2BQ_COLUMNS_PROMOTE": "customer,total",
                "DDB2BQ_COLUMNS_TYPES": '{"total": "NUMERIC"}',
                "DDB2BQ_DEAD_LETTERS_PATH": os.path.join(work, "dead-letters"),
            }
        )
        dynamodb = boto3.client("dynamodb", endpoint_url=servers.moto.endpoint, region_name=REGION)
        streams = boto3.client(
            "dynamodbstreams", endpoint_url=servers.moto.endpoint, region_name=REGION
        )
        create_source_table(dynamodb)
        run("enable-stream")
        run("init")
        write_history(dynamodb)
        stream_arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        deliver(streams, stream_arn)
        client = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=servers.bigquery.endpoint),
        )
        mirror = query(client, f"SELECT * FROM `{PROJECT}.{DATASET}.{TABLE}` ORDER BY pk")
        changes = query(client, f"SELECT * FROM `{PROJECT}.{DATASET}.{TABLE}_changes` ORDER BY seq")
        print_mirror(mirror)
        print_changelog(changes)
        return verify(dynamodb, mirror, changes)


def run(*args: str) -> None:
    print(f"\n$ ddb2bq {' '.join(args)}")
    code = ddb2bq(list(args))
    if code != 0:
        raise SystemExit(f"ddb2bq {' '.join(args)} failed with exit code {code}")


def create_source_table(dynamodb: Any) -> None:
    dynamodb.create_table(
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
    )


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


def deliver(streams: Any, stream_arn: str) -> None:
    """What Lambda does: the stream's records, in order, in batches, to the handler."""
    LOG.parent.mkdir(parents=True, exist_ok=True)
    print(f"\nReading the stream, invoking the Lambda handler (its JSON log and metrics: {LOG}):")
    with LOG.open("w", encoding="utf-8") as log:
        configure_logging(stream=log)
        function = Handler(load_config(), metrics_stream=log)
        events = lambda_events(read_records(streams, stream_arn), stream_arn, REGION, batch_size=4)
        for number, event in enumerate(events, start=1):
            response = function(event, None)
            print(f"  batch {number}: {len(event['Records'])} records -> {response}")
            if response["batchItemFailures"]:
                raise SystemExit(f"the handler asked for a retry; see {LOG}")
    for line in LOG.read_text(encoding="utf-8").splitlines():
        if '"level":"WARNING"' in line:
            print(f"  log: {orjson.loads(line)['message']}")


def query(client: bigquery.Client, sql: str) -> list[dict[str, Any]]:
    rows = client.query(sql, retry=RETRY, job_retry=RETRY).result(retry=RETRY, timeout=30)
    return [dict(row) for row in rows]


def print_mirror(rows: list[dict[str, Any]]) -> None:
    print(f"\nThe mirror `{PROJECT}.{DATASET}.{TABLE}` (a view: the latest change per key):\n")
    print_table(
        ("pk", "sk", "customer", "total (NUMERIC)", "item (plain JSON)"),
        [(r["pk"], r["sk"], r["customer"], r["total"], _short(r["item"], 70)) for r in rows],
    )


def print_changelog(rows: list[dict[str, Any]]) -> None:
    print(f"\nThe changelog `{PROJECT}.{DATASET}.{TABLE}_changes`:\n")
    print_table(
        ("op", "pk", "seq (last section)", "total", "new_image (DynamoDB JSON)"),
        [
            (r["op"], r["pk"], r["seq"].rsplit("/", 1)[1], r["total"], _short(r["new_image"], 60))
            for r in rows
        ],
    )


def print_table(header: tuple[str, ...], lines: list[tuple[Any, ...]]) -> None:
    cells = [tuple("NULL" if c is None else str(c) for c in line) for line in lines]
    widths = [max(len(x) for x in column) for column in zip(header, *cells, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _short(value: Any, width: int) -> str:
    text = (
        value
        if isinstance(value, str)
        else "NULL"
        if value is None
        else orjson.dumps(value).decode()
    )
    return text if len(text) <= width else text[: width - 3] + "..."


def verify(dynamodb: Any, mirror: list[dict[str, Any]], changes: list[dict[str, Any]]) -> int:
    """The mirror equals the table; every changelog image is the item, to the last digit."""
    table = dynamodb.scan(TableName=TABLE)["Items"]
    expected = {item["pk"]["S"]: plain_item(encode_binary(item)) for item in table}
    actual = {row["pk"]: _json(row["item"]) for row in mirror}
    images_exact = all(
        _binary_back(_json(row["new_image"])) == source
        for row in changes
        if row["op"] == "INSERT"
        for source in ITEMS
        if source["pk"]["S"] == row["pk"]
    )
    numbers = actual["order#1"]
    print(
        f"\nIn item: huge={numbers['huge']!r} (a string: float64 would round it), "
        f"tiny={numbers['tiny']!r}, exact38={numbers['exact38']!r} (float64 gives it back exactly: "
        f"{Decimal(repr(numbers['exact38'])) == Decimal('1234567895171680000000000000000000000000')})"
    )
    if actual != expected or not images_exact:
        print(
            f"MISMATCH: mirror equals table: {actual == expected}; images exact: {images_exact}",
            file=sys.stderr,
        )
        return 1
    print(
        f"The mirror equals the DynamoDB table ({len(table)} items); the changelog holds "
        f"{len(changes)} changes whose images are exactly the items written."
    )
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
