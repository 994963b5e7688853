"""The Lambda handler's contract, over the real pipeline with a fake writer: partial batch response, dead letters, logs,
metrics, configuration and cold-start imports. (Against BigQuery: tests/integration/aws_lambda.)"""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from ddb2bq import aws_lambda
from ddb2bq.aws_lambda import Handler, StreamEvent
from ddb2bq.config import Config, load_config
from ddb2bq.config import check_function_config as check_config
from ddb2bq.credentials import CredentialsProvider
from ddb2bq.exceptions import ConfigError, RetryableError
from ddb2bq.observability import JsonFormatter
from ddb2bq.pipeline import Pipeline
from ddb2bq.schema import build_layout
from tests.doubles.dead_letters import ListDeadLetters
from tests.doubles.writers import FakeWriter, by_event_id

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOW_US = 1693997160_000000  # four seconds after the sample event's last change
ENVIRON = {
    "DDB2BQ_SOURCE_TABLE": "ExampleTableWithStream",
    "DDB2BQ_TARGET_PROJECT": "analytics-prod",
    "DDB2BQ_TARGET_DATASET": "dynamodb",
    "DDB2BQ_DEAD_LETTERS_KIND": "sqs",
    "DDB2BQ_DEAD_LETTERS_SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dl",
}


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The container configures the ``ddb2bq`` logger (JSON, no propagation): undo it after."""
    logger = logging.getLogger("ddb2bq")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "level", logger.level)
    monkeypatch.setattr(aws_lambda, "_container", None)


def sample_event() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((FIXTURES / "aws_sample_event.json").read_text()))


STATUS_OF_FAKE = {"retryable": "retryable", "dead_lettered": "terminal"}


@dataclass
class Setup:
    handler: Handler
    writer: FakeWriter
    dead_letters: ListDeadLetters
    metrics: io.StringIO
    statuses: dict[str, str]
    made: list[Config] = field(default_factory=list)

    def metric_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.metrics.getvalue().splitlines()]


def make_handler(statuses: dict[str, str] | None = None, *, unreachable: bool = False) -> Setup:
    """A handler over the real pipeline; the fake writer fails the changes ``statuses`` names
    (by event id: ``retryable``, or ``dead_lettered`` for a row BigQuery refuses)."""
    scripted = {k: STATUS_OF_FAKE[v] for k, v in (statuses or {}).items()}
    writer = FakeWriter(by_event_id(scripted), reason=lambda index, rows: "why")
    dead_letters = ListDeadLetters(unreachable=unreachable)
    metrics = io.StringIO()
    made: list[Config] = []

    def pipeline_factory(config: Config, credentials: CredentialsProvider) -> Pipeline:
        made.append(config)
        layout = build_layout([("Id", "N")])
        return Pipeline(config, layout, lambda layout: writer, dead_letters, source="lambda")

    handler = Handler(
        load_config(environ=ENVIRON),
        pipeline_factory=pipeline_factory,
        clock=lambda: NOW_US,
        metrics_stream=metrics,
    )
    return Setup(handler, writer, dead_letters, metrics, scripted, made)


def invoke(setup: Setup, event: dict[str, Any]) -> Any:
    return setup.handler(cast(StreamEvent, event), None)


# --- the partial batch response ----------------------------------------------------------------


def test_every_change_written_reports_nothing() -> None:
    setup = make_handler()
    assert invoke(setup, sample_event()) == {"batchItemFailures": []}
    assert setup.writer.batch_ids() == [["1", "2", "3"]]


def test_the_first_retryable_change_is_reported_by_its_sequence_number() -> None:
    # GIVEN a batch whose 2nd and 3rd changes fail retryably
    setup = make_handler({"2": "retryable", "3": "retryable"})
    # WHEN the handler runs  THEN only the first of them is named: Lambda resumes there
    assert invoke(setup, sample_event()) == {"batchItemFailures": [{"itemIdentifier": "222"}]}


def test_a_terminal_failure_is_not_reported_and_the_batch_goes_on() -> None:
    # GIVEN the sink dead-letters change 2 (BigQuery refused it) and writes the others
    setup = make_handler({"2": "dead_lettered"})
    # THEN nothing is reported: the bad item does not block its shard
    assert invoke(setup, sample_event()) == {"batchItemFailures": []}


def test_a_terminal_failure_before_a_retryable_one_reports_the_retryable_one() -> None:
    setup = make_handler({"1": "dead_lettered", "3": "retryable"})
    assert invoke(setup, sample_event()) == {"batchItemFailures": [{"itemIdentifier": "333"}]}


def test_the_response_is_fresh_on_every_invocation() -> None:
    # GIVEN a warm container whose first invocation reported a failure
    setup = make_handler({"1": "retryable"})
    first = invoke(setup, sample_event())
    setup.statuses.clear()
    # WHEN it is invoked again and every change is written
    second = invoke(setup, sample_event())
    # THEN the second answer carries nothing over, and is a new object
    assert first == {"batchItemFailures": [{"itemIdentifier": "111"}]}
    assert second == {"batchItemFailures": []}
    assert second is not first
    assert second["batchItemFailures"] is not first["batchItemFailures"]


def test_an_unparsable_record_goes_whole_to_the_dead_letters() -> None:
    # GIVEN a batch whose middle record has an unknown eventName
    event = sample_event()
    event["Records"][1]["eventName"] = "RESHARD"
    setup = make_handler()
    # WHEN it is handled
    response = invoke(setup, event)
    # THEN the other two are written, the bad one is dead-lettered as it came, nothing reported
    assert response == {"batchItemFailures": []}
    assert setup.writer.batch_ids() == [["1", "3"]]
    [letter] = setup.dead_letters.letters
    assert letter.record == event["Records"][1]
    assert (letter.event_id, letter.source, letter.table) == (
        "2",
        "lambda",
        "ExampleTableWithStream",
    )
    assert "RESHARD" in letter.error


def test_unreachable_dead_letters_make_the_record_retryable() -> None:
    event = sample_event()
    event["Records"][2]["eventName"] = "RESHARD"
    setup = make_handler(unreachable=True)
    assert invoke(setup, event) == {"batchItemFailures": [{"itemIdentifier": "333"}]}


def test_a_sink_that_cannot_start_now_retries_the_whole_batch() -> None:
    setup = make_handler()

    def unavailable(config: Config, credentials: CredentialsProvider) -> Pipeline:
        raise RetryableError("BigQuery answered 503 reading the changelog's schema.")

    setup.handler.pipeline_factory = unavailable
    assert invoke(setup, sample_event()) == {"batchItemFailures": [{"itemIdentifier": "111"}]}


def test_the_pipeline_is_made_once_per_container() -> None:
    setup = make_handler()
    invoke(setup, sample_event())
    invoke(setup, sample_event())
    [config] = setup.made
    assert config.source.table == "ExampleTableWithStream"


def test_an_empty_batch_answers_empty() -> None:
    setup = make_handler()
    assert invoke(setup, {"Records": []}) == {"batchItemFailures": []}
    assert setup.writer.batch_ids() == []


# --- Kinesis Data Streams for DynamoDB ---------------------------------------------------------


def kinesis_event() -> dict[str, Any]:
    records = []
    for number, record in enumerate(sample_event()["Records"], start=1):
        ddb = dict(record["dynamodb"])
        ddb["ApproximateCreationDateTime"] = int(ddb["ApproximateCreationDateTime"] * 1000)
        payload = {
            "awsRegion": "us-west-2",
            "eventID": f"kinesis-{number}",
            "eventName": record["eventName"],
            "recordFormat": "application/json",
            "tableName": "ExampleTableWithStream",
            "dynamodb": ddb,
            "eventSource": "aws:dynamodb",
        }
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "ABC",
                    "sequenceNumber": f"4959033798270930519870006712716096000000000000000000000{number}",
                    "data": base64.b64encode(json.dumps(payload).encode()).decode(),
                    "approximateArrivalTimestamp": 1693997160.1,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:4959033798270930519870006712716096000000000000000000000{number}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-west-2",
                "eventSourceARN": "arn:aws:kinesis:us-west-2:123456789012:stream/ddb-changes",
            }
        )
    return {"Records": records}


def test_kinesis_records_are_reported_by_their_kinesis_sequence_number() -> None:
    setup = make_handler({"kinesis-2": "retryable"})
    response = invoke(setup, kinesis_event())
    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "49590337982709305198700067127160960000000000000000000002"}
        ]
    }
    assert setup.writer.batch_ids() == [["kinesis-1", "kinesis-2", "kinesis-3"]]


# --- metrics and logs --------------------------------------------------------------------------


def test_each_batch_prints_one_embedded_metric_format_line() -> None:
    # GIVEN a batch where change 1 is written, 2 dead-lettered, 3 retryable
    setup = make_handler({"2": "dead_lettered", "3": "retryable"})
    invoke(setup, sample_event())
    [line] = setup.metric_lines()
    # THEN CloudWatch finds the metrics declared and their values at the top level
    declared = line["_aws"]["CloudWatchMetrics"][0]
    assert declared["Namespace"] == "ddb2bq"
    assert declared["Dimensions"] == [["Table"]]
    names = {m["Name"]: m["Unit"] for m in declared["Metrics"]}
    assert names["Records"] == "Count"
    assert names["Bytes"] == "Bytes"
    assert names["LagMax"] == "Milliseconds"
    assert line["Table"] == "ExampleTableWithStream"
    assert (line["Records"], line["Bytes"]) == (3, 26 + 59 + 38)
    assert (line["ChangelogRowsWritten"], line["DeadLetters"], line["RetryableFailures"]) == (
        1,
        1,
        1,
    )
    assert line["Retries"] == 0
    # lag: now minus ApproximateCreationDateTime (1693997155, ...56, ...57 against ...60)
    assert line["LagMax"] == 5000.0
    assert line["LagAverage"] == 4000.0


def test_logs_are_json_and_never_carry_item_contents(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a batch with one dead letter and one retry, and every log record captured
    setup = make_handler({"2": "dead_lettered", "3": "retryable"})
    caplog.set_level(logging.DEBUG, logger="ddb2bq")
    invoke(setup, sample_event())
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.levelno >= logging.INFO]
    # THEN each is a JSON object; the summary carries counts; no image value appears at INFO+
    assert any(
        line["message"].startswith("Lambda will retry from sequence number 333") for line in lines
    )
    warning = next(line for line in lines if line["message"].startswith("A change went"))
    assert (warning["event_id"], warning["sequence_number"]) == ("2", "222")
    text = json.dumps(lines)
    for secret in ("New item!", "This item has changed", "Message"):
        assert secret not in text


# --- configuration and cold start --------------------------------------------------------------


def test_a_missing_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_lambda, "_container", None)
    stream = io.StringIO()
    logger = logging.getLogger("ddb2bq")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(logger, "handlers", [handler])
    with pytest.raises(ConfigError, match="DDB2BQ_TARGET_DATASET"):
        aws_lambda.container_handler({"DDB2BQ_SOURCE_TABLE": "t", "DDB2BQ_TARGET_PROJECT": "p"})
    [logged] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert logged["level"] == "ERROR"
    assert "DDB2BQ_TARGET_DATASET" in logged["message"]


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_lambda, "_container", None)
    with pytest.raises(ConfigError, match="DDB2BQ_TARGET_MIRROR"):
        aws_lambda.container_handler({**ENVIRON, "DDB2BQ_TARGET_MIRROR": "table"})


def test_the_configuration_is_read_once_per_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_lambda, "_container", None)
    # no warm start: its loader would import the Storage Write client in this test process
    monkeypatch.setattr(aws_lambda, "start_warm_up", lambda config: None)
    first = aws_lambda.container_handler(ENVIRON)
    second = aws_lambda.container_handler({})  # a later read would fail: there is none
    assert second is first
    check_config(first.config)


def test_importing_the_handler_imports_no_google_or_aws_client() -> None:
    # GIVEN a fresh interpreter  WHEN the handler module is imported
    code = (
        "import sys, ddb2bq.aws_lambda; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('google', 'grpc', 'boto3', 'botocore', 'requests', 'urllib3')))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # THEN none of the heavy client libraries is loaded: they wait for the first write
    assert found.stdout.strip() == "[]"


# --- re-deliveries of an ordered batch ---------------------------------------------------------


def redelivered(event: dict[str, Any], identifier: str) -> dict[str, Any]:
    """What Lambda invokes with after ``identifier`` was reported: that record and the rest."""
    records = event["Records"]
    start = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == identifier)
    return {"Records": records[start:]}


def test_a_terminal_change_behind_a_retryable_one_is_dead_lettered_once_over_redeliveries() -> None:
    # GIVEN a batch whose first change cannot be written for now and whose second BigQuery refuses
    setup = make_handler({"1": "retryable", "2": "dead_lettered"})
    event = sample_event()
    # WHEN Lambda delivers it, re-delivers from the reported record three times, and then the
    # first change's cause passes
    for _ in range(3):
        response = invoke(setup, event)
        assert response == {"batchItemFailures": [{"itemIdentifier": "111"}]}
        event = redelivered(event, response["batchItemFailures"][0]["itemIdentifier"])
    setup.statuses.pop("1")
    assert invoke(setup, event) == {"batchItemFailures": []}
    # THEN the refused change went to the dead letters exactly once, and the others landed
    assert setup.dead_letters.event_ids() == ["2"]
    assert setup.writer.written[-2:] == ["1", "3"]


def test_an_unparsable_record_behind_a_retryable_one_waits_for_its_redelivery() -> None:
    # GIVEN a batch whose second change cannot be written for now and whose third cannot be parsed
    event = sample_event()
    event["Records"][2]["eventName"] = "RESHARD"
    setup = make_handler({"2": "retryable"})
    # WHEN it is handled twice, the cause passing in between
    first = invoke(setup, event)
    nothing_yet = list(setup.dead_letters.letters)
    setup.statuses.clear()
    second = invoke(setup, redelivered(event, first["batchItemFailures"][0]["itemIdentifier"]))
    # THEN the bad record is dead-lettered only on the delivery that settles what comes before it
    assert first == {"batchItemFailures": [{"itemIdentifier": "222"}]}
    assert nothing_yet == []
    assert second == {"batchItemFailures": []}
    assert setup.dead_letters.event_ids() == ["3"]
