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

Entities of a single-table design are an array of tables, ``[[entities]]`` (docs/entities.md),
or, for the Lambda function, ``DDB2BQ_ENTITIES`` holding the same tables as a JSON list. Only
their shape is checked here; their rules are read by :meth:`ddb2bq.entities.Entities.from_config`
where the table's keys are known (``ddb2bq init``, ``convert``, and the pipeline's factory).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from ddb2bq.classes import data_class
from ddb2bq.exceptions import ConfigError

ENV_PREFIX = "DDB2BQ_"
ENTITIES_VARIABLE = "DDB2BQ_ENTITIES"
DEBUG_VARIABLE = "DDB2BQ_DEBUG"
"""Not a setting: asks the command line for tracebacks (read by :mod:`ddb2bq.cli.main`)."""
_NOT_SETTINGS = frozenset((ENTITIES_VARIABLE, DEBUG_VARIABLE))
COLUMN_TYPES = ("STRING", "INT64", "NUMERIC", "BIGNUMERIC", "BYTES", "BOOL", "JSON")

MirrorMode = Literal["view", "merge", "cdc"]
DeleteMode = Literal["hard", "soft"]
WriterKind = Literal["storage_write", "insert_all"]
DeadLetterKind = Literal["local", "s3", "sqs"]
CredentialsMode = Literal["auto", "workload_identity", "secret", "default", "anonymous"]
Architecture = Literal["x86_64", "arm64"]
PythonVersion = Literal["3.11", "3.12", "3.13"]


@data_class(frozen=True, slots=True)
class SourceConfig:
    """The DynamoDB table and where to reach it.

    ``keys`` names the key attributes, hash key first; when empty they are read with
    DescribeTable (or, for stream records read offline, taken from each record's ``Keys``).
    ``generation`` rises each time the stream is lost and a new backfill is taken (0 to
    :data:`MAX_GENERATION`: ``seq`` carries it as 16 hex digits).
    """

    table: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    generation: int = 0
    keys: tuple[str, ...] = ()


@data_class(frozen=True, slots=True)
class TargetConfig:
    """The BigQuery dataset and tables, and how the mirror is kept."""

    project: str = ""
    dataset: str = ""
    table: str = ""
    location: str = "US"
    mirror: MirrorMode = "view"
    deletes: DeleteMode = "hard"
    old_images: bool = False
    writer: WriterKind = "storage_write"
    endpoint: str | None = None
    grpc_endpoint: str | None = None


@data_class(frozen=True, slots=True)
class ColumnsConfig:
    """Attributes promoted to typed mirror columns; every attribute is always in ``item``.

    ``types`` fixes a column's BigQuery type; a promoted attribute without one gets the type
    inferred from the items seen (see :mod:`ddb2bq.schema`).
    """

    promote: tuple[str, ...] = ()
    types: Mapping[str, str] = field(default_factory=dict)


@data_class(frozen=True, slots=True)
class DeadLettersConfig:
    """Where changes that cannot be written go, whole."""

    kind: DeadLetterKind = "local"
    path: str = "dead-letters"
    s3_bucket: str = ""
    s3_prefix: str = "ddb2bq/dead-letters/"
    sqs_queue_url: str = ""


@data_class(frozen=True, slots=True)
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


@data_class(frozen=True, slots=True)
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


@data_class(frozen=True, slots=True)
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


@data_class(frozen=True, slots=True)
class Config:
    """The whole configuration, one frozen value per section."""

    source: SourceConfig = field(default_factory=SourceConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    dead_letters: DeadLettersConfig = field(default_factory=DeadLettersConfig)
    google: GoogleConfig = field(default_factory=GoogleConfig)
    lambda_: LambdaConfig = field(default_factory=LambdaConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    entities: tuple[Mapping[str, Any], ...] = ()
    """The ``[[entities]]`` tables as written (shape checked: tables with a string ``name``)."""

    @property
    def promoted_attributes(self) -> tuple[str, ...]:
        """Every attribute promoted to a changelog column: ``[columns] promote``, then each
        entity's ``promote``, each once, in that order.

        >>> Config(columns=ColumnsConfig(promote=("status",)),
        ...        entities=({"name": "orders", "promote": ["total", "status"]},)).promoted_attributes
        ('status', 'total')
        """
        from_entities = (a for e in self.entities for a in e.get("promote", ()))
        return tuple(dict.fromkeys((*self.columns.promote, *from_entities)))

    @property
    def target_table(self) -> str:
        """The mirror table's name as configured: ``[target] table``, else the source table's
        name (its BigQuery name is :meth:`ddb2bq.bigquery.tables.TableRefs.from_config`'s, by
        :func:`ddb2bq.schema.bigquery_table_name`)."""
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
            "entities": [e["name"] for e in self.entities],
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
    entities = _entities(path, from_file.pop(_ENTITIES, None), env)
    config = Config(
        **{_FIELD_OF_SECTION.get(n, n): v for n, v in sections.items()}, entities=entities
    )
    _validate(config)
    return config


_ENTITIES = "entities"  # the one array of tables, [[entities]]


def _entities(
    path: str | Path | None, from_file: Any, environ: Mapping[str, str]
) -> tuple[Mapping[str, Any], ...]:
    """The ``[[entities]]`` of the file, else those of ``DDB2BQ_ENTITIES``; shape checked."""
    if from_file is not None:
        return _entity_tables(from_file, f"{path}: [[entities]]")
    text = environ.get(ENTITIES_VARIABLE)
    if text is None or not text.strip():
        return ()
    origin = f"environment variable {ENTITIES_VARIABLE}"
    return _entity_tables(_json(text, origin), origin)


def _entity_tables(value: Any, origin: str) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        raise ConfigError(
            f"{origin}: expected a list of entity tables, got {value!r}. Write each entity as "
            '[[entities]] (double brackets), or DDB2BQ_ENTITIES=\'[{"name": ..., "match": ...}]\'.'
        )
    for index, entry in enumerate(value, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(
                f"{origin}: entity {index} is {entry!r}; each entity is a table with a name "
                "and a match (see docs/entities.md)."
            )
        if not isinstance(entry.get("promote", []), list):
            raise ConfigError(
                f"{origin}: entity {entry['name']!r} has promote = {entry['promote']!r}; write a "
                'list of attribute names, such as promote = ["total", "status"].'
            )
    return tuple(value)


def _read_file(path: Path) -> dict[str, Any]:
    document = _parse_file(path)
    result: dict[str, Any] = {}
    for section, values in document.items():
        if section == _ENTITIES:
            result[section] = values
            continue
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path}: {section} = {values!r} stands outside any [section]; put each setting "
                f"under its section ({', '.join(f'[{s}]' for s in _SECTIONS)})."
            )
        if section not in _SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]; the sections are "
                f"{', '.join(f'[{s}]' for s in _SECTIONS)}."
            )
        result[section] = {
            key: (value, f"{path}: [{section}] {key}") for key, value in values.items()
        }
    return result


def _parse_file(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; every way of not being one is a ConfigError naming it."""
    import tomllib  # noqa: PLC0415 (lazy: the Lambda reads only its environment, at cold start)

    where = f"The configuration file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{where} does not exist; give the path of a ddb2bq.toml.") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{where} is a directory; give the path of a ddb2bq.toml.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML."
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"{where} cannot be read ({exc.strerror or exc}); check the path and its permissions."
        ) from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}; fix it and run again.") from exc
    if not document:
        raise ConfigError(
            f"{where} holds no settings; write at least [source] table and [target] dataset "
            "(see docs/bigquery.md), or leave out --config to use DDB2BQ_* variables only."
        )
    return document


def _read_env(environ: Mapping[str, str]) -> dict[str, dict[str, tuple[Any, str]]]:
    result: dict[str, dict[str, tuple[Any, str]]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
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
    if not values:
        return cls()  # its defaults; evaluating the type hints is most of the cost otherwise
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


MAX_GENERATION = 16**16 - 1
"""The largest generation: ``seq`` carries it as 16 hex digits, and string order must stay
numeric order."""

MAX_TABLE_NAME_BYTES = 1024 - len("_generations")
"""The longest mirror name: BigQuery's 1,024 bytes, less the generations table's suffix."""
_TABLE_CATEGORIES = frozenset(("Pc", "Pd", "Zs"))  # with every letter (L), mark (M), number (N)

_PROJECT = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z](?:[a-z0-9-]{0,28}[a-z0-9])?")
_DATASET = re.compile(r"[A-Za-z0-9_]{1,1024}")
_URL = re.compile(r"https?://[^\s/]+(?:/\S*)?")


def _validate(config: Config) -> None:
    _validate_source(config.source)
    _validate_target(config.target)
    _validate_columns(config.columns)
    if config.source.keys:
        check_column_types(config.columns, config.source.keys, config.promoted_attributes)
    _validate_dead_letters(config.dead_letters)
    _validate_lambda(config.lambda_)
    _validate_runner(config.runner)


def _validate_source(source: SourceConfig) -> None:
    if not 0 <= source.generation <= MAX_GENERATION:
        raise ConfigError(
            f"[source] generation is {source.generation}; use a whole number from 0 to "
            f"{MAX_GENERATION} (seq carries it as 16 hex digits)."
        )
    if not source.region.strip():
        raise ConfigError("[source] region is empty; set the table's AWS region (us-east-1).")
    _check_url(source.endpoint_url, "[source] endpoint_url", "http://127.0.0.1:5000")
    _check_names(source.keys, "[source] keys", "key attribute")
    if len(source.keys) > 2:
        raise ConfigError(
            f"[source] keys lists {len(source.keys)} attributes; a DynamoDB key is the hash "
            "key, then the range key, if any (or leave keys out: DescribeTable gives them)."
        )


def _validate_target(target: TargetConfig) -> None:
    if target.project and not _PROJECT.fullmatch(target.project):
        raise ConfigError(
            f"[target] project {target.project!r} is not a Google Cloud project ID (lowercase "
            "letters, digits and hyphens, starting with a letter, at most 30); use the "
            "project's ID as `gcloud projects list` shows it, not its display name."
        )
    if target.dataset and not _DATASET.fullmatch(target.dataset):
        fixed = re.sub(r"[^A-Za-z0-9_]", "_", target.dataset)[:1024]
        raise ConfigError(
            f"[target] dataset {target.dataset!r} is not a BigQuery dataset name (letters, "
            f"digits and underscores, at most 1024); use {fixed!r}, for example."
        )
    if target.table:
        check_table_name(target.table)
    if not target.location.strip():
        raise ConfigError("[target] location is empty; set the dataset's location (US, EU, ...).")
    if target.mirror == "cdc" and target.writer != "storage_write":
        raise ConfigError(
            f'[target] mirror = "cdc" is written with the Storage Write API, but [target] writer '
            f'is {target.writer!r}; set writer = "storage_write" (or choose mirror = "merge").'
        )
    _check_url(target.endpoint, "[target] endpoint", "http://127.0.0.1:9050")
    grpc_endpoint = target.grpc_endpoint or ""
    if grpc_endpoint.startswith(("http://", "https://")) or grpc_endpoint != grpc_endpoint.strip():
        raise ConfigError(
            f"[target] grpc_endpoint {grpc_endpoint!r} is a gRPC target, not a URL; write "
            "host:port without a scheme, e.g. 127.0.0.1:9060."
        )


def table_name_characters(name: str) -> str:
    """``name`` with each character BigQuery refuses in a table name replaced by ``_``:
    letters, marks, digits, connectors (``_``), dashes and spaces are kept.

    >>> table_name_characters("orders.v2"), table_name_characters("名前-テーブル")
    ('orders_v2', '名前-テーブル')
    """
    import unicodedata  # noqa: PLC0415 (only table names need it)

    def kept(character: str) -> bool:
        category = unicodedata.category(character)
        return category[0] in "LMN" or category in _TABLE_CATEGORIES

    return "".join(c if kept(c) else "_" for c in name)


def check_table_name(name: str) -> None:
    """Refuse a ``[target] table`` BigQuery would refuse, with the name to use instead."""
    fixed = table_name_characters(name)
    size = len(name.encode("utf-8", "surrogatepass"))
    if fixed == name and 0 < size <= MAX_TABLE_NAME_BYTES:
        return
    fixed = fixed.encode("utf-8")[:MAX_TABLE_NAME_BYTES].decode("utf-8", "ignore") or "mirror"
    raise ConfigError(
        f"[target] table {name[:80]!r} is not a BigQuery table name with room for its "
        f"_changes and _generations tables (letters, digits, underscores, dashes and spaces, "
        f"at most {MAX_TABLE_NAME_BYTES} bytes); use {fixed[:80]!r}, for example."
    )


def _check_url(value: str | None, setting: str, example: str) -> None:
    if value and not _URL.fullmatch(value):
        raise ConfigError(f"{setting} {value!r} is not an http(s) URL; write it as {example}.")


def _validate_columns(columns: ColumnsConfig) -> None:
    _check_names(columns.promote, "[columns] promote", "attribute")
    for attribute, column_type in columns.types.items():
        if not attribute:
            raise ConfigError('[columns] types names an empty attribute; remove the "" entry.')
        if column_type.upper() not in COLUMN_TYPES:
            raise ConfigError(
                f"[columns] types: attribute {attribute!r} has type {column_type!r}; "
                f"use one of {', '.join(COLUMN_TYPES)}."
            )


def _check_names(names: tuple[str, ...], setting: str, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if not name:
            raise ConfigError(f"{setting} holds an empty name; remove it, or name the {what}.")
        if name in seen:
            raise ConfigError(f"{setting} lists {name!r} twice; list each {what} once.")
        seen.add(name)


def check_column_types(
    columns: ColumnsConfig, keys: Sequence[str], promoted: Sequence[str] | None = None
) -> None:
    """Refuse ``[columns] types`` entries for attributes that are neither promoted (``promoted``,
    default ``[columns] promote``; :attr:`Config.promoted_attributes` adds the entities') nor
    among the key attributes ``keys``: no column is made for them, so the type would do nothing.

    Called by :func:`load_config` when ``[source] keys`` names the keys, and with the keys
    DescribeTable gives by ``ddb2bq init`` (:func:`ddb2bq.bigquery.tables.initial_layout`).

    >>> check_column_types(ColumnsConfig(promote=("status",), types={"total": "NUMERIC"}), ["pk"])
    Traceback (most recent call last):
    ...
    ddb2bq.exceptions.ConfigError: [columns] types gives 'total' a type, but 'total' is not in [columns] promote ...
    """
    promote = columns.promote if promoted is None else promoted
    for attribute in columns.types:
        if attribute not in promote and attribute not in keys:
            raise ConfigError(
                f"[columns] types gives {attribute!r} a type, but {attribute!r} is not in "
                f"[columns] promote nor a key attribute ({', '.join(keys)}); add it to promote "
                "or remove its type."
            )


def _validate_dead_letters(settings: DeadLettersConfig) -> None:
    if settings.kind == "local" and not settings.path.strip():
        raise ConfigError(
            '[dead_letters] path is empty; give a directory (default "dead-letters"), or '
            'choose kind = "s3" or "sqs".'
        )
    if settings.kind == "s3" and not settings.s3_bucket:
        raise ConfigError('[dead_letters] kind = "s3" needs s3_bucket: the bucket to write to.')


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
    if not settings.code_key.strip():
        raise ConfigError(
            "[lambda] code_key is empty; give the S3 key of the zip (default "
            '"ddb2bq/ddb2bq-lambda.zip").'
        )


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
