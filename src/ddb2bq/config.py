"""Configuration: a TOML file (``ddb2bq.toml``) and ``DDB2BQ_<SECTION>_<KEY>`` environment variables.

This is the one module that reads environment variables. The file wins over the environment
(explicit configuration wins); the environment fills what the file does not say, which is how the
Lambda function, which has no file, is configured. Unknown sections or keys and bad values raise
:class:`~ddb2bq.exceptions.ConfigError` naming the setting and where it came from.

Example::

    [source]
    table = "orders"
    region = "eu-west-1"

    [target]
    project = "analytics-prod"
    dataset = "dynamodb"
    mirror = "merge"          # view | merge | cdc
    deletes = "soft"          # hard | soft

    [columns]
    promote = ["status", "total"]
    types = { total = "NUMERIC" }

The same as environment variables: ``DDB2BQ_SOURCE_TABLE=orders``,
``DDB2BQ_TARGET_MIRROR=merge``, ``DDB2BQ_COLUMNS_PROMOTE=status,total``,
``DDB2BQ_COLUMNS_TYPES='{"total": "NUMERIC"}'``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ddb2bq.exceptions import ConfigError

ENV_PREFIX = "DDB2BQ_"
COLUMN_TYPES = ("STRING", "INT64", "NUMERIC", "BIGNUMERIC", "BYTES", "BOOL", "JSON")

MirrorMode = Literal["view", "merge", "cdc"]
DeleteMode = Literal["hard", "soft"]
WriterKind = Literal["storage_write", "insert_all"]
DeadLetterKind = Literal["local", "s3", "sqs"]
CredentialsMode = Literal["auto", "workload_identity", "secret", "default", "anonymous"]
Architecture = Literal["x86_64", "arm64"]
PythonVersion = Literal["3.11", "3.12", "3.13"]


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """The DynamoDB table and where to reach it.

    ``keys`` names the key attributes, hash key first; when empty they are read with
    DescribeTable (or, for stream records read offline, taken from each record's ``Keys``).
    ``generation`` rises each time the stream is lost and a new backfill is taken.
    """

    table: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    generation: int = 0
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """The BigQuery dataset and tables, and how the mirror is kept."""

    project: str = ""
    dataset: str = ""
    table: str = ""
    location: str = "US"
    mirror: MirrorMode = "view"
    deletes: DeleteMode = "hard"
    writer: WriterKind = "storage_write"
    endpoint: str | None = None
    grpc_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnsConfig:
    """Attributes promoted to typed mirror columns; every attribute is always in ``item``.

    ``types`` fixes a column's BigQuery type; a promoted attribute without one gets the type
    inferred from the items seen (see :mod:`ddb2bq.schema`).
    """

    promote: tuple[str, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadLettersConfig:
    """Where changes that cannot be written go, whole."""

    kind: DeadLetterKind = "local"
    path: str = "dead-letters"
    s3_bucket: str = ""
    s3_prefix: str = "ddb2bq/dead-letters/"
    sqs_queue_url: str = ""


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """The stream runner (``ddb2bq run``) and where the runtimes keep their state.

    ``checkpoints``: the state store (:mod:`ddb2bq.state`: the generation, each shard's
    checkpoint, the single-active lease), a SQLite file path (relative to the working
    directory) or ``dynamodb://TABLE`` for containers. ``on_gap``: what the runner does when
    the stream lost changes: ``stop`` (exit 3), or ``backfill`` (a new generation: a new
    backfill, the stream read again from its oldest record, as ``ddb2bq start
    --new-generation``).
    ``merge_interval``: seconds between the ``merge`` mirror's MERGE runs. ``lease_seconds``:
    how long a runner that stopped answering keeps the table (a standby takes over after it).
    ``page_size``: records per GetRecords call (1 to 1000). ``report_interval``: seconds
    between progress reports.
    """

    checkpoints: str = ".ddb2bq/state.sqlite"
    on_gap: Literal["stop", "backfill"] = "stop"
    merge_interval: float = 60.0
    lease_seconds: float = 30.0
    page_size: int = 1000
    report_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class GoogleConfig:
    """Where the Google credentials come from (see :mod:`ddb2bq.credentials`).

    ``credentials`` is ``auto`` (the first configured of the next three), ``workload_identity``
    (``workload_identity_config``: an AWS ``external_account`` JSON text or its path),
    ``secret`` (``secret_id``: a Secrets Manager secret holding a service-account key JSON),
    ``default`` (application default credentials) or ``anonymous`` (local emulators only).
    """

    credentials: CredentialsMode = "auto"
    workload_identity_config: str = ""
    secret_id: str = ""


@dataclass(frozen=True, slots=True)
class LambdaConfig:
    """The Lambda function and its event source mapping, as ``ddb2bq template`` writes them.

    ``maximum_retry_attempts`` and ``maximum_record_age`` are -1 for "until the record
    expires from the stream" (Lambda's defaults; retryable failures are retried, not skipped).
    ``stream_arn`` empty: looked up with DescribeTable. ``code_bucket``/``code_key``: where the
    zip from ``ddb2bq package`` is uploaded. Iterator-age alarm thresholds are in seconds.
    """

    function_name: str = ""
    stack_name: str = ""
    memory: int = 1024
    timeout: int = 120
    batch_size: int = 500
    batching_window: int = 5
    parallelization_factor: int = 1
    maximum_retry_attempts: int = -1
    maximum_record_age: int = -1
    architecture: Architecture = "arm64"
    python: PythonVersion = "3.12"
    stream_arn: str = ""
    code_bucket: str = ""
    code_key: str = "ddb2bq/ddb2bq-lambda.zip"
    alarm_topic: str = ""
    iterator_age_warning: int = 3600
    iterator_age_critical: int = 43200
    log_retention_days: int = 30


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, one frozen value per section."""

    source: SourceConfig = field(default_factory=SourceConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    dead_letters: DeadLettersConfig = field(default_factory=DeadLettersConfig)
    google: GoogleConfig = field(default_factory=GoogleConfig)
    lambda_: LambdaConfig = field(default_factory=LambdaConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    @property
    def target_table(self) -> str:
        """The mirror table's name: ``[target] table``, else the source table's name."""
        return self.target.table or self.source.table

    def summary(self) -> dict[str, Any]:
        """What the configuration replicates where, for a log line (no secret in it)."""
        return {
            "table": self.source.table,
            "target": f"{self.target.project}.{self.target.dataset}.{self.target_table}",
            "mirror": self.target.mirror,
            "writer": self.target.writer,
            "dead_letters": self.dead_letters.kind,
            "credentials": self.google.credentials,
        }


_SECTIONS: dict[str, type[Any]] = {
    "source": SourceConfig,
    "target": TargetConfig,
    "columns": ColumnsConfig,
    "dead_letters": DeadLettersConfig,
    "google": GoogleConfig,
    "lambda": LambdaConfig,
    "runner": RunnerConfig,
}


_FIELD_OF_SECTION = {"lambda": "lambda_"}  # a section named after a Python keyword


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the configuration from ``path`` (optional) and ``environ`` (default ``os.environ``).

    >>> load_config(environ={"DDB2BQ_SOURCE_TABLE": "orders"}).source.table
    'orders'
    """
    env = os.environ if environ is None else environ
    from_file = _read_file(Path(path)) if path is not None else {}
    from_env = _read_env(env)
    sections = {}
    for name, cls in _SECTIONS.items():
        values = {**from_env.get(name, {}), **from_file.get(name, {})}
        sections[name] = _build_section(name, cls, values)
    config = Config(**{_FIELD_OF_SECTION.get(n, n): v for n, v in sections.items()})
    _validate(config)
    return config


def _read_file(path: Path) -> dict[str, dict[str, tuple[Any, str]]]:
    import tomllib  # noqa: PLC0415 (lazy: the Lambda reads only its environment, at cold start)

    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"The configuration file {str(path)!r} does not exist.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The configuration file {str(path)!r} is not valid TOML: {exc}."
        ) from exc
    result: dict[str, dict[str, tuple[Any, str]]] = {}
    for section, values in document.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]; the sections are "
                f"{', '.join(f'[{s}]' for s in _SECTIONS)}."
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section!r} must be a [section] table.")
        result[section] = {
            key: (value, f"{path}: [{section}] {key}") for key, value in values.items()
        }
    return result


def _read_env(environ: Mapping[str, str]) -> dict[str, dict[str, tuple[Any, str]]]:
    result: dict[str, dict[str, tuple[Any, str]]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                f"Environment variable {name} names no known section; use "
                f"{ENV_PREFIX}<SECTION>_<KEY> with a section among {', '.join(_SECTIONS)}."
            )
        key = rest[len(section) + 1 :]
        result.setdefault(section, {})[key] = (_EnvText(value), f"environment variable {name}")
    return result


class _EnvText(str):
    """A value read from the environment: text to be parsed into the setting's type."""


def _build_section(section: str, cls: type[Any], values: dict[str, tuple[Any, str]]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, (value, origin) in values.items():
        if key not in known:
            raise ConfigError(
                f"{origin}: unknown setting {key!r} in [{section}]; the settings are "
                f"{', '.join(sorted(known))}."
            )
        kwargs[key] = _coerce(value, hints[key], origin)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, origin: str) -> Any:
    origin_type = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin_type in (types.UnionType, typing.Union):
        inner = next(a for a in args if a is not type(None))
        return None if value == "" else _coerce(value, inner, origin)
    if origin_type is Literal:
        if value not in args:
            choices = " | ".join(str(a) for a in args)
            raise ConfigError(f"{origin}: {value!r} is not one of {choices}.")
        return value
    if hint is bool:
        return _to_bool(value, origin)
    if hint is int:
        return _to_int(value, origin)
    if hint is float:
        return _to_float(value, origin)
    if hint is str:
        return _expect(value, str, origin, "a string")
    if origin_type is tuple:
        return _to_names(value, origin)
    if origin_type is Mapping:
        return _to_mapping(value, origin)
    raise ConfigError(f"{origin}: unsupported setting type {hint!r}.")  # pragma: no cover


def _expect(value: Any, kind: type[Any], origin: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{origin}: expected {what}, got {value!r}.")
    return value


def _to_bool(value: Any, origin: str) -> bool:
    if isinstance(value, _EnvText):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{origin}: expected true or false, got {str(value)!r}.")
    return bool(_expect(value, bool, origin, "true or false"))


def _to_int(value: Any, origin: str) -> int:
    if isinstance(value, _EnvText):
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"{origin}: expected a whole number, got {str(value)!r}.") from exc
    return int(_expect(value, int, origin, "a whole number"))


def _to_float(value: Any, origin: str) -> float:
    if isinstance(value, _EnvText):
        try:
            number = float(value)
        except ValueError as exc:
            raise ConfigError(f"{origin}: expected a number, got {str(value)!r}.") from exc
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ConfigError(f"{origin}: expected a number, got {value!r}.")
    if not math.isfinite(number):
        raise ConfigError(f"{origin}: expected a finite number, got {value!r}.")
    return number


def _to_names(value: Any, origin: str) -> tuple[str, ...]:
    if isinstance(value, _EnvText):
        text = value.strip()
        if text.startswith("["):
            value = _json(text, origin)
        else:
            return tuple(part.strip() for part in text.split(",") if part.strip())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{origin}: expected a list of attribute names, got {value!r}.")
    return tuple(value)


def _to_mapping(value: Any, origin: str) -> Mapping[str, str]:
    if isinstance(value, _EnvText):
        value = _json(value, origin)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f'{origin}: expected a table of attribute = "TYPE", got {value!r}.')
    return dict(value)


def _json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin}: expected JSON, got {text!r} ({exc}).") from exc


def _validate(config: Config) -> None:
    for attribute, column_type in config.columns.types.items():
        if column_type.upper() not in COLUMN_TYPES:
            raise ConfigError(
                f"[columns] types: attribute {attribute!r} has type {column_type!r}; "
                f"use one of {', '.join(COLUMN_TYPES)}."
            )
    if config.source.generation < 0:
        raise ConfigError("[source] generation must be 0 or more.")
    _validate_lambda(config.lambda_)
    _validate_runner(config.runner)


_RUNNER_RANGES = {
    "merge_interval": (1.0, 86400.0),
    "lease_seconds": (3.0, 3600.0),
    "page_size": (1, 1000),
    "report_interval": (0.1, 3600.0),
}


def _validate_runner(settings: RunnerConfig) -> None:
    for name, (low, high) in _RUNNER_RANGES.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ConfigError(f"[runner] {name} is {value}; use a value from {low} to {high}.")
    if not settings.checkpoints.strip():
        raise ConfigError(
            "[runner] checkpoints is empty; give a file path or dynamodb://TABLE "
            "(default .ddb2bq/state.sqlite)."
        )


_LAMBDA_RANGES = {  # Lambda's own limits, so a bad value fails here and not in CloudFormation
    "memory": (128, 10240),
    "timeout": (1, 900),
    "batch_size": (1, 10000),
    "batching_window": (0, 300),
    "parallelization_factor": (1, 10),
    "maximum_retry_attempts": (-1, 10000),
    "maximum_record_age": (-1, 604800),
    "iterator_age_warning": (60, 86400),
    "iterator_age_critical": (60, 86400),
    "log_retention_days": (1, 3653),
}


def _validate_lambda(settings: LambdaConfig) -> None:
    for name, (low, high) in _LAMBDA_RANGES.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ConfigError(f"[lambda] {name} is {value}; use a value from {low} to {high}.")
    if 0 <= settings.maximum_record_age < 60:
        raise ConfigError("[lambda] maximum_record_age is -1 (no limit) or 60 to 604800 seconds.")
    if settings.iterator_age_warning >= settings.iterator_age_critical:
        raise ConfigError("[lambda] iterator_age_warning must be below iterator_age_critical.")


def check_function_config(config: Config) -> None:
    """Refuse a configuration the Lambda function cannot run with, naming the variable to set;
    warn when its dead letters would be lost with the container."""
    if not config.target_table:
        raise ConfigError("Set DDB2BQ_SOURCE_TABLE (or DDB2BQ_TARGET_TABLE).")
    for key in ("project", "dataset"):
        if not getattr(config.target, key):
            raise ConfigError(f"Set DDB2BQ_TARGET_{key.upper()}: the BigQuery {key}.")
    if config.dead_letters.kind == "local":
        logging.getLogger("ddb2bq.aws_lambda").warning(
            "Dead letters are kept on the container's disk (%s) and are lost with it; "
            "set DDB2BQ_DEAD_LETTERS_KIND to s3 or sqs.",
            config.dead_letters.path,
        )
