"""`ddb2bq convert`: what will this record become?"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson

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
    assert json.loads(lines[1]["changelog"]["old_image"]) == {
        "Message": {"S": "New item!"},
        "Id": {"N": "101"},
    }
    assert lines[2]["mirror"] is None
    assert lines[0]["changelog"]["changed_at"] == "2023-09-06T10:45:55.000000Z"


def test_a_malformed_record_is_named_and_exits_2() -> None:
    event = json.loads((FIXTURES / "aws_sample_event.json").read_text())
    del event["Records"][1]["dynamodb"]["SequenceNumber"]
    result = convert("lambda", json.dumps(event))
    assert result.returncode == 2
    assert "record 1 (eventID 2)" in result.stderr
    assert "SequenceNumber" in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_a_bad_attribute_is_named() -> None:
    event = json.loads((FIXTURES / "aws_sample_event.json").read_text())
    event["Records"][0]["dynamodb"]["NewImage"]["price"] = {"N": "12,50"}
    result = convert("lambda", json.dumps(event))
    assert result.returncode == 2
    assert "attribute 'price'" in result.stderr
    assert "event 1" in result.stderr


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
