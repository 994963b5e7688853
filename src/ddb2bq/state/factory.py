"""The state store a setting names (``[runner] checkpoints``): a file path (SQLite) or
``dynamodb://TABLE``; and the generation a runtime writes with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError
from ddb2bq.state.dynamodb import DynamoDBStateStore
from ddb2bq.state.dynamodb_errors import translate
from ddb2bq.state.errors import StateError
from ddb2bq.state.generation import Generation
from ddb2bq.state.model import StateStore
from ddb2bq.state.sqlite import SqliteStateStore

DYNAMODB_SCHEME = "dynamodb://"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")  # DynamoDB's own rule for table names


def state_store_from_setting(
    value: str | Path, *, dynamodb_client_factory: Callable[[], Any] | None = None
) -> StateStore:
    """The store ``value`` names: ``dynamodb://TABLE`` is a DynamoDB table, reached with the client
    ``dynamodb_client_factory()`` returns (default: ``boto3.client("dynamodb")``); anything else
    is the path of a SQLite file (``~`` expanded, relative to the working directory).

    >>> state_store_from_setting("dynamodb://ddb2bq-state", dynamodb_client_factory=object)
    DynamoDBStateStore(table_name='ddb2bq-state')
    >>> state_store_from_setting("s3://bucket/state")
    Traceback (most recent call last):
    ...
    ddb2bq.exceptions.ConfigError: The state store setting 's3://bucket/state' is neither a file path nor dynamodb://TABLE; give one of those.
    """
    text = str(value).strip()
    if not text:
        raise ConfigError("The state store setting is empty; give a file path or dynamodb://TABLE.")
    if text.startswith(DYNAMODB_SCHEME):
        name = text.removeprefix(DYNAMODB_SCHEME)
        if not _TABLE_NAME.fullmatch(name):
            raise ConfigError(
                f"The state store setting {text!r} names no valid DynamoDB table (3 to 255 "
                "letters, digits, '_', '-' or '.'); write dynamodb://TABLE."
            )
        if dynamodb_client_factory is None:
            return DynamoDBStateStore(_default_dynamodb_client(name), name)
        return DynamoDBStateStore(dynamodb_client_factory(), name)
    if _SCHEME.match(text):
        raise ConfigError(
            f"The state store setting {text!r} is neither a file path nor dynamodb://TABLE; "
            "give one of those."
        )
    return SqliteStateStore(text)


def _default_dynamodb_client(table_name: str) -> Any:
    try:
        import boto3  # noqa: PLC0415 (optional dependency, and slow to import)
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415
    except ImportError as exc:
        raise StateError(
            f"The DynamoDB state table {table_name!r} needs boto3; install ddb2bq[aws], "
            "or give a file path instead."
        ) from exc
    try:
        return boto3.client("dynamodb")
    except BotoCoreError as exc:  # no region, most often
        raise translate(exc, table_name, "connecting") from exc


def generation_of(config: Config, *, store: StateStore | None = None) -> Generation:
    """The generation of ``config``'s table: ``[source] generation`` raised by the one stored in
    ``[runner] checkpoints`` (``store`` replaces that store).

    A SQLite file that does not exist yet is not created for this: without it, the configured
    value is the generation (a runtime that raises it, the runner, creates the file).

    >>> generation_of(Config()).current()  # doctest: +SKIP
    0
    """
    table = config.source.table or config.target_table
    if store is None:
        setting = config.runner.checkpoints
        if setting.startswith(DYNAMODB_SCHEME) or Path(setting).expanduser().exists():
            store = state_store_from_setting(setting)
    return Generation(config.source.generation, store, table)
