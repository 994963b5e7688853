"""The command line where a user meets the clouds going wrong: no AWS credentials, no region, a
table that does not exist, endpoints that do not answer, Ctrl-C. Every command answers with one
sentence naming the table, endpoint or setting, a documented exit code, and no traceback; retries
end within ``--retry-deadline`` and say so.

Each case runs ``python -m ddb2bq.cli`` in a fresh process, against moto and the local-bigquery
emulator, or against a closed local port (a socket bound, then closed: nothing listens there).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from ddb2bq.cli.main import main
from tests.integration.config_support import write_config
from tests.integration.dynamodb_support import create_source_table

ROOT = Path(__file__).resolve().parents[2]
DYNAMODB_COMMANDS = ("init", "run", "status", "backfill", "verify", "start", "enable-stream")
"""The commands that read the DynamoDB table first."""


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    seconds: float


def ddb2bq(*args: str, env: Mapping[str, str], timeout: float = 120.0) -> Ran:
    """``python -m ddb2bq.cli ARGS`` in a fresh process with exactly ``env``."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ddb2bq.cli", *args],
        env=dict(env), capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT,
    )  # fmt: skip
    return Ran(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def closed_port() -> int:
    """A local port nothing listens on: bound by this process, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def environment(local_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The servers' DDB2BQ_* and dummy AWS variables, and nothing of ~/.aws or the metadata
    service: AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE are empty files."""
    empty = tmp_path / "empty"
    empty.write_text("")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DDB2BQ_"))}
    return {
        **inherited,
        **local_env,
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_CONFIG_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def without_aws_credentials(env: Mapping[str, str]) -> dict[str, str]:
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    return {k: v for k, v in env.items() if k not in names}


@pytest.fixture
def table(dynamodb: Any) -> str:
    name = f"hostile_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, name, [("pk", "S")])
    return name


def assert_one_sentence(ran: Ran, code: int, *names: str) -> None:
    """Exit ``code``, no traceback, and an error line naming each of ``names``."""
    assert ran.code == code, ran.err
    assert "Traceback" not in ran.err
    errors = [line for line in ran.err.splitlines() if line.startswith("ddb2bq: ")]
    assert errors, ran.err
    for name in names:
        assert name in errors[-1], errors[-1]


# --- AWS: credentials, region, table, endpoint -------------------------------------------------


@pytest.mark.parametrize("command", DYNAMODB_COMMANDS)
def test_no_aws_credentials_is_named_with_the_table_and_exits_2(
    command: str, tmp_path: Path, environment: dict[str, str]
) -> None:
    # GIVEN no AWS credentials anywhere (no variables, empty credentials and config files)
    config = write_config(tmp_path / "ddb2bq.toml", "orders", "dynamodb")
    # WHEN a command that reads the table runs
    ran = ddb2bq(command, "--config", config, env=without_aws_credentials(environment))
    # THEN one sentence says so, names the table and what to set; exit 2
    assert_one_sentence(ran, 2, "No AWS credentials were found", "'orders'", "AWS_PROFILE")


@pytest.mark.parametrize("command", ["init", "run", "backfill"])
def test_no_region_is_named_as_the_setting_and_exits_2(
    command: str, tmp_path: Path, environment: dict[str, str]
) -> None:
    # GIVEN [source] region set to nothing, and no AWS_REGION in the environment
    config = tmp_path / "ddb2bq.toml"
    write_config(config, "orders", "dynamodb")
    config.write_text(config.read_text().replace("[source]\n", '[source]\nregion = ""\n'))
    env = {k: v for k, v in environment.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    # WHEN a command runs  THEN it names the setting; exit 2
    assert_one_sentence(ddb2bq(command, "--config", str(config), env=env), 2, "[source] region")


def test_an_invalid_region_is_named_and_exits_2(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    config = write_config(tmp_path / "ddb2bq.toml", "orders", "dynamodb")
    env = {**environment, "DDB2BQ_SOURCE_REGION": "eu west 1"}
    assert_one_sentence(ddb2bq("init", "--config", config, env=env), 2, "'eu west 1'")


def test_a_secret_that_cannot_be_reached_names_the_secret_and_exits_1(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    # GIVEN the Google key in Secrets Manager, named without its ARN, BigQuery the real one
    # (not the emulator), and no AWS region in the environment: the command line reads the
    # secret in [source] region (its default, us-east-1), which this machine cannot reach
    config = write_config(tmp_path / "ddb2bq.toml", "orders", "dynamodb")
    (tmp_path / "dead-letters").mkdir()
    unset = ("AWS_REGION", "AWS_DEFAULT_REGION", "DDB2BQ_SOURCE_REGION")
    env = {k: v for k, v in environment.items() if k not in unset}
    env = {k: v for k, v in env.items() if not k.startswith("DDB2BQ_TARGET_")}
    env |= {"DDB2BQ_GOOGLE_SECRET_ID": "ddb2bq/google-key", "DDB2BQ_TARGET_PROJECT": "p"}
    # WHEN the dead letters are replayed (the pipeline needs Google credentials first)
    ran = ddb2bq("replay-dead-letters", "--config", config, env=env)
    # THEN one sentence names the secret and says to try again; exit 1 (nothing was lost)
    assert_one_sentence(ran, 1, "'ddb2bq/google-key'", "try again")


@pytest.mark.parametrize("command", DYNAMODB_COMMANDS)
def test_a_table_that_does_not_exist_is_named_and_exits_2(
    command: str, tmp_path: Path, environment: dict[str, str], dataset: bigquery.Dataset
) -> None:
    # GIVEN a configuration naming a table moto does not have
    config = write_config(tmp_path / "ddb2bq.toml", "no_such_table", dataset.dataset_id)
    # WHEN a command runs  THEN it names the table; exit 2
    ran = ddb2bq(command, "--config", config, env=environment)
    assert_one_sentence(ran, 2, "no_such_table")


@pytest.mark.parametrize("command", DYNAMODB_COMMANDS)
def test_dynamodb_unreachable_is_named_within_the_retry_deadline_and_exits_1(
    command: str, tmp_path: Path, environment: dict[str, str]
) -> None:
    # GIVEN [source] endpoint_url on a closed local port
    endpoint = f"http://127.0.0.1:{closed_port()}"
    config = write_config(tmp_path / "ddb2bq.toml", "orders", "dynamodb")
    env = {**environment, "DDB2BQ_SOURCE_ENDPOINT_URL": endpoint}
    # WHEN a command runs with a 6 s retry deadline
    ran = ddb2bq(command, "--config", config, "--retry-deadline", "6", env=env)
    # THEN it names the endpoint, exits 1, and did not take longer than the deadline (and the
    # start of a Python process)
    assert_one_sentence(ran, 1, endpoint)
    assert ran.seconds < 6 + 10, ran.seconds


# --- BigQuery unreachable: bounded retries that say they retry ---------------------------------


@pytest.mark.parametrize("command", ["run", "replay-dead-letters"])
def test_bigquery_unreachable_retries_for_the_retry_deadline_then_names_the_endpoint(
    command: str, tmp_path: Path, environment: dict[str, str], table: str
) -> None:
    # GIVEN a table with a stream, and [target] endpoint on a closed local port
    endpoint = f"127.0.0.1:{closed_port()}"
    config = write_config(tmp_path / "ddb2bq.toml", table, "dynamodb")
    (tmp_path / "dead-letters").mkdir()
    env = {**environment, "DDB2BQ_TARGET_ENDPOINT": f"http://{endpoint}"}
    # WHEN the command runs with a 4 s retry deadline
    ran = ddb2bq(command, "--config", config, "--retry-deadline", "4", env=env)
    # THEN each retry was announced, with its wait, and the bound
    retries = [line for line in ran.err.splitlines() if "retrying in" in line]
    assert retries, ran.err
    assert all(endpoint in line and "for 4 s at most" in line for line in retries)
    # AND it gave up within the deadline (plus the process's start), naming the endpoint; exit 1
    assert_one_sentence(ran, 1, endpoint)
    assert ran.seconds < 4 + 10, ran.seconds


@pytest.mark.parametrize("command", ["merge", "verify"])
def test_bigquery_sql_commands_unreachable_stop_at_the_retry_deadline(
    command: str, tmp_path: Path, environment: dict[str, str], table: str
) -> None:
    # GIVEN a merge mirror whose [target] endpoint is a closed local port
    endpoint = f"127.0.0.1:{closed_port()}"
    config = write_config(tmp_path / "ddb2bq.toml", table, "dynamodb", mirror="merge")
    env = {**environment, "DDB2BQ_TARGET_ENDPOINT": f"http://{endpoint}"}
    # WHEN a command that runs BigQuery jobs (not the light writer) runs with a 4 s deadline
    ran = ddb2bq(command, "--config", config, "--retry-deadline", "4", env=env)
    # THEN its retries were announced with the bound, and it gave up naming the endpoint, exit 1
    assert any("retrying for 4 s at most" in line for line in ran.err.splitlines()), ran.err
    assert_one_sentence(ran, 1, endpoint)
    assert ran.seconds < 4 + 10, ran.seconds  # the client's own default retried for 120 s


def test_bigquery_that_never_answers_is_given_up_at_the_retry_deadline(
    tmp_path: Path, environment: dict[str, str], table: str
) -> None:
    # GIVEN [target] endpoint on a local socket that takes connections and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        config = write_config(tmp_path / "ddb2bq.toml", table, "dynamodb")
        env = {**environment, "DDB2BQ_TARGET_ENDPOINT": f"http://{endpoint}"}
        # WHEN `run` starts with a 3 s retry deadline
        ran = ddb2bq("run", "--config", config, "--retry-deadline", "3", env=env)
    # THEN the request's own timeout (60 s) did not matter: it gave up at the deadline, naming
    # the endpoint and the wait; exit 1
    assert_one_sentence(ran, 1, endpoint, "no answer within 3 s")
    assert ran.seconds < 3 + 10, ran.seconds


# --- Ctrl-C ------------------------------------------------------------------------------------


@pytest.fixture
def running(
    tmp_path: Path, environment: dict[str, str], table: str, dataset: bigquery.Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[subprocess.Popen[str]]:  # fmt: skip
    """`ddb2bq run` replicating ``table``, its tables made, polling the stream."""
    config = write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["init", "--config", config]) == 0
    child = subprocess.Popen(
        [sys.executable, "-m", "ddb2bq.cli", "run", "--config", config],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    yield child
    if child.poll() is None:
        child.kill()
        child.wait(timeout=30)


def test_ctrl_c_stops_run_after_the_batch_in_hand_with_130(
    running: subprocess.Popen[str], tmp_path: Path
) -> None:
    # GIVEN a runner that has started reading (its state file exists)
    deadline = time.monotonic() + 60
    while not (tmp_path / "state.sqlite").exists() and time.monotonic() < deadline:
        assert running.poll() is None, running.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    # WHEN it gets Ctrl-C (SIGINT)
    running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=60)
    # THEN it stopped cleanly, said so, and exited 130, without a traceback
    assert running.returncode == 130, err
    assert "Traceback" not in err
    assert "ddb2bq: stopped by Ctrl-C after the batch in hand; run again to resume." in err
