"""enable-stream and deploy against moto in server mode (DynamoDB, S3, CloudFormation, Lambda).

moto 5.2.5 creates CloudFormation change sets, describes them (Add/Modify per resource), executes
them, and creates every resource of the template (role, queue, log group, function, event source
mapping, alarms), so the deploy runs here as it would on AWS. No item is written to a table that
has the deployed mapping (moto would try to run the function in Docker).
"""

from __future__ import annotations

import argparse
import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddb2bq.cli import deploy as commands
from ddb2bq.config import Config, load_config
from ddb2bq.deploy import stack
from ddb2bq.exceptions import ConfigError
from ddb2bq.local import REGION, Server


@pytest.fixture
def aws(aws_env: None, moto_server: Server) -> Any:
    def client(service: str, config: Config | None = None) -> Any:
        return boto3.client(service, endpoint_url=moto_server.endpoint, region_name=REGION)

    return client


@pytest.fixture
def table(aws: Any) -> str:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    aws("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def config_for(table: str, tmp_path: Path, **lambda_settings: Any) -> Config:
    extra = "".join(f"{k} = {v!r}\n" for k, v in lambda_settings.items()).replace("'", '"')
    path = tmp_path / "ddb2bq.toml"
    path.write_text(
        f'[source]\ntable = "{table}"\nregion = "{REGION}"\n'
        '[target]\nproject = "analytics-prod"\ndataset = "dynamodb"\n'
        '[dead_letters]\nkind = "sqs"\n'
        f'[lambda]\ncode_bucket = "{table}-code"\n{extra}'
    )
    return load_config(path, environ={})


def args(**values: Any) -> argparse.Namespace:
    defaults = {"stream_arn": None, "code_key": None, "zip": None, "no_execute": False, "out": None}
    return argparse.Namespace(**{**defaults, **values})


def test_enable_stream_turns_on_new_and_old_images_once(aws: Any, table: str) -> None:
    # GIVEN a table without a stream
    dynamodb = aws("dynamodb")
    # WHEN enable-stream runs twice
    first = stack.enable_stream(dynamodb, table)
    second = stack.enable_stream(dynamodb, table)
    # THEN the first call turns the stream on, the second finds it and changes nothing
    spec = dynamodb.describe_table(TableName=table)["Table"]["StreamSpecification"]
    assert spec == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert (first.changed, second.changed) == (True, False)
    assert first.stream_arn == second.stream_arn
    assert first.stream_arn.startswith(
        f"arn:aws:dynamodb:{REGION}:123456789012:table/{table}/stream/"
    )


def test_enable_stream_refuses_to_replace_a_stream_of_another_view(aws: Any, table: str) -> None:
    dynamodb = aws("dynamodb")
    dynamodb.update_table(
        TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    )
    with pytest.raises(ConfigError, match="KEYS_ONLY"):
        stack.enable_stream(dynamodb, table)


def test_the_enable_stream_command_prints_the_arn(aws: Any, table: str, tmp_path: Path) -> None:
    out = io.StringIO()
    assert commands.run_enable_stream(args(), config_for(table, tmp_path), out, aws) == 0
    assert f"{table}: stream enabled: arn:aws:dynamodb:" in out.getvalue()


def test_deploy_creates_then_finds_nothing_then_updates_through_change_sets(
    aws: Any, table: str, tmp_path: Path
) -> None:
    # GIVEN a table with its stream, a code bucket and a zip
    stack.enable_stream(aws("dynamodb"), table)
    aws("s3").create_bucket(Bucket=f"{table}-code")
    zip_path = tmp_path / "ddb2bq-lambda.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("ddb2bq/__init__.py", "")
    config = config_for(table, tmp_path)
    # WHEN deploy runs for the first time (the zip uploaded, the stream ARN looked up)
    out = io.StringIO()
    assert commands.run_deploy(args(zip=zip_path), config, out, aws) == 0
    # THEN the change set added every resource, and the function reads the table's stream
    printed = out.getvalue()
    for line in (
        "Stack ddb2bq-" + table + ": create, 9 change(s):",
        "Add      Function               AWS::Lambda::Function",
        "Add      StreamMapping          AWS::Lambda::EventSourceMapping",
        "Add      Role                   AWS::IAM::Role",
        "CREATE_COMPLETE",
    ):
        assert line in printed
    function = aws("lambda").get_function(FunctionName=f"ddb2bq-{table}")["Configuration"]
    assert (function["Handler"], function["Runtime"]) == ("ddb2bq.aws_lambda.handler", "python3.12")
    mappings = aws("lambda").list_event_source_mappings(FunctionName=f"ddb2bq-{table}")
    [mapping] = mappings["EventSourceMappings"]
    assert mapping["EventSourceArn"] == stack.stream_arn_of(aws("dynamodb"), table)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    code_keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket=f"{table}-code")["Contents"]]
    assert len(code_keys) == 1
    assert code_keys[0].startswith("ddb2bq/ddb2bq-lambda-")

    # WHEN deploy runs again with nothing changed  THEN there is nothing to do
    again = io.StringIO()
    commands.run_deploy(args(zip=zip_path), config, again, aws)
    assert f"Stack ddb2bq-{table}: no changes." in again.getvalue()

    # WHEN a setting changes  THEN the change set modifies the function only, without replacing it
    update = io.StringIO()
    commands.run_deploy(args(zip=zip_path), config_for(table, tmp_path, memory=2048), update, aws)
    assert "update, 1 change(s):" in update.getvalue()
    assert "Modify   Function               AWS::Lambda::Function" in update.getvalue()
    assert "replacement: False" in update.getvalue() or "replacement: -" in update.getvalue()
    memory = aws("lambda").get_function(FunctionName=f"ddb2bq-{table}")["Configuration"]
    assert memory["MemorySize"] == 2048


def test_no_execute_prints_the_changes_and_leaves_no_stack(
    aws: Any, table: str, tmp_path: Path
) -> None:
    state = stack.enable_stream(aws("dynamodb"), table)
    out = io.StringIO()
    config = config_for(table, tmp_path)
    commands.run_deploy(args(no_execute=True, stream_arn=state.stream_arn), config, out, aws)
    assert "create, 9 change(s):" in out.getvalue()
    assert (
        aws("lambda").list_event_source_mappings(EventSourceArn=state.stream_arn)[
            "EventSourceMappings"
        ]
        == []
    )


def test_template_without_a_stream_says_to_enable_it(aws: Any, table: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="enable-stream"):
        commands.run_template(args(), config_for(table, tmp_path), io.StringIO(), aws)
