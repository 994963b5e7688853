"""``ddb2bq run`` and ``ddb2bq status`` against moto (DynamoDB, Streams) and local-bigquery: the
mirror equals the table after catching up, after SIGKILLs at random moments, and after a standby
took over a dead runner's lease in a shared DynamoDB checkpoint table."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.cli import main
from ddb2bq.convert import plain_item
from ddb2bq.dynamodb.streams import read_records
from ddb2bq.records import encode_binary
from ddb2bq.state import DynamoDBStateStore, create_table
from tests.integration.config_support import write_config as write_toml
from tests.integration.dynamodb_support import create_source_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def table(dynamodb: Any) -> str:
    name = f"run_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, name, [("pk", "S")])
    return name


def write_items(dynamodb: Any, table: str, count: int, *, start: int = 0, rng: Any = None) -> None:
    """Inserts, updates and deletes: each key's last write decides what the mirror must hold."""
    rng = rng or random.Random(7)
    for n in range(start, start + count):
        key = {"pk": {"S": f"item-{rng.randrange(count)}"}}
        if rng.random() < 0.15:
            dynamodb.delete_item(TableName=table, Key=key)
        else:
            item = {**key, "n": {"N": str(n)}, "big": {"N": f"{n}{'9' * 30}"}, "tag": {"SS": ["a"]}}
            dynamodb.put_item(TableName=table, Item=item)


def write_config(path: Path, table: str, dataset: str, mirror: str = "view", **runner: str) -> str:
    return write_toml(path, table, dataset, mirror=mirror, runner=_quoted(runner))


def _quoted(runner: dict[str, str]) -> dict[str, str]:
    """``checkpoints`` is text; the other runner settings here are numbers."""
    return {k: f'"{v}"' if k == "checkpoints" else v for k, v in runner.items()}


def mirror_rows(client: bigquery.Client, dataset: str, table: str, retry: Retry) -> list[Any]:
    job = client.query(f"SELECT * FROM `{dataset}.{table}`", retry=retry, job_retry=retry)
    return [dict(row) for row in job.result(retry=retry, timeout=60)]


def assert_mirror_equals_table(
    dynamodb: Any, client: bigquery.Client, dataset: str, table: str, retry: Retry
) -> None:
    items = dynamodb.scan(TableName=table)["Items"]
    expected = {i["pk"]["S"]: plain_item(encode_binary(i)) for i in items}
    rows = mirror_rows(client, dataset, table, retry)
    actual = {r["pk"]: _json(r["item"]) for r in rows}
    assert len(rows) == len(actual), "the mirror holds each key once"
    assert actual == expected


def changelog_event_ids(
    client: bigquery.Client, dataset: str, table: str, retry: Retry
) -> set[str]:
    sql = f"SELECT event_id FROM `{dataset}.{table}_changes`"
    job = client.query(sql, retry=retry, job_retry=retry)
    return {row["event_id"] for row in job.result(retry=retry, timeout=60)}


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@pytest.fixture
def initialised(
    tmp_path: Path, table: str, dataset: bigquery.Dataset, local_env: dict[str, str]
) -> str:
    path = write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id, lease_seconds="3")
    assert main(["init", "--config", path]) == 0
    return path


@pytest.mark.parametrize("mirror", ["view", "merge"])
def test_run_until_caught_up_replicates_everything_and_status_shows_the_shard(
    mirror: str,
    tmp_path: Path,
    table: str,
    dataset: bigquery.Dataset,
    dynamodb: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    local_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN 300 inserts, updates and deletes on a table with a stream, and the tables of a mirror
    initialised = write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id, mirror)
    assert main(["init", "--config", initialised]) == 0
    write_items(dynamodb, table, 300)
    # WHEN `ddb2bq run --until-caught-up` runs
    code = main(["run", "--config", initialised, "--until-caught-up"])
    # THEN it exits 0 and the mirror equals the table (merge: the runner ran the MERGE)
    assert code == 0
    assert "caught up" in capsys.readouterr().err
    assert_mirror_equals_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry)
    # AND `ddb2bq status` shows the generation, the shard and its checkpoint; exit 0
    assert main(["status", "--config", initialised]) == 0
    out = capsys.readouterr().out
    assert "generation   0" in out
    assert "shardId-" in out
    assert " open " in out
    assert "none (no runner holds the table)" in out


def test_run_names_a_missing_table_and_a_table_without_a_stream(
    tmp_path: Path,
    dynamodb: Any,
    dataset: bigquery.Dataset,
    local_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = write_config(tmp_path / "missing.toml", "no_such_table", dataset.dataset_id)
    assert main(["run", "--config", missing]) == 2
    err = capsys.readouterr().err
    assert "no_such_table" in err
    assert "Traceback" not in err
    name = f"nostream_{uuid.uuid4().hex[:6]}"
    create_source_table(dynamodb, name, [("pk", "S")], stream=False)
    no_stream = write_config(tmp_path / "nostream.toml", name, dataset.dataset_id)
    assert main(["run", "--config", no_stream]) == 2
    err = capsys.readouterr().err
    assert f"'{name}' has no stream" in err
    assert "enable-stream" in err


def test_run_names_an_unreachable_endpoint_and_missing_credentials(
    tmp_path: Path, dataset: bigquery.Dataset, local_env: dict[str, str], monkeypatch: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = write_config(tmp_path / "c.toml", "orders", dataset.dataset_id)
    monkeypatch.setenv("DDB2BQ_SOURCE_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert main(["run", "--config", path]) == 1
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9 cannot be reached" in err
    assert "Traceback" not in err
    # AND without credentials (a fresh process: boto3 caches what it found), for both commands
    env = {k: v for k, v in {**os.environ, **local_env}.items() if not k.startswith("AWS_")}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(
        tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    for command in ("run", "status"):
        done = subprocess.run(
            [sys.executable, "-m", "ddb2bq.cli", command, "--config", path],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "No AWS credentials were found" in done.stderr
        assert "'orders'" in done.stderr
        assert "Traceback" not in done.stderr


# --- processes: SIGKILL at random moments, and a standby taking over ---------------------------


def runner_process(config: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ddb2bq.cli", "run", "--config", config, *extra],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_a_runner_killed_at_random_moments_loses_nothing(
    initialised: str,
    table: str,
    dataset: bigquery.Dataset,
    dynamodb: Any,
    dynamodbstreams: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    local_env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # GIVEN a writer thread making 2,000 changes while runners are started and SIGKILLed
    rng = random.Random(20261203)
    writer = threading.Thread(target=write_items, args=(dynamodb, table, 2000), daemon=True)
    writer.start()
    kills = 0
    while writer.is_alive() or kills < 4:
        process = runner_process(initialised, local_env)
        processes.append(process)
        time.sleep(rng.uniform(1.5, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        kills += 1
    writer.join()
    # WHEN a last runner catches up
    last = runner_process(initialised, local_env, "--until-caught-up")
    processes.append(last)
    _, err = last.communicate(timeout=300)
    assert last.returncode == 0, err.decode()[-2000:]
    # THEN the mirror equals the table, each key once, and every stream record is logged
    assert_mirror_equals_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    stream_ids = {r["eventID"] for r in read_records(dynamodbstreams, arn)}
    assert stream_ids <= changelog_event_ids(bq_client, dataset.dataset_id, table, bq_retry)
    assert kills >= 4


def test_a_standby_takes_over_within_the_lease_and_resumes_from_the_checkpoints(
    tmp_path: Path,
    table: str,
    dataset: bigquery.Dataset,
    dynamodb: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    local_env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # GIVEN two runners sharing a DynamoDB checkpoint table, leases of 3 seconds
    state_table = f"ddb2bq_state_{uuid.uuid4().hex[:6]}"
    create_table(dynamodb, state_table)
    path = write_config(
        tmp_path / "shared.toml",
        table,
        dataset.dataset_id,
        checkpoints=f"dynamodb://{state_table}",
        lease_seconds="3",
    )
    assert main(["init", "--config", path]) == 0
    write_items(dynamodb, table, 200)
    first = runner_process(path, local_env)
    processes.append(first)
    store = DynamoDBStateStore(dynamodb, state_table)
    holder = wait_for(lambda: store.lease_holder(table))
    second = runner_process(path, local_env)
    processes.append(second)
    # WHEN the first has checkpointed the 200 changes and is killed
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    wait_for(lambda: all(c.sequence_number for c in store.checkpoints(arn).values()) or None)
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed_at = time.time()
    write_items(dynamodb, table, 100, start=200, rng=random.Random(8))
    # THEN the second holds the lease within the lease expiry (plus its polling)
    taken = wait_for(lambda: _other_holder(store, table, holder.owner), timeout=20)
    assert time.time() - killed_at < 3 + 3 + 5
    assert taken.token > holder.token
    # AND it resumes from the checkpoints: the mirror catches up with the later changes
    wait_for(lambda: _mirror_matches(dynamodb, bq_client, dataset.dataset_id, table, bq_retry))
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()[-2000:]
    summary = err.decode().strip().splitlines()[-1]
    written = int(summary.split(":")[1].split()[0].replace(",", ""))
    assert written < 200, f"the standby re-read what the first had done: {summary}"


def _other_holder(store: DynamoDBStateStore, table: str, first: str) -> Any:
    lease = store.lease_holder(table)
    return lease if lease is not None and lease.owner != first else None


def _mirror_matches(
    dynamodb: Any, client: bigquery.Client, dataset: str, table: str, retry: Retry
) -> bool | None:
    try:
        assert_mirror_equals_table(dynamodb, client, dataset, table, retry)
    except AssertionError:
        return None
    return True


def wait_for(probe: Any, timeout: float = 60.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {probe}")


def test_status_output_is_json_free_plain_text(initialised: str, capsys: Any) -> None:
    # GIVEN a replication that never ran WHEN status is asked THEN it says nothing was read yet
    assert main(["status", "--config", initialised]) == 0
    out = capsys.readouterr().out
    assert "unknown (nothing replicated yet)" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
