"""`ddb2bq convert`: what will this record become? And the command line's error boundary: every
failure is one sentence naming what is wrong and a documented exit code, never a traceback."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
)
from google.api_core import exceptions as api
from google.auth.exceptions import DefaultCredentialsError

from ddb2bq.cli import convert as convert_command
from ddb2bq.cli.main import explain, main
from ddb2bq.config import Config, SourceConfig, TargetConfig

FIXTURES = Path(__file__).parent.parent / "fixtures"


def convert(source: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddb2bq.cli", "convert", "--from", source, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_the_aws_sample_event_prints_insert_modify_remove() -> None:
    # GIVEN AWS's documented sample event on stdin
    result = convert("lambda", (FIXTURES / "aws_sample_event.json").read_text())
    # THEN three JSON lines: the changelog row and the mirror row of each change
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["changelog"]["op"] for line in lines] == ["INSERT", "MODIFY", "REMOVE"]
    assert [line["changelog"]["event_id"] for line in lines] == ["1", "2", "3"]
    assert [line["changelog"]["Id"] for line in lines] == ["101", "101", "101"]
    assert json.loads(lines[0]["mirror"]["item"]) == {"Message": "New item!", "Id": 101}
    assert json.loads(lines[1]["mirror"]["item"]) == {"Message": "This item has changed", "Id": 101}
    assert [line["changelog"]["item_types"] for line in lines] == [None, None, None]
    assert "old_item" not in lines[1]["changelog"]  # old images are not stored by default
    assert lines[2]["mirror"] is None
    assert lines[0]["changelog"]["changed_at"] == "2023-09-06T10:45:55.000000Z"


def test_with_old_images_configured_the_changelog_row_holds_the_old_item_too() -> None:
    # GIVEN the sample event and [target] old_images = true in the environment
    event = (FIXTURES / "aws_sample_event.json").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "ddb2bq.cli", "convert", "--from", "lambda"],
        input=event,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "DDB2BQ_TARGET_OLD_IMAGES": "true"},
    )
    # WHEN converted  THEN the MODIFY and the REMOVE carry the image before them, lean
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line)["changelog"] for line in result.stdout.splitlines()]
    assert [line["old_item"] for line in lines] == [
        None,
        '{"Message":"New item!","Id":101}',
        '{"Message":"This item has changed","Id":101}',
    ]
    assert [line["old_item_types"] for line in lines] == [None, None, None]


def test_a_malformed_record_is_named_and_exits_2() -> None:
    event = json.loads((FIXTURES / "aws_sample_event.json").read_text())
    del event["Records"][1]["dynamodb"]["SequenceNumber"]
    result = convert("lambda", json.dumps(event))
    assert result.returncode == 2
    assert "record 1 (eventID 2" in result.stderr
    assert "SequenceNumber" in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_a_bad_attribute_is_named() -> None:
    event = json.loads((FIXTURES / "aws_sample_event.json").read_text())
    event["Records"][0]["dynamodb"]["NewImage"]["price"] = {"N": "12,50"}
    result = convert("lambda", json.dumps(event))
    assert result.returncode == 2
    assert "attribute 'price'" in result.stderr
    assert "eventID 1" in result.stderr


def test_export_and_scan_inputs_need_and_use_the_key_names() -> None:
    line = '{"Item":{"pk":{"S":"a"},"n":{"N":"1E+125"}}}\n'
    assert convert("export", line).returncode == 2
    result = convert("export", line, "--keys", "pk")
    assert result.returncode == 0, result.stderr
    row = orjson.loads(result.stdout)["changelog"]
    assert row["op"] == "SNAPSHOT"
    assert row["seq"] == "0000000000000000/0000000000000000/0000000000000000/0000000000000000"
    scan = convert("scan", '{"Items": [{"pk": {"S": "a"}}], "Count": 1}', "--keys", "pk")
    assert scan.returncode == 0, scan.stderr


def test_getrecords_and_kinesis_inputs() -> None:
    record = {
        "eventID": "e",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": "2026-11-30T00:00:00+00:00",
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}},
            "SequenceNumber": "12",
        },
    }
    assert convert("getrecords", json.dumps({"Records": [record]})).returncode == 0
    assert convert("kinesis", "not json").returncode == 2


def test_promoted_columns_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "ddb2bq.toml"
    config.write_text('[columns]\npromote = ["Message"]\n')
    result = convert(
        "lambda", (FIXTURES / "aws_sample_event.json").read_text(), "--config", str(config)
    )
    first = orjson.loads(result.stdout.splitlines()[0])
    assert first["mirror"]["Message"] == "New item!"


# --- the error boundary: every failure one sentence and a documented exit code -----------------

CONFIG = Config(
    source=SourceConfig(table="orders", region="eu-west-1", endpoint_url="http://127.0.0.1:9"),
    target=TargetConfig(project="analytics-prod", dataset="dynamodb", endpoint="http://[::1]:9"),
)


def _client_error(code: str, message: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DescribeTable")


@pytest.mark.parametrize(
    ("error", "code", "names"),
    [
        (NoCredentialsError(), 2, "No AWS credentials were found while running `ddb2bq init`"),
        (NoRegionError(), 2, "set [source] region"),
        (InvalidRegionError(region_name="eu west"), 2, "'eu west'"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"),
            1,
            "http://127.0.0.1:9 cannot be reached",
        ),
        (
            _client_error("ResourceNotFoundException", "Requested resource not found"),
            2,
            "check [source] table and region",
        ),
        (
            api.RetryError("Timeout of 30.0s exceeded", requests.ConnectionError("refused")),
            1,
            "BigQuery at http://[::1]:9 did not answer (project 'analytics-prod')",
        ),
        (ConnectionRefusedError(111, "Connection refused"), 1, "BigQuery at http://[::1]:9"),
        (DefaultCredentialsError("File x was not found."), 2, "[google] secret_id"),
        (api.Forbidden("Access Denied: Dataset analytics-prod:dynamodb"), 2, "refused access"),
        (api.NotFound("Not found: Dataset analytics-prod:dynamodb"), 2, "Check [target] project"),
        (
            FileNotFoundError(2, "No such file or directory", "/srv/ddb2bq/dead-letters"),
            2,
            "'/srv/ddb2bq/dead-letters' cannot be used: No such file or directory",
        ),
        (sqlite3.OperationalError("unable to open database file"), 2, "[runner] checkpoints"),
        (UnicodeDecodeError("utf-8", b"\xff{", 0, 1, "invalid start byte"), 2, "byte 0xff"),
        (KeyboardInterrupt(), 130, "stopped by Ctrl-C."),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_each_known_failure_is_one_sentence_with_its_exit_code(
    error: BaseException, code: int, names: str
) -> None:
    # GIVEN an exception a command let through  WHEN the boundary explains it
    message, exit_code = explain(error, "init", CONFIG)
    # THEN one line naming the table, endpoint, path or setting, and the documented code
    assert (exit_code, "\n" in message) == (code, False)
    assert names in message


def test_an_unknown_exception_is_a_bug_reported_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a command that fails in a way ddb2bq does not know (a bug)
    def broken(args: Any, config: Any) -> int:
        raise ValueError("an unexpected state in the converter")

    monkeypatch.setattr(convert_command, "run_convert", broken)
    monkeypatch.delenv("DDB2BQ_DEBUG", raising=False)
    # WHEN it runs  THEN exit 1 and one line that asks for a report and says how to see more
    assert main(["convert", "--from", "lambda"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "ddb2bq: internal error: ValueError: an unexpected state in the converter. This is a "
        "bug in ddb2bq: please report it with the command you ran; rerun with DDB2BQ_DEBUG=1 "
        "to see the traceback.\n"
    )
    # AND with DDB2BQ_DEBUG=1 the traceback is shown too (and the variable is not a setting)
    monkeypatch.setenv("DDB2BQ_DEBUG", "1")
    assert main(["convert", "--from", "lambda"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.endswith("rerun with DDB2BQ_DEBUG=1 to see the traceback.\n")


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run_cli(*args: str, stdin: bytes = b"") -> Ran:
    done = subprocess.run(
        [sys.executable, "-m", "ddb2bq.cli", *args],
        input=stdin,
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.write_bytes(b""), "holds no settings"),
        (lambda path: path.write_bytes(b'[source]\ntable = "caf\xe9"\n'), "UTF-8"),
    ],
    ids=["directory", "empty", "latin-1"],
)
def test_a_config_path_that_is_not_a_readable_toml_file_is_named(
    tmp_path: Path, make: Any, names: str
) -> None:
    # GIVEN --config naming a directory, an empty file, or a file in Latin-1
    path = tmp_path / "ddb2bq.toml"
    make(path)
    # WHEN a command reads it
    ran = run_cli("convert", "--from", "lambda", "--config", str(path), stdin=b'{"Records": []}')
    # THEN exit 2, one line naming the file and what is wrong with it, no traceback
    assert ran.code == 2, ran.err
    assert "Traceback" not in ran.err
    assert str(path) in ran.err
    assert names in ran.err
    assert len(ran.err.splitlines()) == 1


def test_input_that_is_not_utf8_is_bad_input() -> None:
    ran = run_cli("convert", "--from", "export", "--keys", "pk", stdin=b'{"Item": "caf\xe9"}\n')
    assert ran.code == 2, ran.err
    assert "Traceback" not in ran.err
    assert "UTF-8" in ran.err


def test_a_retry_deadline_out_of_range_is_a_usage_error() -> None:
    ran = run_cli("status", "--retry-deadline", "0")
    assert ran.code == 2
    assert "--retry-deadline: '0' is not a number above 0" in ran.err


def test_output_closed_early_ends_quietly_with_141() -> None:
    # GIVEN 60,000 changes to print, read by a consumer that stops after the first bytes
    event = json.loads((FIXTURES / "aws_sample_event.json").read_text())
    event["Records"] *= 20_000
    child = subprocess.Popen(
        [sys.executable, "-m", "ddb2bq.cli", "convert", "--from", "lambda"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert child.stdin is not None
    assert child.stdout is not None
    assert child.stderr is not None
    child.stdin.write(json.dumps(event).encode())
    child.stdin.close()
    # WHEN the consumer closes its end (as `| head -1` does)
    assert child.stdout.read(100)
    child.stdout.close()
    # THEN the command ends at once with 141 and prints nothing more: no traceback, no error
    assert child.wait(timeout=60) == 141
    assert child.stderr.read() == b""


@pytest.mark.parametrize(
    ("signum", "code", "says"),
    [
        (signal.SIGINT, 130, "ddb2bq: stopped by Ctrl-C.\n"),
        (signal.SIGTERM, 143, "ddb2bq: stopped by SIGTERM.\n"),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_while_reading_stdin_stops_with_a_message(
    signum: signal.Signals, code: int, says: str
) -> None:
    # GIVEN `convert` waiting for input that never ends (stdin held open)
    child = subprocess.Popen(
        [sys.executable, "-m", "ddb2bq.cli", "convert", "--from", "lambda"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        time.sleep(1.5)  # the interpreter and ddb2bq are imported, the read is blocked
        # WHEN it is interrupted
        child.send_signal(signum)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # THEN it exits with the signal's code and says why, without a traceback
    assert (child.returncode, out, err) == (code, "", says)


def test_convert_refuses_a_column_type_for_an_attribute_init_would_never_make(
    tmp_path: Path,
) -> None:
    # GIVEN [columns] types for 'status', which is neither promoted nor a key
    config = tmp_path / "ddb2bq.toml"
    config.write_text(
        '[source]\ntable = "orders"\n[columns]\npromote = ["total"]\n'
        'types = { status = "STRING" }\n'
    )
    scan = b'{"Items": [{"pk": {"S": "a"}, "status": {"S": "x"}}]}'
    # WHEN convert runs on a Scan page
    ran = run_cli("convert", "--from", "scan", "--keys", "pk", "--config", str(config), stdin=scan)
    # THEN it exits 2 naming the attribute and the fix, and prints no row with that column
    assert ran.code == 2, ran.err
    assert "Traceback" not in ran.err
    assert "'status'" in ran.err
    assert "[columns] promote" in ran.err
    assert ran.out == ""


def test_convert_shows_the_entity_and_typed_parts_each_record_becomes(tmp_path: Path) -> None:
    # GIVEN a single-table configuration with an orders entity, and a Scan page holding an
    # order, a profile (of no entity) and an order whose id is not a canonical INT64
    config = tmp_path / "ddb2bq.toml"
    config.write_text(
        '[source]\ntable = "shop"\nkeys = ["pk", "sk"]\n\n[[entities]]\nname = "orders"\n'
        'match = { pk = "USER#{user_id}", sk = "ORDER#{order_id}" }\n'
        'types = { order_id = "INT64" }\n'
    )
    items = [
        ("USER#42", "ORDER#9223372036854775807"),
        ("USER#42", "PROFILE"),
        ("USER#1", "ORDER#07"),
    ]
    scan = json.dumps({"Items": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in items]})
    # WHEN convert runs on it
    ran = run_cli("convert", "--from", "scan", "--config", str(config), stdin=scan.encode())
    # THEN each line says the entity and its typed parts (exact), in the changelog row too
    assert ran.code == 0, ran.err
    lines = [json.loads(line) for line in ran.out.splitlines()]
    assert [(line["entity"], line["parts"]) for line in lines] == [
        ("orders", {"user_id": "42", "order_id": 9223372036854775807}),
        (None, None),
        (None, None),
    ]
    assert lines[0]["changelog"]["_entity"] == "orders"
