"""``ddb2bq backfill`` against moto (DynamoDB, S3 exports) and local-bigquery: every item lands
exactly, by Scan and by export; a backfill stopped half way resumes without re-reading finished
segments; bad input is one sentence naming the thing. Scale is the bench's: 20,000 items by Scan
and by export, each verified at zero differences, is ``bench/backfill.py --verify``."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.backfill.build import backfill_from_config, refresh_mirror
from ddb2bq.backfill.run import BackfillOptions
from ddb2bq.cli import main
from ddb2bq.config import load_config
from ddb2bq.convert import plain_item
from ddb2bq.records import encode_binary
from ddb2bq.state import SqliteStateStore
from tests.integration.config_support import write_config as write_toml
from tests.integration.dynamodb_support import create_source_table

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["from", "a b", "x'; DROP TABLE y; --", "Ünïcødé", "_CHANGE_TYPE", "__proto__", "UPPER"]


def item(n: int) -> dict[str, Any]:
    """Item ``n``: every attribute type, extreme numbers, hostile attribute names."""
    value: dict[str, Any] = {
        "pk": {"S": f"item#{n:06d}"},
        "sk": {"N": str(n % 7)},
        "s": {"S": f"text {n} ✓"},
        "n_int": {"N": str(n * 1_000_003)},
        "n_big": {"N": "9.9999999999999999999999999999999999999E+125"},
        "n_tiny": {"N": "1E-130"},
        "n_38": {"N": f"{n:038d}"[-38:].lstrip("0") or "0"},
        "n_dec": {"N": f"-{n}.{n % 97:02d}"},
        "b": {"B": n.to_bytes(4, "big") + b"\x00\xff"},
        "bool": {"BOOL": n % 2 == 0},
        "null": {"NULL": True},
        "ss": {"SS": [f"a{n}", "b"]},
        "ns": {"NS": ["1", "2.5", str(n + 3)]},
        "bs": {"BS": [b"\x01", bytes([n % 256, 7])]},
        "m": {"M": {"deep": {"M": {"l": {"L": [{"N": "1"}, {"S": "x"}, {"NULL": True}]}}}}},
        "l": {"L": [{"S": "first"}, {"M": {"k": {"BOOL": False}}}]},
    }
    for index, name in enumerate(HOSTILE):
        value[name] = {"S": f"{name}={n + index}"}
    return value


def fill(dynamodb: Any, table: str, count: int) -> None:
    for start in range(0, count, 25):
        requests = [{"PutRequest": {"Item": item(n)}} for n in range(start, min(count, start + 25))]
        dynamodb.batch_write_item(RequestItems={table: requests})


@pytest.fixture
def table(dynamodb: Any) -> str:
    name = f"bf_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, name, [("pk", "S"), ("sk", "N")], stream=False)
    return name


def write_config(path: Path, table: str, dataset: str, mirror: str = "merge") -> str:
    columns = {"promote": '["s", "n_int", "from"]'}
    return write_toml(path, table, dataset, mirror=mirror, columns=columns)


def mirror_items(client: bigquery.Client, dataset: str, table: str, retry: Retry) -> Any:
    job = client.query(
        f"SELECT pk, sk, item FROM `{dataset}.{table}`", retry=retry, job_retry=retry
    )
    return [dict(r) for r in job.result(retry=retry, timeout=120, page_size=5000)]


def assert_mirror_is_the_table(
    dynamodb: Any, client: bigquery.Client, dataset: str, table: str, retry: Retry
) -> int:
    """An independent comparison: Scan the table, query the mirror, compare every item."""
    expected = {}
    request: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**request)
        for source in page["Items"]:
            expected[(source["pk"]["S"], source["sk"]["N"])] = plain_item(encode_binary(source))
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    rows = mirror_items(client, dataset, table, retry)
    actual = {(r["pk"], str(r["sk"])): _json(r["item"]) for r in rows}
    assert len(rows) == len(actual), "each key once"
    assert actual.keys() == expected.keys()
    different = [k for k in expected if actual[k] != expected[k]]
    assert different == [], different[:3]
    return len(expected)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@pytest.fixture
def initialised(
    tmp_path: Path, table: str, dataset: bigquery.Dataset, local_env: dict[str, str]
) -> str:
    path = write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id)
    assert main(["init", "--config", path]) == 0
    return path


def test_a_scan_backfill_lands_every_item_exactly(
    initialised: str,
    table: str,
    dataset: bigquery.Dataset,
    dynamodb: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # GIVEN a table of 500 items of every type, hostile names and extreme numbers
    fill(dynamodb, table, 500)
    monkeypatch.chdir(tmp_path)
    # WHEN it is backfilled by a parallel Scan of 4 segments
    code = main(["backfill", "--config", initialised, "--segments", "4", "--workers", "2"])
    # THEN it completes, and the mirror holds exactly the table's items
    err = capsys.readouterr().err
    assert code == 0, err
    assert "500 items" in err

    assert (
        assert_mirror_is_the_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry) == 500
    )


def test_an_export_backfill_lands_every_item_exactly(
    initialised: str,
    table: str,
    dataset: bigquery.Dataset,
    dynamodb: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    s3: Any,
) -> None:
    # GIVEN a table of 500 items with point-in-time recovery on, and a bucket
    fill(dynamodb, table, 500)
    enable_pitr(dynamodb, table)
    bucket = f"exports-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.chdir(tmp_path)
    # WHEN it is backfilled from a new export
    code = main(["backfill", "--config", initialised, "--export", f"s3://{bucket}/ddb"])
    # THEN it completes and the mirror holds exactly the table's items
    err = capsys.readouterr().err
    assert code == 0, err
    assert (
        assert_mirror_is_the_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry) == 500
    )
    # AND reading that export again (--from-export) changes nothing
    (folder,) = {o["Key"].split("/")[2] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    again = tmp_path / "again"
    again.mkdir()
    monkeypatch.chdir(again)
    from_export = f"s3://{bucket}/ddb/AWSDynamoDB/{folder}"
    assert main(["backfill", "--config", initialised, "--from-export", from_export]) == 0
    assert (
        assert_mirror_is_the_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry) == 500
    )


def wait_for_export(dynamodb: Any, arn: str) -> None:
    for _ in range(600):
        if (
            dynamodb.describe_export(ExportArn=arn)["ExportDescription"]["ExportStatus"]
            != "IN_PROGRESS"
        ):
            return
        time.sleep(0.1)


def enable_pitr(dynamodb: Any, table: str) -> None:
    dynamodb.update_continuous_backups(
        TableName=table,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )


@pytest.fixture
def s3(aws_env: None, moto_server: Any) -> Any:
    import boto3  # noqa: PLC0415

    from ddb2bq.local import REGION  # noqa: PLC0415

    return boto3.client("s3", endpoint_url=moto_server.endpoint, region_name=REGION)


def test_bad_input_is_one_sentence_naming_the_thing(
    initialised: str,
    table: str,
    dynamodb: Any,
    s3: Any,
    tmp_path: Path,
    dataset: bigquery.Dataset,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    # a missing bucket
    assert main(["backfill", "--config", initialised, "--export", "s3://no-such-bucket-x/p"]) == 2
    assert "'no-such-bucket-x' does not exist" in capsys.readouterr().err
    # point-in-time recovery off
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    assert main(["backfill", "--config", initialised, "--export", f"s3://{bucket}/p"]) == 2
    err = capsys.readouterr().err
    assert "Point-in-time recovery is off" in err
    assert table in err
    # an export of another table
    other = f"other_{uuid.uuid4().hex[:6]}"
    create_source_table(dynamodb, other, [("id", "S")], stream=False)
    dynamodb.put_item(TableName=other, Item={"id": {"S": "x"}})
    enable_pitr(dynamodb, other)
    other_arn = dynamodb.describe_table(TableName=other)["Table"]["TableArn"]
    export = dynamodb.export_table_to_point_in_time(
        TableArn=other_arn, S3Bucket=bucket, S3Prefix="o", ExportFormat="DYNAMODB_JSON"
    )["ExportDescription"]
    wait_for_export(dynamodb, export["ExportArn"])
    (folder,) = {
        o["Key"].split("/")[2] for o in s3.list_objects_v2(Bucket=bucket, Prefix="o/")["Contents"]
    }
    wrong = f"s3://{bucket}/o/AWSDynamoDB/{folder}"
    assert main(["backfill", "--config", initialised, "--from-export", wrong]) == 2
    assert f"is not an export of table '{table}'" in capsys.readouterr().err
    # no changelog yet: the layout (and the table's keys) come from `ddb2bq init`
    fresh = write_config(tmp_path / "fresh.toml", table, f"nothing_{uuid.uuid4().hex[:6]}")
    assert main(["backfill", "--config", fresh]) == 2
    err = capsys.readouterr().err
    assert "ddb2bq init" in err
    assert "Traceback" not in err


class CountingScans:
    """A DynamoDB client that records each Scan's segment and start key."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.scans: list[tuple[int, Any]] = []

    def scan(self, **request: Any) -> Any:
        self.scans.append((request["Segment"], request.get("ExclusiveStartKey")))
        return self._inner.scan(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_stopped_backfill_resumes_without_re_reading_finished_segments(
    initialised: str,
    table: str,
    dataset: bigquery.Dataset,
    dynamodb: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    tmp_path: Path,
) -> None:
    # GIVEN 1,500 items and a backfill of 3 segments, pages of 100, a load job every ~100 kB
    fill(dynamodb, table, 1500)
    config = load_config(initialised)
    options = BackfillOptions(segments=3, workers=1, file_bytes=100_000, page_limit=100)
    first = CountingScans(dynamodb)
    backfill = backfill_from_config(config, options, dynamodb=first, spool_dir=tmp_path / "spool")
    # WHEN it is stopped after some pages (as Ctrl-C does)
    stop_after = [10]

    def count(progress: Any) -> None:
        stop_after[0] -= 1
        if stop_after[0] <= 0:
            backfill.stop.request()

    backfill._progress = count
    report = backfill.scan()
    assert not report.complete
    store = SqliteStateStore(tmp_path / "state.sqlite")
    saved = store.backfill_progress(table, 0)
    # AND run again
    second = CountingScans(dynamodb)
    again = backfill_from_config(config, options, dynamodb=second, spool_dir=tmp_path / "spool")
    assert again.scan().complete
    # THEN no finished segment was scanned again, and the others went on from their saved keys
    done = {s for s, p in saved.items() if p.done}
    assert {segment for segment, _ in second.scans}.isdisjoint(done)
    for segment, progress in saved.items():
        if not progress.done and progress.last_key is not None:
            first_scan = next(key for s, key in second.scans if s == segment)
            assert first_scan is not None, f"segment {segment} started over"
    assert sum(p.items for p in saved.values()) > 0, "the first run saved some progress"
    # AND the mirror, once refreshed, holds every item exactly once
    refresh_mirror(config)
    count = assert_mirror_is_the_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry)
    assert count == 1500


def exported_items(s3: Any, bucket: str) -> dict[tuple[str, str], Any]:
    """The items of every export data file in ``bucket``, as plain JSON (independent of ddb2bq's
    readers: gzip, json, and the conversion's documented plain form)."""
    import gzip  # noqa: PLC0415

    found = {}
    for entry in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        if "/data/" not in entry["Key"]:
            continue
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())
        for line in body.splitlines():
            source = orjson.loads(line)["Item"]
            found[(source["pk"]["S"], source["sk"]["N"])] = plain_item(source)
    return found


def assert_mirror_matches(
    client: bigquery.Client, dataset: str, table: str, expected: Any, retry: Retry
) -> None:
    rows = mirror_items(client, dataset, table, retry)
    actual = {(r["pk"], str(r["sk"])): _json(r["item"]) for r in rows}
    assert len(rows) == len(actual) == len(expected)
    assert [k for k in expected if actual.get(k) != expected[k]] == []


def test_2000_items_by_scan_and_by_export_verify_at_zero_differences(
    tmp_path: Path,
    table: str,
    dynamodb: Any,
    s3: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    local_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN 2,000 items of every type, extreme numbers and hostile names, and an export of them
    # (the test's own, independent record of what the table holds)
    fill(dynamodb, table, 2_000)
    enable_pitr(dynamodb, table)
    bucket = f"big-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
    given = dynamodb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix="given", ExportFormat="DYNAMODB_JSON"
    )["ExportDescription"]
    wait_for_export(dynamodb, given["ExportArn"])
    expected = exported_items(s3, bucket)
    assert len(expected) == 2_000
    for source in ("scan", "export"):
        dataset = f"big_{source}_{uuid.uuid4().hex[:8]}"
        (tmp_path / source).mkdir()
        monkeypatch.chdir(tmp_path / source)
        path = write_config(tmp_path / source / "ddb2bq.toml", table, dataset)
        assert main(["init", "--config", path]) == 0
        # WHEN it is backfilled by Scan, and (into another dataset) by export
        more = ["--export", f"s3://{bucket}/e"] if source == "export" else ["--segments", "2"]
        assert main(["backfill", "--config", path, *more]) == 0, capsys.readouterr().err
        # THEN `ddb2bq verify` reports zero differences
        capsys.readouterr()
        assert main(["verify", "--config", path, "--segments", "1", "--recheck-after", "0"]) == 0
        out = capsys.readouterr().out
        assert "2,000 equal, 0 missing, 0 extra, 0 different." in out.splitlines()[0]
        # AND the test's own comparison, against the exported items, agrees
        assert_mirror_matches(bq_client, dataset, table, expected, bq_retry)
        bq_client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def test_a_backfill_killed_half_way_resumes_and_verifies(
    initialised: str,
    table: str,
    dynamodb: Any,
    local_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN 1,500 items and a backfill process of 3 segments loading every ~100 kB
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    fill(dynamodb, table, 1500)
    command = [sys.executable, "-m", "ddb2bq.cli", "backfill", "--config", initialised,
               "--segments", "3", "--workers", "1", "--file-mb", "0.1"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env={**os.environ, **local_env}, stderr=subprocess.DEVNULL
    )
    # WHEN it is killed (SIGKILL) once some of its progress is saved
    store = SqliteStateStore(tmp_path / "state.sqlite")
    deadline = time.time() + 120
    while not store.backfill_progress(table, 0) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    saved = store.backfill_progress(table, 0)
    assert saved, "the backfill saved progress before it was killed"
    # THEN run again it completes, and verify finds the mirror equal to the table
    monkeypatch_dir = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["backfill", "--config", initialised]) == 0
        capsys.readouterr()
        verify = ["verify", "--config", initialised, "--segments", "1", "--recheck-after", "0"]
        assert main(verify) == 0
    finally:
        os.chdir(monkeypatch_dir)
    assert "1,500 equal, 0 missing, 0 extra, 0 different." in capsys.readouterr().out
