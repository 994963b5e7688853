"""`ddb2bq package`, `template` and `deploy` meeting what users really do: a key file where the
workload identity configuration goes, tables whose names differ only in punctuation, a minimal
configuration, no AWS credentials, a bucket or zip that is not there, an endpoint that does not
answer, an output path that cannot be written. Each ends in one sentence naming the thing and an
exit code (0 done, 1 an operation failed, 2 bad input or configuration), never a traceback.

Deploys run over the command line (``ddb2bq.cli.main.main``) against moto's CloudFormation, S3,
DynamoDB and Lambda, reached through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ddb2bq.cli import deploy as commands
from ddb2bq.cli.main import main
from ddb2bq.config import load_config
from ddb2bq.deploy import stack, template
from ddb2bq.exceptions import ConfigError
from ddb2bq.local import REGION, Server
from tests.integration.dynamodb_support import create_source_table

ACCOUNT = "123456789012"


def stream_of(table: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/2026-11-30T00:00:00.000"


def write_config(
    tmp_path: Path, table: str, *sections: str, bucket: str = "acme-artifacts", lambda_: str = ""
) -> str:
    """A new ddb2bq.toml for ``table`` with ``sections``, no [dead_letters] (the stack's queue),
    and ``[lambda] code_bucket = bucket`` followed by the ``lambda_`` lines."""
    path = tmp_path / f"{table}-{len(list(tmp_path.glob('*.toml')))}.toml"
    path.write_text(
        f'[source]\ntable = "{table}"\nregion = "{REGION}"\n'
        '[target]\nproject = "analytics-prod"\ndataset = "dynamodb"\n'
        + "".join(sections)
        + f'[lambda]\ncode_bucket = "{bucket}"\n{lambda_}',
        encoding="utf-8",
    )
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def service_account_key() -> tuple[dict[str, str], str]:
    """A service-account key file's JSON as Google issues it, with a freshly made RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "analytics-prod",
        "private_key_id": "3f9c0e1d2b4a6c8e0f1a2b3c4d5e6f708192a3b4",
        "private_key": pem,
        "client_email": "ddb2bq-writer@analytics-prod.iam.gserviceaccount.com",
        "client_id": "104589735625148123456",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    body = pem.split("-----")[2].strip().splitlines()[3]  # a line from inside the key
    return info, body


# --- class 2: a private key is never copied into the stack ---------------------------------------


@pytest.mark.parametrize("where", ["file", "inline"])
def test_a_service_account_key_as_workload_identity_config_is_refused_and_never_printed(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a service-account key (not an external_account configuration) as
    # [google] workload_identity_config, as a file path or as the JSON text itself
    info, key_line = service_account_key()
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info), encoding="utf-8")
    value = str(key_file) if where == "file" else json.dumps(info).replace("\\n", "\\\\n")
    google = f"[google]\nworkload_identity_config = '{value}'\n"
    config = write_config(tmp_path, "orders", google)
    out = tmp_path / "stack.json"
    # WHEN `ddb2bq template --out` runs
    code, stdout, stderr = run(
        capsys,
        "template",
        "--config",
        config,
        "--stream-arn",
        stream_of("orders"),
        "--out",
        str(out),
    )
    # THEN it is refused as configuration, naming the setting and the safe ways
    assert code == 2
    assert "Traceback" not in stderr
    assert "[google] workload_identity_config" in stderr
    assert "Secrets Manager" in stderr
    assert "workload identity" in stderr
    # AND the key appears nowhere: not on stdout, not on stderr, not in --out
    written = out.read_text() if out.exists() else ""
    for text in (stdout, stderr, written):
        assert key_line not in text
        assert "BEGIN PRIVATE KEY" not in text
        assert info["private_key_id"] not in text


def test_a_private_key_pasted_in_any_inlined_setting_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the key pasted as [google] secret_id (which names a secret, and goes into the stack)
    info, key_line = service_account_key()
    pasted = info["private_key"].replace("\n", "\\n")
    config = write_config(tmp_path, "orders", f'[google]\nsecret_id = "{pasted}"\n')
    # WHEN the template is printed
    code, stdout, stderr = run(
        capsys, "template", "--config", config, "--stream-arn", stream_of("orders")
    )
    # THEN exit 2, the setting named, the key nowhere
    assert (code, stdout) == (2, "")
    assert "[google] secret_id holds what looks like a private key" in stderr
    assert key_line not in stderr
    assert "Traceback" not in stderr


# --- class 10: a minimal configuration deploys; the stream lookup says how to avoid it --------


def test_a_minimal_configuration_uses_the_stacks_own_queue_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a configuration with no [dead_letters] section
    config = write_config(tmp_path, "orders")
    # WHEN the template is printed
    code, stdout, stderr = run(
        capsys, "template", "--config", config, "--stream-arn", stream_of("orders")
    )
    # THEN it is made, the function's dead letters go to the stack's queue, and stderr says so
    assert code == 0
    document = json.loads(stdout)
    variables = document["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables["DDB2BQ_DEAD_LETTERS_KIND"] == "sqs"
    assert variables["DDB2BQ_DEAD_LETTERS_SQS_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
    assert "[dead_letters] is not configured" in stderr
    assert "stack's own SQS queue" in document["Description"]


def without_aws_credentials(tmp_path: Path) -> dict[str, str]:
    """This process's environment with no AWS credentials anywhere boto3 looks."""
    (tmp_path / "credentials").write_text("")
    (tmp_path / "config").write_text("")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DDB2BQ_"))}
    return {
        **environment,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata service to wait for here
    }


def ddb2bq(environment: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddb2bq.cli", *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_template_without_credentials_names_the_setting_that_avoids_the_call(
    tmp_path: Path,
) -> None:
    # GIVEN no AWS credentials at all, and no [lambda] stream_arn
    config = write_config(tmp_path, "orders")
    # WHEN `ddb2bq template` must look the stream up with DescribeTable
    done = ddb2bq(without_aws_credentials(tmp_path), "template", "--config", config)
    # THEN one sentence says what was missing and which setting makes the call unneeded
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ddb2bq: error:")]
    assert len(errors) == 1
    assert "No AWS credentials" in errors[0]
    assert "[lambda] stream_arn" in errors[0]
    assert "--stream-arn" in errors[0]
    assert done.stdout == ""


def test_deploy_without_credentials_names_the_stack_and_what_to_set(tmp_path: Path) -> None:
    config = write_config(tmp_path, "orders")
    done = ddb2bq(
        without_aws_credentials(tmp_path),
        "deploy",
        "--config",
        config,
        "--stream-arn",
        stream_of("orders"),
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "No AWS credentials" in done.stderr
    assert "'ddb2bq-orders'" in done.stderr
    assert "AWS_PROFILE" in done.stderr


def test_no_region_is_one_sentence_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN boto3 with no region anywhere ([source] region cannot be empty, but a client
    # factory may leave it out)
    for name, value in without_aws_credentials(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in [n for n in os.environ if n.startswith("AWS_") and "FILE" not in n]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    config = load_config(write_config(tmp_path, "orders"), environ={})

    def no_region(service: str, config: Any) -> Any:
        return boto3.client(service)

    args = argparse.Namespace(stream_arn=None, code_key=None, out=None)
    # WHEN the template needs a client  THEN the missing region is configuration (exit 2)
    with pytest.raises(ConfigError, match=r"No AWS region.*\[source\] region"):
        commands.run_template(args, config, client_factory=no_region)


# --- class 7: buckets, zips, endpoints and output paths ----------------------------------------


@pytest.fixture
def on_moto(aws_env: None, moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every boto3 client of the commands talks to moto (AWS_ENDPOINT_URL); returns a maker of
    clients for the test's own looks."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_server.endpoint, region_name=REGION)

    return client


def a_zip(tmp_path: Path) -> Path:
    path = tmp_path / "ddb2bq-lambda.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ddb2bq/__init__.py", "")
    return path


def test_a_code_bucket_that_does_not_exist_is_named(
    on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN [lambda] code_bucket naming a bucket nobody created
    config = write_config(tmp_path, "orders", bucket="acme-artifacts-never-made")
    # WHEN deploy uploads the zip
    code, _, stderr = run(
        capsys,
        "deploy",
        "--config",
        config,
        "--stream-arn",
        stream_of("orders"),
        "--zip",
        str(a_zip(tmp_path)),
    )
    # THEN exit 2, the bucket and the setting named, what to do said
    assert code == 2
    assert "Traceback" not in stderr
    assert "'acme-artifacts-never-made' ([lambda] code_bucket) does not exist" in stderr
    assert "aws s3 mb s3://acme-artifacts-never-made" in stderr


@pytest.mark.parametrize("command", ["template", "deploy"])
def test_an_empty_code_bucket_is_named(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "orders", bucket="")
    code, stdout, stderr = run(
        capsys, command, "--config", config, "--stream-arn", stream_of("orders")
    )
    assert (code, stdout) == (2, "")
    assert "[lambda] code_bucket is empty" in stderr
    assert "Traceback" not in stderr


def test_a_missing_zip_is_named_with_the_command_that_builds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "orders")
    missing = tmp_path / "dist" / "ddb2bq-lambda.zip"
    code, _, stderr = run(
        capsys,
        "deploy",
        "--config",
        config,
        "--stream-arn",
        stream_of("orders"),
        "--zip",
        str(missing),
    )
    assert code == 2
    assert f"--zip '{missing}' cannot be read (No such file or directory)" in stderr
    assert f"ddb2bq package --out {missing}" in stderr
    assert "Traceback" not in stderr


def test_code_that_is_not_in_the_bucket_is_refused_before_the_stack_is_made(
    on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a code bucket without the zip, and no --zip
    on_moto("s3").create_bucket(Bucket="acme-empty-artifacts")
    config = write_config(tmp_path, "orders", bucket="acme-empty-artifacts")
    # WHEN deploy runs  THEN it says where the code should be, and makes no stack
    code, _, stderr = run(capsys, "deploy", "--config", config, "--stream-arn", stream_of("orders"))
    assert code == 2
    assert "s3://acme-empty-artifacts/ddb2bq/ddb2bq-lambda.zip" in stderr
    assert "--zip" in stderr
    stacks = on_moto("cloudformation").list_stacks()["StackSummaries"]
    assert "ddb2bq-orders" not in {s["StackName"] for s in stacks}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_endpoint_that_does_not_answer_is_named_and_exits_1(
    aws_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN AWS_ENDPOINT_URL pointing at a port nothing listens on
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    config = write_config(tmp_path, "orders")
    # WHEN deploy reads the stack  THEN exit 1 (try again), the endpoint named
    code, _, stderr = run(capsys, "deploy", "--config", config, "--stream-arn", stream_of("orders"))
    assert code == 1
    assert f"{endpoint} cannot be reached while reading CloudFormation stack" in stderr
    assert "Traceback" not in stderr
    # AND the template's stream lookup says which setting avoids the call
    code, _, stderr = run(capsys, "template", "--config", config)
    assert code == 1
    assert f"{endpoint} cannot be reached" in stderr
    assert "[lambda] stream_arn" in stderr


@pytest.mark.parametrize("command", ["template", "package"])
@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_out_path_that_cannot_be_written_is_named(
    command: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN --out naming a folder, or a path whose parent is a file
    (tmp_path / "notes.txt").write_text("not a folder")
    out = tmp_path if where == "a folder" else tmp_path / "notes.txt" / "out"
    config = write_config(tmp_path, "orders")
    extra = ["--stream-arn", stream_of("orders")] if command == "template" else []
    # WHEN the command runs  THEN exit 2 before any work, the path named
    code, stdout, stderr = run(capsys, command, "--config", config, *extra, "--out", str(out))
    assert (code, stdout) == (2, "")
    assert f"--out '{out}' cannot be written" in stderr
    assert "Traceback" not in stderr


# --- class 3: one table's stack is never taken over by another ---------------------------------


def deploy(capsys: pytest.CaptureFixture[str], config: str, zip_path: Path) -> tuple[int, str]:
    code, stdout, stderr = run(capsys, "deploy", "--config", config, "--zip", str(zip_path))
    assert "Traceback" not in stderr
    return code, stdout + stderr


def function_table(on_moto: Any, name: str) -> str:
    function = on_moto("lambda").get_function(FunctionName=name)["Configuration"]
    return str(function["Environment"]["Variables"]["DDB2BQ_SOURCE_TABLE"])


def test_tables_whose_names_differ_in_punctuation_get_stacks_of_their_own(
    on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN tables orders-v2 and orders_v2 (both once named ddb2bq-orders-v2), and a code bucket
    for table in ("orders-v2", "orders_v2"):
        create_source_table(on_moto("dynamodb"), table)
    on_moto("s3").create_bucket(Bucket="acme-artifacts")
    zip_path = a_zip(tmp_path)
    cloudformation = on_moto("cloudformation")
    # WHEN orders-v2 is deployed
    code, printed = deploy(capsys, write_config(tmp_path, "orders-v2"), zip_path)
    assert code == 0, printed
    first = cloudformation.describe_stacks(StackName="ddb2bq-orders-v2")["Stacks"][0]
    assert {"Key": "ddb2bq:table", "Value": "orders-v2"} in first["Tags"]
    # AND then orders_v2
    code, printed = deploy(capsys, write_config(tmp_path, "orders_v2"), zip_path)
    # THEN orders_v2 has its own stack and function, and the first stack is untouched
    assert code == 0, printed
    assert "Stack ddb2bq-orders-v2-2377d124: create" in printed
    assert function_table(on_moto, "ddb2bq-orders-v2-2377d124") == "orders_v2"
    assert function_table(on_moto, "ddb2bq-orders-v2") == "orders-v2"
    again = cloudformation.describe_stacks(StackName="ddb2bq-orders-v2")["Stacks"][0]
    assert again == first

    # WHEN orders_v2 is pointed at the first table's stack by name
    taking_over = write_config(tmp_path, "orders_v2", lambda_='stack_name = "ddb2bq-orders-v2"\n')
    code, printed = deploy(capsys, taking_over, zip_path)
    # THEN it is refused: both tables and the setting named; the first stack is still untouched
    assert code == 2
    assert "Stack 'ddb2bq-orders-v2' replicates table 'orders-v2'" in printed
    assert "not [source] table 'orders_v2'" in printed
    assert "[lambda] stack_name" in printed
    assert cloudformation.describe_stacks(StackName="ddb2bq-orders-v2")["Stacks"][0] == first
    assert function_table(on_moto, "ddb2bq-orders-v2") == "orders-v2"


def test_a_stack_an_earlier_version_named_is_not_doubled_by_the_new_name(
    on_moto: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN events_v1's stack as earlier ddb2bq versions made it: named ddb2bq-events-v1, no tag
    create_source_table(on_moto("dynamodb"), "events_v1")
    on_moto("s3").create_bucket(Bucket="acme-events-artifacts")
    on_moto("s3").put_object(
        Bucket="acme-events-artifacts",
        Key="ddb2bq/ddb2bq-lambda.zip",
        Body=a_zip(tmp_path).read_bytes(),
    )
    names = 'stack_name = "ddb2bq-events-v1"\nfunction_name = "ddb2bq-events-v1"\n'
    legacy = write_config(tmp_path, "events_v1", bucket="acme-events-artifacts", lambda_=names)
    arn = stack.stream_arn_of(on_moto("dynamodb"), "events_v1")
    body = template.render(template.build_template(load_config(legacy, environ={}), stream_arn=arn))
    stack.deploy_stack(on_moto("cloudformation"), "ddb2bq-events-v1", body, report=lambda _: None)
    # WHEN the same table is deployed with the names now derived (ddb2bq-events-v1-<hash>)
    config = write_config(tmp_path, "events_v1", bucket="acme-events-artifacts")
    code, _, stderr = run(capsys, "deploy", "--config", config)
    # THEN it is refused, naming the old stack and the settings that keep deploying to it
    assert code == 2
    assert "Stack 'ddb2bq-events-v1', named by an earlier ddb2bq" in stderr
    assert "set [lambda] stack_name and function_name to 'ddb2bq-events-v1'" in stderr
    names = {s["StackName"] for s in on_moto("cloudformation").list_stacks()["StackSummaries"]}
    assert not any(name.startswith("ddb2bq-events-v1-") for name in names)


def test_a_missing_constraints_file_is_named_before_pip_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "constraints.txt"
    code, stdout, stderr = run(
        capsys, "package", "--constraints", str(missing), "--out", str(tmp_path / "f.zip")
    )
    assert (code, stdout) == (2, "")
    assert f"--constraints '{missing}' is not a file" in stderr
    assert "Traceback" not in stderr
