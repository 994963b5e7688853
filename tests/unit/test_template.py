"""The CloudFormation template: valid (cfn-lint), least privilege, settings carried through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from ddb2bq.config import Config, load_config
from ddb2bq.deploy.template import build_template, function_environment, notes, render
from ddb2bq.exceptions import ConfigError

STREAM = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"
EXTERNAL_QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dead-letters"
WIF = json.dumps(
    {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws",
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"environment_id": "aws1", "regional_cred_verification_url": "x"},
    }
)

MINIMAL = """
[source]
table = "orders"
[target]
project = "analytics-prod"
dataset = "dynamodb"
[dead_letters]
kind = "sqs"
[lambda]
code_bucket = "acme-artifacts"
"""

SECRET_AND_S3 = """
[source]
table = "orders"
region = "eu-west-1"
keys = ["pk", "sk"]
[target]
project = "analytics-prod"
dataset = "dynamodb"
table = "orders_mirror"
mirror = "merge"
deletes = "soft"
[columns]
promote = ["status", "total", "a,b"]
types = { total = "NUMERIC" }
[dead_letters]
kind = "s3"
s3_bucket = "acme-ddb2bq"
s3_prefix = "orders/dead/"
[google]
credentials = "secret"
secret_id = "ddb2bq/google-writer-key"
[lambda]
code_bucket = "acme-artifacts"
alarm_topic = "arn:aws:sns:eu-west-1:123456789012:oncall"
architecture = "x86_64"
python = "3.11"
"""

TUNED_WIF_EXTERNAL_QUEUE = f"""
[source]
table = "orders"
generation = 3
[target]
project = "analytics-prod"
dataset = "dynamodb"
writer = "insert_all"
[dead_letters]
kind = "sqs"
sqs_queue_url = "{EXTERNAL_QUEUE}"
[google]
workload_identity_config = '{WIF}'
[lambda]
function_name = "orders-to-bigquery"
code_bucket = "acme-artifacts"
memory = 3008
timeout = 300
batch_size = 1000
batching_window = 1
parallelization_factor = 10
maximum_retry_attempts = 10000
maximum_record_age = 86400
python = "3.13"
iterator_age_warning = 1800
iterator_age_critical = 21600
log_retention_days = 90
"""

CONFIGS = {"minimal": MINIMAL, "secret-s3": SECRET_AND_S3, "tuned-wif": TUNED_WIF_EXTERNAL_QUEUE}


def config_from(text: str, tmp_path: Path) -> Config:
    path = tmp_path / "ddb2bq.toml"
    path.write_text(text)
    return load_config(path, environ={})


def template_for(text: str, tmp_path: Path) -> dict[str, Any]:
    return build_template(config_from(text, tmp_path), stream_arn=STREAM)


def with_setting(text: str, section: str, line: str) -> str:
    """``text`` with ``line`` in ``section`` (added at the end when it has no such section)."""
    if f"{section}\n" in text:
        return text.replace(f"{section}\n", f"{section}\n{line}\n", 1)
    return f"{text}{section}\n{line}\n"


def statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    policy = document["Resources"]["Role"]["Properties"]["Policies"][0]["PolicyDocument"]
    return {s["Sid"]: s for s in policy["Statement"]}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cfn_lint_passes_on_the_generated_template(name: str, tmp_path: Path) -> None:
    # GIVEN a configuration  WHEN its template is rendered  THEN cfn-lint finds nothing
    text = render(template_for(CONFIGS[name], tmp_path))
    matches = lint(text, config=ManualArgs(regions=["eu-west-1"]))
    assert [str(m) for m in matches] == []


def test_event_source_mapping_carries_the_lambda_settings(tmp_path: Path) -> None:
    document = template_for(TUNED_WIF_EXTERNAL_QUEUE, tmp_path)
    mapping = document["Resources"]["StreamMapping"]["Properties"]
    assert mapping == {
        "EventSourceArn": STREAM,
        "FunctionName": {"Ref": "Function"},
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 1000,
        "MaximumBatchingWindowInSeconds": 1,
        "ParallelizationFactor": 10,
        "BisectBatchOnFunctionError": True,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumRetryAttempts": 10000,
        "MaximumRecordAgeInSeconds": 86400,
        "DestinationConfig": {
            "OnFailure": {"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
        },
    }
    function = document["Resources"]["Function"]["Properties"]
    assert function["FunctionName"] == "orders-to-bigquery"
    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    assert (function["MemorySize"], function["Timeout"]) == (3008, 300)
    assert function["Handler"] == "ddb2bq.aws_lambda.handler"
    assert function["Code"] == {"S3Bucket": "acme-artifacts", "S3Key": "ddb2bq/ddb2bq-lambda.zip"}


def test_the_role_reads_only_its_stream_and_writes_only_its_own_things(tmp_path: Path) -> None:
    # GIVEN S3 dead letters and a key in Secrets Manager
    document = template_for(SECRET_AND_S3, tmp_path)
    granted = statements(document)
    # THEN every grant names its resource (no "*" alone anywhere) and covers only its own things
    assert granted["ReadTheStream"]["Resource"] == STREAM
    assert set(granted["ReadTheStream"]["Action"]) == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    assert granted["ListTheTablesStreams"]["Resource"] == STREAM.rsplit("/", 1)[0] + "/*"
    assert granted["WriteItsLogs"]["Resource"]["Fn::Sub"].endswith(
        ":log-group:/aws/lambda/ddb2bq-orders:*"
    )
    assert granted["SendToItsQueue"]["Resource"] == [{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}]
    assert granted["PutItsDeadLetters"]["Resource"]["Fn::Sub"].endswith(
        ":s3:::acme-ddb2bq/orders/dead/*"
    )
    assert granted["PutItsDeadLetters"]["Action"] == ["s3:PutObject"]
    assert granted["ReadItsGoogleKey"]["Resource"]["Fn::Sub"].endswith(
        ":secret:ddb2bq/google-writer-key-??????"
    )
    assert '"*"' not in json.dumps(document["Resources"]["Role"])


def test_no_secret_grant_without_the_secret_path_and_an_external_queue_is_granted(
    tmp_path: Path,
) -> None:
    granted = statements(template_for(TUNED_WIF_EXTERNAL_QUEUE, tmp_path))
    assert "ReadItsGoogleKey" not in granted
    assert "PutItsDeadLetters" not in granted
    assert granted["SendToItsQueue"]["Resource"][1] == (
        "arn:aws:sqs:eu-west-1:123456789012:orders-dead-letters"
    )


def test_iterator_age_alarms_fire_at_one_hour_and_well_before_the_trim(tmp_path: Path) -> None:
    document = template_for(SECRET_AND_S3, tmp_path)
    resources = document["Resources"]
    warning = resources["IteratorAgeWarning"]["Properties"]
    critical = resources["IteratorAgeCritical"]["Properties"]
    assert (warning["MetricName"], warning["Statistic"]) == ("IteratorAge", "Maximum")
    assert warning["Threshold"] == 3_600_000  # IteratorAge is in milliseconds
    assert critical["Threshold"] == 43_200_000
    assert critical["Threshold"] < 24 * 3_600_000
    assert resources["Errors"]["Properties"]["MetricName"] == "Errors"
    topic = ["arn:aws:sns:eu-west-1:123456789012:oncall"]
    assert all(
        resources[a]["Properties"]["AlarmActions"] == topic for a in ("Errors", "DeadLetters")
    )


def test_the_function_environment_configures_the_same_sections(tmp_path: Path) -> None:
    # GIVEN a configuration touching every section
    config = config_from(SECRET_AND_S3, tmp_path)
    # WHEN the function's environment is read back the way the function reads it
    variables = function_environment(config)
    assert all(isinstance(v, str) for v in variables.values())
    again = load_config(environ=variables)
    # THEN the function sees the same configuration
    for section in ("source", "target", "columns", "dead_letters", "google"):
        assert getattr(again, section) == getattr(config, section)
    assert variables["DDB2BQ_COLUMNS_PROMOTE"] == '["status", "total", "a,b"]'


def test_the_stacks_own_queue_receives_sqs_dead_letters(tmp_path: Path) -> None:
    variables = function_environment(config_from(MINIMAL, tmp_path))
    assert variables["DDB2BQ_DEAD_LETTERS_SQS_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
    assert "DDB2BQ_TARGET_ENDPOINT" not in variables


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace('kind = "sqs"', 'kind = "local"\npath = "/var/lib/ddb2bq/dead"'),
            "no lasting disk",
        ),
        (lambda t: t.replace('code_bucket = "acme-artifacts"', ""), "code_bucket"),
        (lambda t: t.replace('table = "orders"', 'table = "customers"'), "belongs to table"),
        (lambda t: t + "memory = 64\n", r"\[lambda\] memory is 64"),
        (lambda t: t + "parallelization_factor = 11\n", "parallelization_factor"),
    ],
)
def test_bad_settings_fail_before_cloudformation_does(
    change: Any, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        template_for(change(MINIMAL), tmp_path)


def test_a_non_stream_arn_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a DynamoDB stream ARN"):
        build_template(config_from(MINIMAL, tmp_path), stream_arn="arn:aws:dynamodb:::table/x")


def test_a_workload_identity_file_is_inlined_into_the_environment(tmp_path: Path) -> None:
    # GIVEN the external_account configuration as a file next to ddb2bq.toml
    (tmp_path / "wif.json").write_text(WIF)
    text = MINIMAL + f'[google]\nworkload_identity_config = "{tmp_path / "wif.json"}"\n'
    # WHEN the function's environment is built
    variables = function_environment(config_from(text, tmp_path))
    # THEN it carries the JSON itself (the path would mean nothing inside Lambda)
    assert json.loads(variables["DDB2BQ_GOOGLE_WORKLOAD_IDENTITY_CONFIG"]) == json.loads(WIF)


def test_sqs_dead_letters_with_an_overflow_bucket_may_put_there(tmp_path: Path) -> None:
    # GIVEN SQS dead letters whose letters over 256 KB go to a bucket
    text = MINIMAL.replace('kind = "sqs"', 'kind = "sqs"\ns3_bucket = "acme-big-letters"')
    granted = statements(template_for(text, tmp_path))
    # THEN the role may put objects under the dead-letter prefix of that bucket, nowhere else
    assert granted["PutItsDeadLetters"]["Resource"]["Fn::Sub"].endswith(
        ":s3:::acme-big-letters/ddb2bq/dead-letters/*"
    )


def test_without_dead_letters_the_stacks_queue_receives_them_and_the_template_says_so(
    tmp_path: Path,
) -> None:
    # GIVEN a configuration with no [dead_letters] section (kind "local" by default)
    config = config_from(MINIMAL.replace('[dead_letters]\nkind = "sqs"\n', ""), tmp_path)
    assert config.dead_letters.kind == "local"
    # WHEN the template is built
    document = build_template(config, stream_arn=STREAM)
    # THEN the function sends its dead letters to the stack's own queue, and the stack says so
    variables = document["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables["DDB2BQ_DEAD_LETTERS_KIND"] == "sqs"
    assert variables["DDB2BQ_DEAD_LETTERS_SQS_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
    assert "[dead_letters] is not configured" in document["Description"]
    [note] = notes(config)
    assert "stack's own SQS queue" in note
    assert notes(config_from(MINIMAL, tmp_path)) == []


def test_the_stack_and_the_function_name_their_table(tmp_path: Path) -> None:
    # GIVEN a table whose name needed no change  WHEN its template is built
    document = template_for(MINIMAL, tmp_path)
    # THEN the function is tagged with the table, and the stack outputs it
    function = document["Resources"]["Function"]["Properties"]
    assert function["Tags"] == [{"Key": "ddb2bq:table", "Value": "orders"}]
    assert document["Outputs"]["SourceTable"] == {"Value": "orders"}
    # AND the role, queue and alarms carry no name of their own: CloudFormation makes unique ones
    for resource in document["Resources"].values():
        assert not {"RoleName", "QueueName", "AlarmName"} & set(resource["Properties"])


def test_descriptions_stay_within_their_limits_for_the_longest_names(tmp_path: Path) -> None:
    # GIVEN a 255-character table name (DynamoDB's longest) and a long dataset name
    table = "t" * 255
    text = MINIMAL.replace('table = "orders"', f'table = "{table}"').replace(
        'dataset = "dynamodb"', f'dataset = "{"d" * 1024}"'
    )
    stream = STREAM.replace("table/orders/", f"table/{table}/")
    # WHEN the template is built
    document = build_template(config_from(text, tmp_path), stream_arn=stream)
    # THEN every description fits CloudFormation's, Lambda's and CloudWatch's limits
    resources = document["Resources"]
    assert len(document["Description"]) <= 1024
    assert len(resources["Function"]["Properties"]["Description"]) <= 256
    assert len(resources["Function"]["Properties"]["FunctionName"]) <= 64
    assert len(resources["Role"]["Properties"]["Description"]) <= 1000
    assert all(
        len(r["Properties"]["AlarmDescription"]) <= 1024
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    )


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("function_name", "orders_to_bq", "[lambda] function_name 'orders_to_bq'"),
        ("stack_name", "1-orders", "[lambda] stack_name '1-orders'"),
        ("function_name", "f" * 65, "[lambda] function_name"),
    ],
)
def test_an_explicit_name_is_never_changed_behind_the_users_back(
    setting: str, value: str, named: str, tmp_path: Path
) -> None:
    # GIVEN an explicit name the services would refuse
    text = MINIMAL + f'{setting} = "{value}"\n'
    # WHEN the template is built  THEN the setting is named, with a valid name to use instead
    with pytest.raises(ConfigError, match="is not a valid name") as refused:
        template_for(text, tmp_path)
    assert named in str(refused.value)


PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n"
)


@pytest.mark.parametrize(
    ("section", "line", "setting"),
    [
        ("[target]", 'table = "orders -----BEGIN PRIVATE KEY----- x"', "[target] table"),
        ("[google]", 'secret_id = "AKIAIOSFODNN7EXAMPLE"', "[google] secret_id"),
        (
            "[lambda]",
            'alarm_topic = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
            "[lambda] alarm_topic",
        ),
        (
            "[dead_letters]",
            'sqs_queue_url = "https://u:hunter2@sqs.eu-west-1.amazonaws.com/123456789012/q"',
            "[dead_letters] sqs_queue_url",
        ),
        (
            "[google]",
            f'workload_identity_config = \'{{"private_key": "{PRIVATE_KEY}"}}\'',
            "[google] workload_identity_config",
        ),
    ],
)
def test_a_setting_that_holds_a_secret_is_refused_without_quoting_it(
    section: str, line: str, setting: str, tmp_path: Path
) -> None:
    # GIVEN a secret pasted into a setting the template copies into the stack
    text = with_setting(MINIMAL, section, line)
    # WHEN the template is built  THEN the setting is named and the secret is not quoted
    with pytest.raises(ConfigError, match="Secrets Manager") as refused:
        template_for(text, tmp_path)
    message = str(refused.value)
    assert message.startswith(setting)
    for secret in ("PRIVATE KEY", "AKIAIOSFODNN7EXAMPLE", "bPxRfiCYEXAMPLEKEY", "hunter2"):
        assert secret not in message


def test_ordinary_names_and_paths_are_not_taken_for_secrets(tmp_path: Path) -> None:
    # GIVEN long names of the shape a user writes: tables, datasets, topics, paths
    text = MINIMAL.replace('table = "orders"', 'table = "CustomerOrdersHistoryTable2024Prod"')
    text = text.replace('dataset = "dynamodb"', 'dataset = "ReplicatedFromDynamoDB2024Prod"')
    text += 'alarm_topic = "arn:aws:sns:eu-west-1:123456789012:OnCallPagerDutyTopic2024"\n'
    stream = STREAM.replace("table/orders/", "table/CustomerOrdersHistoryTable2024Prod/")
    # WHEN the template is built  THEN nothing is refused
    build_template(config_from(text, tmp_path), stream_arn=stream)


def test_a_workload_identity_setting_that_is_not_external_account_is_refused(
    tmp_path: Path,
) -> None:
    # GIVEN gcloud's user credentials file where the external_account configuration should be
    adc = tmp_path / "application_default_credentials.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "1.apps", "quota": "x"}))
    text = MINIMAL + f'[google]\nworkload_identity_config = "{adc}"\n'
    # WHEN the template is built  THEN it is refused as init refuses it
    with pytest.raises(ConfigError, match='not an "external_account"'):
        template_for(text, tmp_path)
