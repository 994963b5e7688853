"""``ddb2bq template``: the CloudFormation stack of the Lambda function, from the configuration.

=====================  ==========================================================================
resource               what and why
=====================  ==========================================================================
``Function``           ``ddb2bq.aws_lambda.handler``; runtime, architecture, memory and timeout
                       from ``[lambda]``; the ``DDB2BQ_*`` environment from the other sections
``StreamMapping``      the event source mapping on the table's stream: TRIM_HORIZON, batch size,
                       batching window, parallelization factor, bisect on error,
                       ReportBatchItemFailures, retry and record-age limits, on-failure -> queue
``Role``               least privilege: read only that stream, write only its own log group,
                       send only to its queue, put only under its dead-letter bucket prefix,
                       read only its secret (when the secret credentials path is configured)
``LogGroup``           ``/aws/lambda/<function>`` with a retention, so logs do not live forever
``DeadLetterQueue``    SQS: where Lambda sends the description of batches it gave up on (and the
                       function's own dead letters when ``[dead_letters] kind = "sqs"`` names no
                       other queue)
``IteratorAge*``       alarms: warning at one hour, critical well before the 24-hour trim
``Errors``,            alarms on function errors and on anything arriving in the queue
``DeadLetters``
=====================  ==========================================================================

The template is plain CloudFormation JSON (no transform), so ``aws cloudformation deploy``,
``ddb2bq deploy`` and ``cfn-lint`` all take it as it is.

Names (:func:`derived_name`): the function and the stack are ``ddb2bq-<table>`` when that is a
valid name as it is; otherwise the table's name made valid and cut to fit, with a hash of the
exact table name, so ``orders-v2``, ``orders_v2`` and ``orders.v2`` never share a stack. The
role, the queue and the alarms are named by CloudFormation (``<stack>-<resource>-<random>``,
cut to each service's limit), the log group after the function. The stack and the function
carry the table's name in the tag :data:`TABLE_TAG`.

Nothing secret is copied in: every setting the template carries is checked for private keys,
service-account keys and AWS keys first (:class:`~ddb2bq.exceptions.ConfigError` naming the
setting, never quoting it), and ``[google] workload_identity_config`` must be an
``external_account`` configuration.

Without ``[dead_letters]`` (``kind = "local"`` at its default path, which means nothing inside
Lambda), the function's dead letters go to the stack's own queue (:func:`function_config`,
:func:`notes`).

Example::

    document = build_template(load_config("ddb2bq.toml"), stream_arn=arn)
    Path("stack.json").write_text(render(document))
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ddb2bq.config import ENTITIES_VARIABLE, Config, DeadLettersConfig
from ddb2bq.exceptions import ConfigError

HANDLER = "ddb2bq.aws_lambda.handler"
STREAM_ARN = re.compile(
    r"^arn:(?P<partition>aws[\w-]*):dynamodb:(?P<region>[\w-]+):(?P<account>\d{12}):"
    r"table/(?P<table>[\w.-]+)/stream/(?P<label>[\w:.-]+)$"
)
_SQS_URL = re.compile(
    r"^https://sqs\.(?P<region>[\w-]+)\.amazonaws\.com[\w.]*/(?P<account>\d{12})/(?P<name>[\w-]+(\.fifo)?)$"
)
TABLE_TAG = "ddb2bq:table"
"""The tag on the stack and the function that names the table they replicate."""
FUNCTION_NAME_MAX = 64  # Lambda's limit, and the log group /aws/lambda/<function> fits its 512
STACK_NAME_MAX = 128
_NAME = re.compile(r"[^A-Za-z0-9-]+")
_VALID_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # a stack's rule; a function's too
_HASH_CHARS = 8
_DESCRIPTION_MAX = {"stack": 1024, "function": 256}
_SECRETS = (  # what a setting must never hold: (what it looks like, pattern)
    ("a private key", re.compile(r"PRIVATE KEY-----|private_key", re.IGNORECASE)),
    ("a Google service-account key", re.compile(r'"type"\s*:\s*"service_account"')),
    ("a Google user credential", re.compile(r"refresh_token|client_secret", re.IGNORECASE)),
    ("an AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret access key", re.compile(r"secret_?access_?key", re.IGNORECASE)),
    (  # 40 base64 characters with upper and lower case, a digit and '/' or '+': AWS's shape
        "an AWS secret access key",
        re.compile(
            r"(?<![\w/+=])(?=[\w/+]*[/+])(?=[\w/+]*\d)(?=[\w/+]*[a-z])(?=[\w/+]*[A-Z])"
            r"[A-Za-z0-9][A-Za-z0-9/+]{38}[A-Za-z0-9](?![\w/+=])"
        ),
    ),
    ("a password in a URL", re.compile(r"://[^/\s:@]+:[^/\s@]+@")),
)
_ENV_SECTIONS = ("source", "target", "columns", "dead_letters", "google")
_LAMBDA_TEXT = ("function_name", "stack_name", "code_bucket", "alarm_topic")  # in the template
_ENV_SKIP = {  # local stand-ins' endpoints: a deployed function talks to the real services
    ("source", "endpoint_url"),
    ("target", "endpoint"),
    ("target", "grpc_endpoint"),
}
_ALARM_PERIOD = 300
Json = dict[str, Any]


def build_template(config: Config, *, stream_arn: str, code_key: str | None = None) -> Json:
    """The CloudFormation template (a JSON document) for ``config``'s Lambda function.

    ``stream_arn`` is the table's stream (``[lambda] stream_arn``, or DescribeTable's
    ``LatestStreamArn``); ``code_key`` overrides ``[lambda] code_key`` (``ddb2bq deploy``
    uploads the zip under a content-addressed key so that new code is a change CloudFormation
    sees).

    >>> build_template(config, stream_arn=arn)["Resources"]["Function"]["Type"]  # doctest: +SKIP
    'AWS::Lambda::Function'
    """
    code_key = code_key or config.lambda_.code_key
    _check(config, stream_arn, code_key)
    remarks = notes(config)
    config = function_config(config)
    function_name = function_name_for(config)
    resources = {
        "DeadLetterQueue": _queue(),
        "LogGroup": _log_group(config, function_name),
        "Role": _role(config, stream_arn, function_name),
        "Function": _function(config, function_name, code_key),
        "StreamMapping": _mapping(config, stream_arn),
        **_alarms(config, function_name),
    }
    description = (
        f"ddb2bq: replicate DynamoDB table {config.source.table} into BigQuery "
        f"{config.target.project}.{config.target.dataset}.{config.target_table}"
    )
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": _cut(" ".join([description, *remarks]), "stack"),
        "Resources": resources,
        "Outputs": _outputs(config),
    }


def render(document: Mapping[str, Any]) -> str:
    """The template as JSON text, keys in a stable order so that diffs stay small."""
    return json.dumps(document, indent=2) + "\n"


def function_name_for(config: Config) -> str:
    """``[lambda] function_name`` (checked, never changed), else :func:`derived_name`."""
    explicit = config.lambda_.function_name
    if not explicit:
        return derived_name(config.source.table)
    return _explicit_name(explicit, "function_name", FUNCTION_NAME_MAX)


def stack_name_for(config: Config) -> str:
    """``[lambda] stack_name`` (checked, never changed), else the function's name."""
    explicit = config.lambda_.stack_name
    if explicit:
        return _explicit_name(explicit, "stack_name", STACK_NAME_MAX)
    return function_name_for(config)


def derived_name(table: str) -> str:
    """The function's and the stack's name for ``table``: unique per table, at most 64 characters.

    ``ddb2bq-<table>`` when that is a valid name as it is (letters, digits and '-'; at most 64
    characters), so existing stacks keep their names. Otherwise the characters other than
    letters, digits and '-' are replaced by '-', the name is cut to fit, and the first
    characters of the SHA-256 of the exact table name follow.

    >>> derived_name("orders-v2"), derived_name("orders_v2"), derived_name("orders.v2")
    ('ddb2bq-orders-v2', 'ddb2bq-orders-v2-2377d124', 'ddb2bq-orders-v2-ace4ce8e')
    """
    name = f"ddb2bq-{table}"
    if legacy_name(table) == name:
        return name
    digest = hashlib.sha256(table.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    stem = legacy_name(table)[: FUNCTION_NAME_MAX - _HASH_CHARS - 1].rstrip("-")
    return f"{stem}-{digest}"


def legacy_name(table: str) -> str:
    """The name ddb2bq derived for ``table`` before :func:`derived_name` (not unique: ``orders-v2``,
    ``orders_v2`` and ``orders.v2`` all gave ``ddb2bq-orders-v2``)."""
    return _NAME.sub("-", f"ddb2bq-{table}").strip("-")[:FUNCTION_NAME_MAX]


def renamed_from(config: Config) -> str | None:
    """The stack name earlier ddb2bq versions derived for ``config``'s table, when it differs
    from :func:`stack_name_for` (a stack of that name may already replicate the table)."""
    if config.lambda_.function_name or config.lambda_.stack_name:
        return None
    legacy = legacy_name(config.source.table)
    return None if legacy == stack_name_for(config) else legacy


def _explicit_name(name: str, key: str, limit: int) -> str:
    if _VALID_NAME.fullmatch(name) and len(name) <= limit:
        return name
    suggestion = _NAME.sub("-", name).strip("-")[:limit]
    raise ConfigError(
        f"[lambda] {key} {name!r} is not a valid name (letters, digits and '-', starting with a "
        f"letter, at most {limit} characters): set it to {suggestion!r}, the name earlier ddb2bq "
        "versions made of it."
    )


def _cut(text: str, what: str) -> str:
    limit = _DESCRIPTION_MAX[what]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def function_config(config: Config) -> Config:
    """``config`` as the deployed function runs it: without ``[dead_letters]`` configured
    (``kind = "local"`` at its default path), its dead letters go to the stack's own queue."""
    if not _dead_letters_unset(config):
        return config
    return replace(config, dead_letters=replace(config.dead_letters, kind="sqs"))


def notes(config: Config) -> list[str]:
    """What the template decides that the configuration does not say, one sentence each."""
    if not _dead_letters_unset(config):
        return []
    return [
        "[dead_letters] is not configured, so the function sends its dead letters to the "
        "stack's own SQS queue (DeadLetterQueue, output DeadLetterQueueUrl); set [dead_letters] "
        'kind = "sqs" or "s3" to choose another place.'
    ]


def _dead_letters_unset(config: Config) -> bool:
    letters = config.dead_letters
    return letters.kind == "local" and letters.path == DeadLettersConfig().path


def _check(config: Config, stream_arn: str, code_key: str) -> None:
    _refuse_secrets(config, stream_arn, code_key)
    match = STREAM_ARN.match(stream_arn)
    if match is None:
        raise ConfigError(
            f"{stream_arn!r} is not a DynamoDB stream ARN "
            "(arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL)."
        )
    if config.source.table and match["table"] != config.source.table:
        raise ConfigError(
            f"The stream {stream_arn!r} belongs to table {match['table']!r}, not to "
            f"[source] table {config.source.table!r}."
        )
    for section, key in (("target", "project"), ("target", "dataset")):
        if not getattr(getattr(config, section), key):
            raise ConfigError(f"The template needs [{section}] {key}.")
    if not config.lambda_.code_bucket:
        raise ConfigError(
            "[lambda] code_bucket is empty: set it to the S3 bucket that holds the function's zip "
            "(`ddb2bq deploy --zip` uploads it there)."
        )
    function_name_for(config)
    stack_name_for(config)
    kind = function_config(config).dead_letters.kind
    if kind == "local":
        raise ConfigError(
            f'A Lambda function has no lasting disk for [dead_letters] kind = "local" (path '
            f'{config.dead_letters.path!r}): set kind = "sqs" (the stack\'s queue when '
            'sqs_queue_url is empty) or "s3" with s3_bucket, or leave [dead_letters] out.'
        )
    if kind == "s3" and not config.dead_letters.s3_bucket:
        raise ConfigError('[dead_letters] kind = "s3" needs [dead_letters] s3_bucket.')
    if kind == "sqs" and config.dead_letters.sqs_queue_url:
        _queue_arn(config.dead_letters.sqs_queue_url)


def _queue() -> Json:
    return {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "MessageRetentionPeriod": 1209600,  # 14 days, SQS's longest
            "SqsManagedSseEnabled": True,
        },
    }


def _log_group(config: Config, function_name: str) -> Json:
    return {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": f"/aws/lambda/{function_name}",
            "RetentionInDays": _retention(config.lambda_.log_retention_days),
        },
    }


_RETENTIONS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
               2557, 2922, 3288, 3653)  # fmt: skip


def _retention(days: int) -> int:
    """The shortest retention CloudWatch Logs offers that keeps logs at least ``days``."""
    return next(r for r in _RETENTIONS if r >= days)


def _role(config: Config, stream_arn: str, function_name: str) -> Json:
    statements = [
        _allow(
            "ReadTheStream",
            ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            stream_arn,
        ),
        _allow("ListTheTablesStreams", ["dynamodb:ListStreams"], _table_streams(stream_arn)),
        _allow(
            "WriteItsLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            _sub(
                f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/{function_name}:*"
            ),
        ),
        _allow("SendToItsQueue", ["sqs:SendMessage"], _queues(config)),
    ]
    if config.dead_letters.s3_bucket:  # S3 dead letters, or SQS letters too big for a message
        bucket, prefix = config.dead_letters.s3_bucket, config.dead_letters.s3_prefix
        statements.append(
            _allow(
                "PutItsDeadLetters",
                ["s3:PutObject"],
                _sub(f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix}*"),
            )
        )
    secret = _secret_arn(config)
    if secret is not None:
        statements.append(_allow("ReadItsGoogleKey", ["secretsmanager:GetSecretValue"], secret))
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"ddb2bq function {function_name}: reads one stream, writes its logs "
            "and dead letters",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "ddb2bq-function",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def _allow(sid: str, actions: list[str], resource: Any) -> Json:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}


def _sub(text: str) -> Json:
    return {"Fn::Sub": text}


def _table_streams(stream_arn: str) -> str:
    return stream_arn.rsplit("/stream/", 1)[0] + "/stream/*"


def _queues(config: Config) -> list[Any]:
    queues: list[Any] = [{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}]
    if config.dead_letters.kind == "sqs" and config.dead_letters.sqs_queue_url:
        queues.append(_queue_arn(config.dead_letters.sqs_queue_url))
    return queues


def _queue_arn(url: str) -> str:
    match = _SQS_URL.match(url)
    if match is None:
        raise ConfigError(
            f"[dead_letters] sqs_queue_url {url!r} is not an SQS queue URL "
            "(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)."
        )
    partition = "aws-cn" if url.endswith(".cn") or ".amazonaws.com.cn/" in url else "aws"
    return f"arn:{partition}:sqs:{match['region']}:{match['account']}:{match['name']}"


def _secret_arn(config: Config) -> Any:
    """The secret's ARN when the function reads its Google key from Secrets Manager."""
    google = config.google
    uses_secret = google.credentials == "secret" or (
        google.credentials == "auto" and google.secret_id and not google.workload_identity_config
    )
    if not uses_secret:
        return None
    if google.secret_id.startswith("arn:"):
        return google.secret_id
    # A secret's ARN ends in '-' and six random characters that its name does not carry.
    return _sub(
        f"arn:${{AWS::Partition}}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:"
        f"secret:{google.secret_id}-??????"
    )


def _function(config: Config, function_name: str, code_key: str) -> Json:
    settings = config.lambda_
    return {
        "Type": "AWS::Lambda::Function",
        "DependsOn": ["LogGroup"],
        "Properties": {
            "FunctionName": function_name,
            "Description": _cut(f"ddb2bq: DynamoDB {config.source.table} -> BigQuery", "function"),
            "Handler": HANDLER,
            "Runtime": f"python{settings.python}",
            "Architectures": [settings.architecture],
            "MemorySize": settings.memory,
            "Timeout": settings.timeout,
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
            "Code": {"S3Bucket": settings.code_bucket, "S3Key": code_key},
            "Environment": {"Variables": function_environment(config)},
            "Tags": [{"Key": TABLE_TAG, "Value": config.source.table}],
        },
    }


def function_environment(config: Config) -> dict[str, Any]:
    """The ``DDB2BQ_*`` variables that configure the function: every setting not at its default
    (of :func:`function_config`: dead letters in the stack's queue when none are configured).

    ``load_config(environ=...)`` of these variables gives back the same sections.
    """
    config = function_config(config)
    variables: dict[str, Any] = {}
    for section, key, value in _inlined(config):
        inlined = _inline_json(value) if key == "workload_identity_config" else value
        variables[f"DDB2BQ_{section.upper()}_{key.upper()}"] = _env_text(inlined)
    if config.dead_letters.kind == "sqs" and not config.dead_letters.sqs_queue_url:
        variables["DDB2BQ_DEAD_LETTERS_SQS_QUEUE_URL"] = {"Ref": "DeadLetterQueue"}
    if config.entities:  # the function reads only its environment: [[entities]] as JSON
        variables[ENTITIES_VARIABLE] = json.dumps(list(config.entities), separators=(",", ":"))
    return variables


def _inlined(config: Config) -> Iterator[tuple[str, str, Any]]:
    """``(section, key, value)`` of every setting the function's environment carries."""
    defaults = Config()
    for section in _ENV_SECTIONS:
        values, default = getattr(config, section), getattr(defaults, section)
        for key in type(values).__dataclass_fields__:
            value = getattr(values, key)
            if (section, key) not in _ENV_SKIP and value != getattr(default, key):
                yield section, key, value


def _refuse_secrets(config: Config, stream_arn: str, code_key: str) -> None:
    """Refuse any setting the template copies in that looks like a key (never quoting it)."""
    values = [(f"[{section}] {key}", value) for section, key, value in _inlined(config)]
    values += [(f"[lambda] {key}", getattr(config.lambda_, key)) for key in _LAMBDA_TEXT]
    values += [("[lambda] stream_arn (--stream-arn)", stream_arn)]
    values += [("[lambda] code_key (--code-key)", code_key)]
    for setting, value in values:
        _refuse_secret(setting, _env_text(value))


def _refuse_secret(setting: str, text: str) -> None:
    for what, pattern in _SECRETS:
        if pattern.search(text):
            raise ConfigError(
                f"{setting} holds what looks like {what}, which the template would copy into the "
                "function's environment, the stack and its output: keep keys out of the "
                "configuration, use workload identity federation ([google] "
                "workload_identity_config, an external_account file) or a key in AWS Secrets "
                "Manager ([google] secret_id)."
            )


def _inline_json(text_or_path: str) -> str:
    """The JSON text itself (a path on this machine means nothing inside the function), checked:
    an ``external_account`` configuration, nothing secret in it."""
    from ddb2bq.credentials import workload_identity_credentials  # noqa: PLC0415 (google.auth)

    setting = "[google] workload_identity_config"
    _refuse_secret(setting, text_or_path)
    text = text_or_path.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{setting} file {text_or_path!r} cannot be read: {exc.strerror}."
            ) from exc
        _refuse_secret(f"{setting} (the file {text_or_path!r})", text)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:  # not chained: the error holds the text it parsed
        raise ConfigError(f"{setting} is not JSON: {exc.msg} at line {exc.lineno}.") from None
    workload_identity_credentials(text)  # the checks `ddb2bq init` makes: external_account, AWS
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value)) if any("," in v for v in value) else ",".join(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    return str(value)


def _mapping(config: Config, stream_arn: str) -> Json:
    settings = config.lambda_
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "DependsOn": ["Role"],  # the poller checks the role can read the stream when created
        "Properties": {
            "EventSourceArn": stream_arn,
            "FunctionName": {"Ref": "Function"},
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": settings.batch_size,
            "MaximumBatchingWindowInSeconds": settings.batching_window,
            "ParallelizationFactor": settings.parallelization_factor,
            "BisectBatchOnFunctionError": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRetryAttempts": settings.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": settings.maximum_record_age,
            "DestinationConfig": {
                "OnFailure": {"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
            },
        },
    }


def _alarms(config: Config, function_name: str) -> dict[str, Json]:
    settings = config.lambda_
    function = [{"Name": "FunctionName", "Value": {"Ref": "Function"}}]
    queue = [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    hours = settings.iterator_age_critical / 3600
    return {
        "IteratorAgeWarning": _alarm(
            config,
            f"{function_name}: the stream is more than {settings.iterator_age_warning // 60} "
            "minutes behind. Raise parallelization_factor, batch_size or memory; check errors.",
            ("AWS/Lambda", "IteratorAge", "Maximum", function),
            settings.iterator_age_warning * 1000,
        ),
        "IteratorAgeCritical": _alarm(
            config,
            f"{function_name}: the stream is {hours:g} hours behind; records are trimmed after "
            "24 hours. Act now (docs/lambda.md, 'When the iterator-age alarm fires').",
            ("AWS/Lambda", "IteratorAge", "Maximum", function),
            settings.iterator_age_critical * 1000,
        ),
        "Errors": _alarm(
            config,
            f"{function_name}: the function failed (an error, a timeout or out of memory).",
            ("AWS/Lambda", "Errors", "Sum", function),
            0,
        ),
        "DeadLetters": _alarm(
            config,
            f"{function_name}: messages are waiting in the dead-letter queue.",
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", queue),
            0,
        ),
    }


def _alarm(
    config: Config, description: str, metric: tuple[str, str, str, list[Json]], threshold: int
) -> Json:
    namespace, name, statistic, dimensions = metric
    actions = [config.lambda_.alarm_topic] if config.lambda_.alarm_topic else []
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": name,
            "Dimensions": dimensions,
            "Statistic": statistic,
            "Period": _ALARM_PERIOD,
            "EvaluationPeriods": 1,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": actions,
            "OKActions": actions,
        },
    }


def _outputs(config: Config) -> Json:
    return {
        "SourceTable": {"Value": config.source.table},
        "FunctionArn": {"Value": {"Fn::GetAtt": ["Function", "Arn"]}},
        "StreamMappingId": {"Value": {"Ref": "StreamMapping"}},
        "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
        "RoleArn": {"Value": {"Fn::GetAtt": ["Role", "Arn"]}},
    }
