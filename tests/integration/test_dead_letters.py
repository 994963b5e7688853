"""Dead letters end to end: a change BigQuery refuses goes whole to the dead letters while the
others land; ``ddb2bq replay-dead-letters`` lands it once the table is fixed. And the S3 and SQS
stores against moto."""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.storage_write import StorageWriteWriter
from ddb2bq.bigquery.tables import TableRefs, init_tables, initial_layout, schema_field
from ddb2bq.cli import main
from ddb2bq.config import Config, DeadLettersConfig, load_config
from ddb2bq.contract import DeadLetter, Writer
from ddb2bq.dead_letters import (
    LocalDeadLetters,
    S3DeadLetters,
    SqsDeadLetters,
    encode_letter,
    read_dead_letters,
)
from ddb2bq.dead_letters.aws import SQS_MAX_BYTES
from ddb2bq.dead_letters.stores import dead_letters_from_config
from ddb2bq.exceptions import RetryableError, TerminalError
from ddb2bq.local import REGION, Server
from ddb2bq.records import from_lambda_record
from ddb2bq.schema import Column, TableLayout
from tests.integration.mirror_support import bigquery_pipeline
from tests.sink_data import record

QUICK = RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2, deadline=5.0)
KEY_SCHEMA = [("Id", "N"), ("Sk", "S")]


def write_config(path: Path, dataset: str, writer: str, letters: Path) -> Path:
    path.write_text(
        f"""
[source]
table = "orders"
keys = ["Id", "Sk"]

[target]
dataset = "{dataset}"
writer = "{writer}"

[columns]
promote = ["status", "total"]
types = {{ status = "STRING", total = "STRING" }}

[dead_letters]
kind = "local"
path = "{letters}"
""",
        encoding="utf-8",
    )
    return path


def writer_for(config: Config, client: bigquery.Client, write_client: BigQueryWriteClient) -> Any:
    refs = TableRefs.from_config(config, client.project)

    def build(layout: TableLayout) -> Writer:
        columns = layout.changelog_columns()
        if config.target.writer == "insert_all":
            return InsertAllWriter(client, refs.changes.api, columns, retry_policy=QUICK)
        changes = refs.changes
        path = f"projects/{changes.project}/datasets/{changes.dataset}/tables/{changes.table}"
        return StorageWriteWriter(write_client, path, columns, retry_policy=QUICK)

    return build


def recreate_changelog(
    client: bigquery.Client, config: Config, columns: list[Column], retry: Retry
) -> None:
    ref = TableRefs.from_config(config, client.project).changes
    client.delete_table(ref.api, retry=retry, timeout=30)
    table = bigquery.Table(ref.api, schema=[schema_field(c) for c in columns])
    client.create_table(table, retry=retry, timeout=30)


def changelog(client: bigquery.Client, config: Config, retry: Retry) -> list[dict[str, Any]]:
    ref = TableRefs.from_config(config, client.project).changes
    sql = f"SELECT event_id, total FROM `{ref.api}` ORDER BY event_id"
    job = client.query(sql, retry=retry, job_retry=retry)
    return [dict(row) for row in job.result(retry=retry, timeout=30)]


@pytest.mark.parametrize("kind", ["insert_all", "storage_write"])
def test_a_refused_change_is_dead_lettered_whole_and_replay_lands_it_after_the_fix(
    kind: str,
    tmp_path: Path,
    local_env: dict[str, str],
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN replication set up with `total` as STRING, but a changelog table left over from
    # when `total` was NUMERIC
    letters = tmp_path / "letters"
    config_path = write_config(tmp_path / "ddb2bq.toml", dataset.dataset_id, kind, letters)
    config = load_config(config_path)
    layout = init_tables(bq_client, config, initial_layout(config, KEY_SCHEMA)).layout
    columns = layout.changelog_columns()
    stale = [Column(c.name, "NUMERIC") if c.name == "total" else c for c in columns]
    recreate_changelog(bq_client, config, stale, bq_retry)
    sink = bigquery_pipeline(
        config,
        layout,
        bq_client,
        writer_for(config, bq_client, bq_write_client),
        LocalDeadLetters(letters),
        source="lambda",
    )
    records = [record(n, total={"N": "1E+40" if n == 3 else f"{n}.25"}) for n in range(1, 6)]
    changes = [from_lambda_record(copy.deepcopy(r), index=i) for i, r in enumerate(records)]

    # WHEN a batch where one total does not fit NUMERIC is written
    result = sink.process(changes, ordered=False)

    # THEN that change is dead-lettered, whole; the four others landed
    assert [o.status for o in result.outcomes] == [
        "written", "written", "dead_lettered", "written", "written",
    ]  # fmt: skip
    (letter,) = read_dead_letters(LocalDeadLetters(letters), "orders")
    assert letter.record == records[2]
    assert (letter.event_id, letter.source) == ("evt-0003-insert", "lambda")
    assert letter.keys == {"Id": {"N": "3"}, "Sk": {"S": "order#0003"}}
    assert "numeric" in letter.error.lower()
    landed = [row["event_id"] for row in changelog(bq_client, config, bq_retry)]
    assert landed == ["evt-0001-insert", "evt-0002-insert", "evt-0004-insert", "evt-0005-insert"]

    # WHEN the table is fixed (recreated by init with the layout's types) and the letters replayed
    recreate_changelog(bq_client, config, columns, bq_retry)
    out, err = io.StringIO(), io.StringIO()
    code = _run(["replay-dead-letters", "--config", str(config_path)], out, err)

    # THEN the change landed exactly, and no letter is left
    assert (code, out.getvalue(), err.getvalue()) == (0, "orders: 1 landed, 0 kept\n", "")
    assert changelog(bq_client, config, bq_retry) == [
        {"event_id": "evt-0003-insert", "total": "1" + "0" * 40}
    ]
    assert read_dead_letters(LocalDeadLetters(letters), "orders") == []


def test_replay_keeps_letters_that_still_fail_with_the_new_error(
    tmp_path: Path,
    local_env: dict[str, str],
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a dead letter whose cause is not fixed (the column is still NUMERIC)
    letters = tmp_path / "letters"
    config_path = write_config(tmp_path / "ddb2bq.toml", dataset.dataset_id, "insert_all", letters)
    config = load_config(config_path)
    layout = init_tables(bq_client, config, initial_layout(config, KEY_SCHEMA)).layout
    stale = [
        Column(c.name, "NUMERIC") if c.name == "total" else c for c in layout.changelog_columns()
    ]
    recreate_changelog(bq_client, config, stale, bq_retry)
    original = record(9, total={"N": "1E+40"})
    LocalDeadLetters(letters).send(
        [DeadLetter("orders", "first error", 1, "lambda", original, "evt-0009-insert")]
    )
    # WHEN replayed: the sink reads `total` as NUMERIC from the table, so the value does not
    # fit the column: it stays in `item` and the row lands (type conflicts never fail a row)
    out, err = io.StringIO(), io.StringIO()
    code = _run(["replay-dead-letters", "--config", str(config_path)], out, err)
    assert (code, out.getvalue()) == (0, "orders: 1 landed, 0 kept\n")
    # AND a letter whose record is broken stays, with the parse error, the record whole
    broken = record(10)
    del broken["dynamodb"]["Keys"]
    LocalDeadLetters(letters).send(
        [DeadLetter("orders", "first error", 1, "lambda", broken, "evt-0010-insert")]
    )
    out = io.StringIO()
    code = _run(["replay-dead-letters", "--config", str(config_path)], out, err)
    assert (code, out.getvalue()) == (1, "orders: 0 landed, 1 kept (1 unreadable)\n")
    (left,) = read_dead_letters(LocalDeadLetters(letters), "orders")
    assert "cannot be parsed again" in left.error
    assert left.record == broken


def _run(argv: list[str], out: io.StringIO, err: io.StringIO) -> int:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        return main(argv)


# --- S3 and SQS against moto -------------------------------------------------------------------


@pytest.fixture
def s3(aws_env: None, moto_server: Server) -> Iterator[Any]:
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name=REGION)
    client.create_bucket(Bucket="letters")
    yield client
    for item in client.list_objects_v2(Bucket="letters").get("Contents", []):
        client.delete_object(Bucket="letters", Key=item["Key"])
    client.delete_bucket(Bucket="letters")


@pytest.fixture
def sqs(aws_env: None, moto_server: Server) -> Iterator[tuple[Any, str]]:
    client = boto3.client("sqs", endpoint_url=moto_server.endpoint, region_name=REGION)
    url = client.create_queue(QueueName=f"letters-{id(client)}")["QueueUrl"]
    yield client, url
    client.delete_queue(QueueUrl=url)


def letter(n: int, table: str = "orders", **fields: Any) -> DeadLetter:
    return DeadLetter(**{
        "table": table, "error": f"error {n}", "failed_at_us": 1_714_564_800_000_000 + n,
        "source": "lambda", "record": record(n), "event_id": f"evt-{n:04d}-insert",
        "keys": {"Id": {"N": str(n)}}, **fields,
    })  # fmt: skip


def test_s3_keeps_one_object_per_table_per_batch_and_settles_them(s3: Any) -> None:
    store = S3DeadLetters(s3, "letters", "dl/")
    store.send([letter(1), letter(2), letter(3, table="users")])
    store.send([letter(4)])
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="letters")["Contents"])
    assert [k.rsplit("/", 2)[0] for k in keys] == ["dl/orders", "dl/orders", "dl/users"]
    assert all(k.split("/")[2] == "2024-05-01" for k in keys)
    # WHEN the orders letters are claimed and only letter 2 still fails
    claims = store.claim("orders")
    for claim in claims:
        store.settle(claim, [x for x in claim.letters if x.event_id == "evt-0002-insert"])
    # THEN one object holds letter 2; the users letter is untouched
    assert [x.event_id for x in store.read("orders")] == ["evt-0002-insert"]
    assert [x.event_id for x in store.read("users")] == ["evt-0003-insert"]


def test_sqs_sends_batches_and_overflows_a_big_letter_to_s3(s3: Any, sqs: tuple[Any, str]) -> None:
    client, url = sqs
    overflow = S3DeadLetters(s3, "letters", "big/")
    store = SqsDeadLetters(client, url, overflow=overflow, visibility_timeout=30)
    big = letter(99, record={**record(99), "pad": "x" * SQS_MAX_BYTES})
    # WHEN 23 letters and one over 256 KB are sent
    store.send([letter(n) for n in range(23)] + [big])
    # THEN the 23 are messages, the big one is in S3, whole
    assert sorted(x.event_id for x in read_dead_letters(store)) == [
        f"evt-{n:04d}-insert" for n in range(23)
    ]
    (overflowed,) = overflow.read("orders")
    assert overflowed.record == orjson.loads(orjson.dumps(big.record))


def test_sqs_without_overflow_refuses_a_big_letter_naming_its_key(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    store = SqsDeadLetters(client, url)
    big = letter(7, record={"pad": "x" * SQS_MAX_BYTES})
    with pytest.raises(Exception, match=r"evt-0007-insert .*'Id': \{'N': '7'\}.*s3_bucket"):
        store.send([big])


def test_sqs_claim_and_settle_delete_only_the_landed_letters(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    store = SqsDeadLetters(client, url, visibility_timeout=30)
    store.send([letter(1), letter(2), letter(3, table="users")])
    client.send_message(QueueUrl=url, MessageBody='{"requestContext": "a Lambda failure record"}')
    claims = store.claim("orders")
    assert sorted(x.event_id for c in claims for x in c.letters) == [
        "evt-0001-insert",
        "evt-0002-insert",
    ]
    for claim in claims:
        store.settle(claim, [x for x in claim.letters if x.event_id == "evt-0002-insert"])
    left = read_dead_letters(store)
    assert sorted((x.table, x.event_id) for x in left) == [
        ("orders", "evt-0002-insert"),
        ("users", "evt-0003-insert"),
    ]
    body = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert any("requestContext" in m["Body"] for m in body)  # not ours: left in the queue


def test_s3_sets_a_cut_off_line_aside_before_it_settles_the_object(s3: Any) -> None:
    # GIVEN an object of the orders letters whose middle line was cut off
    store = S3DeadLetters(s3, "letters", "dl/")
    lines = [encode_letter(letter(n)) for n in (1, 2, 3)]
    cut = lines[1][:80]
    key = "dl/orders/2024-05-01/1714564800000001-abc.jsonl"
    s3.put_object(Bucket="letters", Key=key, Body=b"\n".join([lines[0], cut, lines[2]]))
    # WHEN it is claimed: the whole letters are, the cut line is named
    (claim,) = store.claim("orders")
    assert [x.event_id for x in claim.letters] == ["evt-0001-insert", "evt-0003-insert"]
    (bad,) = claim.unreadable
    assert (bad.where, bad.kept_at) == (
        f"s3://letters/{key}:2",
        f"s3://letters/{key}.unreadable",
    )
    # AND settled with every letter landed
    store.settle(claim, [])
    # THEN the cut line is kept, byte for byte, beside the object, which is gone
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="letters")["Contents"]]
    assert keys == [f"{key}.unreadable"]
    assert s3.get_object(Bucket="letters", Key=keys[0])["Body"].read() == cut + b"\n"
    assert list(store.read("orders")) == []


def test_sqs_sends_nothing_when_one_letter_is_too_big_and_has_nowhere_to_go(
    sqs: tuple[Any, str],
) -> None:
    client, url = sqs
    store = SqsDeadLetters(client, url)
    big = letter(7, record={"pad": "x" * SQS_MAX_BYTES})
    # WHEN a batch of small letters and one too big for SQS is sent, without an S3 overflow
    with pytest.raises(TerminalError, match="evt-0007-insert"):
        store.send([letter(1), big, letter(2)])
    # THEN none of them was sent: the caller holds the whole batch, not two thirds of it
    assert read_dead_letters(store) == []


LAZY_PROBE = """
import json, sys
from ddb2bq.config import DeadLettersConfig
from ddb2bq.dead_letters.stores import dead_letters_from_config
from ddb2bq.contract import DeadLetter
letter = DeadLetter(table="orders", error="refused", failed_at_us=1_714_564_800_000_000,
                    source="lambda", record={"eventID": "7"}, event_id="evt-0007-insert",
                    keys={"Id": {"N": "7"}})
config = DeadLettersConfig(kind="sqs", sqs_queue_url=sys.argv[1], s3_bucket="letters")
store = dead_letters_from_config(config, region=sys.argv[2], endpoint_url=sys.argv[3])
made = "boto3" in sys.modules
store.send([letter])
print(json.dumps({"at_build": made, "at_send": "boto3" in sys.modules}))
"""


def test_the_s3_and_sqs_sinks_import_boto3_at_their_first_letter_not_before(
    sqs: tuple[Any, str], s3: Any, moto_server: Server
) -> None:
    # GIVEN [dead_letters] kind = "sqs" with an S3 overflow, in a fresh interpreter
    client, url = sqs
    argv = [url, REGION, moto_server.endpoint]
    # WHEN the sink is made (as the Lambda function's first batch does), then sends a letter
    done = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE, *argv], capture_output=True, text=True, check=True
    )
    # THEN boto3 was imported by the letter, not by making the sink; and the letter is in SQS
    assert orjson.loads(done.stdout) == {"at_build": False, "at_send": True}
    store = SqsDeadLetters(client, url)
    assert [x.event_id for x in read_dead_letters(store)] == ["evt-0007-insert"]


def test_a_client_that_cannot_be_made_is_an_error_naming_the_queue() -> None:
    # GIVEN an SQS sink whose endpoint is not a URL (its boto3 client cannot be made)
    config = DeadLettersConfig(kind="sqs", sqs_queue_url="https://sqs.example/q")
    store = dead_letters_from_config(config, region=REGION, endpoint_url="not a url")
    # WHEN it sends a letter  THEN the error names the queue and is retried, not a traceback
    with pytest.raises(RetryableError, match=r"SQS queue https://sqs.example/q cannot be reached"):
        store.send([letter(1)])
