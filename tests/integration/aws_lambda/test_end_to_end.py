"""End to end: a moto table's stream, delivered as Lambda delivers it, to the handler imported from
the built zip in a fresh isolated process, into local-bigquery; the mirror equals the table.

The event is what Lambda builds from GetRecords: eventVersion "1.1", eventSource "aws:dynamodb",
awsRegion, eventSourceARN (the stream), ApproximateCreationDateTime in epoch seconds, binary as
base64 text, in batches of BatchSize. On a partial batch failure the driver re-invokes with the
records from the reported one on, as Lambda does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import orjson
import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.config import Config
from ddb2bq.convert import plain_item
from ddb2bq.dynamodb.events import lambda_record
from ddb2bq.dynamodb.streams import read_records
from ddb2bq.local import REGION, Server
from tests.integration.aws_lambda.conftest import (
    BuiltZip,
    changelog_rows,
    init_replication,
    mirror_rows,
    replication_environ,
)
from tests.integration.dynamodb_support import create_source_table
from tests.integration.fault_proxy import HttpFaultProxy
from tests.strategies import to_event_json

HOST = Path(__file__).with_name("lambda_host.py")
BATCH_SIZE = 7
BIG = "1234567895171680000000000000000000000000"


class LambdaHost:
    """The handler from the zip in its own isolated, warm process (see lambda_host.py)."""

    def __init__(self, task: Path, runtime: Path, environ: Mapping[str, str], log: TextIO) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(HOST), str(task), str(runtime)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **environ},
        )
        self.invocations: list[tuple[list[str], dict[str, Any]]] = []

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the Lambda host died; see its log"
        response: dict[str, Any] = json.loads(line)
        numbers = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        self.invocations.append((numbers, response))
        return response

    def deliver(self, records: Sequence[dict[str, Any]], batch_size: int) -> None:
        """Deliver ``records`` in order as an event source mapping does, retrying from the
        reported record until every batch is answered with no failure."""
        position, attempts = 0, 0
        while position < len(records):
            attempts += 1
            assert attempts < 50, "the stream does not progress"
            batch = list(records[position : position + batch_size])
            response = self.invoke({"Records": batch})
            assert "errorType" not in response, response
            failures = response["batchItemFailures"]
            if not failures:
                position += len(batch)
                continue
            numbers = [r["dynamodb"]["SequenceNumber"] for r in batch]
            position += numbers.index(failures[0]["itemIdentifier"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture
def host_log(tmp_path: Path) -> Iterator[TextIO]:
    with (tmp_path / "function.log").open("w+") as log:
        yield log


def start_host(
    lambda_zip: BuiltZip, runtime: Path, environ: Mapping[str, str], log: TextIO
) -> LambdaHost:
    return LambdaHost(lambda_zip.unpacked, runtime, environ, log)


# --- the source table and its stream as Lambda events ------------------------------------------


def create_table(dynamodb: Any) -> tuple[str, str]:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    stream_arn = create_source_table(dynamodb, name)
    assert stream_arn is not None
    return name, stream_arn


def item(number: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"customer#{number % 4}"},
        "sk": {"N": str(number)},
        "name": {"S": f"Order ñ°{number} ✓"},
        "total": {"N": f"{number * 37}.25"},
        "big": {"N": BIG},
        "blob": {"B": bytes([0, number, 255])},
        "tags": {"SS": ["b", "a", f"t{number}"]},
        "scores": {"NS": ["1", "-0.5", "1E+100"]},
        "paid": {"BOOL": number % 2 == 0},
        "note": {"NULL": True},
        "lines": {"L": [{"M": {"sku": {"S": "x"}, "qty": {"N": "2"}}}, {"N": "3.14"}]},
    }


def write_workload(dynamodb: Any, table: str) -> None:
    """Inserts, updates, deletes and a re-insert: every kind of change."""
    for number in range(12):
        dynamodb.put_item(TableName=table, Item=item(number))
    for number in (1, 4, 7, 10):
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": f"customer#{number % 4}"}, "sk": {"N": str(number)}},
            UpdateExpression="SET #n = :n, #t = :t REMOVE #b",
            ExpressionAttributeNames={"#n": "name", "#t": "total", "#b": "blob"},
            ExpressionAttributeValues={":n": {"S": "updated"}, ":t": {"N": "0.000000001"}},
        )
    for number in (2, 5, 11):
        dynamodb.delete_item(
            TableName=table, Key={"pk": {"S": f"customer#{number % 4}"}, "sk": {"N": str(number)}}
        )
    dynamodb.put_item(TableName=table, Item={**item(5), "name": {"S": "back again"}})


def poison_record(after: Mapping[str, Any]) -> dict[str, Any]:
    """A change no writer can take: a number that is not a number (DynamoDB never sends one,
    a bug upstream might). It names a key the table does not hold."""
    number = str(int(after["dynamodb"]["SequenceNumber"]) + 1)  # between two real ones
    body = {
        **after["dynamodb"],
        "Keys": {"pk": {"S": "poison"}, "sk": {"N": "0"}},
        "NewImage": {"pk": {"S": "poison"}, "sk": {"N": "0"}, "total": {"N": "12abc"}},
        "SequenceNumber": number,
    }
    body.pop("OldImage", None)
    return {**after, "eventID": "poison-1", "eventName": "INSERT", "dynamodb": body}


# --- what the table and the mirror hold --------------------------------------------------------


def table_state(dynamodb: Any, table: str) -> dict[tuple[str, Decimal], Any]:
    items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    return {
        (i["pk"]["S"], Decimal(i["sk"]["N"])): orjson.loads(
            orjson.dumps(plain_item(to_event_json(i)))
        )
        for i in items
    }


def mirror_state(client: bigquery.Client, config: Config, retry: Retry) -> dict[Any, Any]:
    rows = mirror_rows(client, config, retry, "pk, sk, TO_JSON_STRING(item) AS item")
    return {(r["pk"], r["sk"]): json.loads(r["item"]) for r in rows}


# --- the tests ---------------------------------------------------------------------------------


def test_a_table_stream_through_the_zipped_handler_mirrors_the_table(
    lambda_zip: BuiltZip,
    lambda_runtime: Path,
    dynamodb: Any,
    dynamodbstreams: Any,
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
    host_log: TextIO,
) -> None:
    # GIVEN a moto table with a stream, its changes, and its tables on the emulator
    table, stream_arn = create_table(dynamodb)
    write_workload(dynamodb, table)
    records = [
        lambda_record(r, stream_arn, REGION) for r in read_records(dynamodbstreams, stream_arn)
    ]
    assert len(records) == 12 + 4 + 3 + 1
    # ... and a poison record in the middle of the stream
    records.insert(9, poison_record(records[8]))
    dead_letters = tmp_path / "dead-letters"
    environ = replication_environ(
        bigquery_server,
        bq_project,
        dataset.dataset_id,
        table,
        dead_letters,
        DDB2BQ_COLUMNS_PROMOTE="name,total",
        DDB2BQ_COLUMNS_TYPES='{"name": "STRING", "total": "NUMERIC"}',
    )
    config = init_replication(bq_client, environ, [("pk", "S"), ("sk", "N")])

    # WHEN Lambda delivers the stream in batches of BatchSize to the handler from the zip
    host = start_host(lambda_zip, lambda_runtime, environ, host_log)
    try:
        host.deliver(records, BATCH_SIZE)
    finally:
        host.close()

    # THEN every batch was answered without a failure: the poison went to the dead letters
    assert [response for _, response in host.invocations] == [{"batchItemFailures": []}] * 3
    assert [len(numbers) for numbers, _ in host.invocations] == [7, 7, 7]
    # ... the mirror equals the table
    expected = table_state(dynamodb, table)
    assert len(expected) == 12 - 3 + 1
    assert mirror_state(bq_client, config, bq_retry) == expected
    # ... the changelog holds each change once, the poison none
    rows = changelog_rows(bq_client, config, bq_retry)
    assert sorted(r["event_id"] for r in rows) == sorted(
        r["eventID"] for r in records if r["eventID"] != "poison-1"
    )
    # ... the poison record is in the dead letters, whole, with why
    [letter_file] = list(dead_letters.rglob("*.jsonl"))
    [letter] = [json.loads(line) for line in letter_file.read_text().splitlines()]
    assert letter["record"] == records[9]
    assert (letter["event_id"], letter["source"], letter["table"]) == ("poison-1", "lambda", table)
    assert "total" in letter["error"]
    # ... and the function printed JSON logs and one metrics line per batch
    host_log.seek(0)
    lines = [json.loads(line) for line in host_log.read().splitlines() if line.startswith("{")]
    metrics = [line for line in lines if "_aws" in line]
    assert [m["Records"] for m in metrics] == [7, 7, 7]
    assert sum(m["DeadLetters"] for m in metrics) == 1
    assert sum(m["ChangelogRowsWritten"] for m in metrics) == 20
    assert all(m["LagMax"] >= 0 for m in metrics)
    assert "Order" not in json.dumps([line for line in lines if line.get("level") == "INFO"])


def test_bigquery_failing_for_a_while_is_retried_from_the_reported_record(
    lambda_zip: BuiltZip,
    lambda_runtime: Path,
    dynamodb: Any,
    dynamodbstreams: Any,
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
    host_log: TextIO,
) -> None:
    # GIVEN the stream of a moto table, and the function's BigQuery REST traffic through a proxy
    # that lets the schema read and the first batch through, then fails every try of the
    # second batch's write (503, reset, 503, 429, 503: the writer's five attempts)
    table, stream_arn = create_table(dynamodb)
    write_workload(dynamodb, table)
    records = [
        lambda_record(r, stream_arn, REGION) for r in read_records(dynamodbstreams, stream_arn)
    ]
    environ = replication_environ(
        bigquery_server,
        bq_project,
        dataset.dataset_id,
        table,
        tmp_path / "dead-letters",
        DDB2BQ_TARGET_WRITER="insert_all",
    )
    config = init_replication(bq_client, environ, [("pk", "S"), ("sk", "N")])
    script = ["pass", "pass", "503", "reset", "503", "429", "503"]
    with HttpFaultProxy(bigquery_server.endpoint, script) as proxy:
        host = start_host(
            lambda_zip,
            lambda_runtime,
            {**environ, "DDB2BQ_TARGET_ENDPOINT": proxy.url},
            host_log,
        )
        # WHEN Lambda delivers the stream, retrying from each reported record
        try:
            host.deliver(records, BATCH_SIZE)
        finally:
            host.close()
    assert proxy.injected == ["503", "reset", "503", "429", "503"]

    # THEN the second batch was reported at its first record, and re-delivered from there
    numbers = [r["dynamodb"]["SequenceNumber"] for r in records]
    assert [(calls[0], response) for calls, response in host.invocations] == [
        (numbers[0], {"batchItemFailures": []}),
        (numbers[7], {"batchItemFailures": [{"itemIdentifier": numbers[7]}]}),
        (numbers[7], {"batchItemFailures": []}),
        (numbers[14], {"batchItemFailures": []}),
    ]
    # ... the mirror equals the table, and no change is in the changelog twice
    assert mirror_state(bq_client, config, bq_retry) == table_state(dynamodb, table)
    event_ids = [r["event_id"] for r in changelog_rows(bq_client, config, bq_retry)]
    assert sorted(event_ids) == sorted(r["eventID"] for r in records)
    # ... and the retries are in the metrics
    host_log.seek(0)
    metrics = [json.loads(x) for x in host_log.read().splitlines() if x.startswith('{"_aws"')]
    assert [m.get("RetryableFailures") for m in metrics] == [0, 7, 0, 0]
    assert metrics[1]["Retries"] == 4
