"""The dead-letter store ``[dead_letters]`` describes: a local folder, S3 or SQS.

>>> dead_letters_from_config(DeadLettersConfig(kind="local", path="dead-letters"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ddb2bq.config import DeadLettersConfig
from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters.aws import S3DeadLetters, SqsDeadLetters
from ddb2bq.dead_letters.format import DeadLetterStore
from ddb2bq.dead_letters.local import LocalDeadLetters
from ddb2bq.exceptions import TerminalError


def dead_letters_from_config(
    config: DeadLettersConfig,
    *,
    s3_client: Any = None,
    sqs_client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> LocalDeadLetters | S3DeadLetters | SqsDeadLetters:
    """The dead-letter sink (and store) ``[dead_letters]`` describes; boto3 clients are made
    only when a kind needs one and none is given."""
    if config.kind == "local":
        return LocalDeadLetters(config.path)
    s3 = None
    if config.kind == "s3" or config.s3_bucket:
        s3_client = s3_client or _boto3("s3", region, endpoint_url)
        s3 = S3DeadLetters(s3_client, config.s3_bucket, config.s3_prefix)
    if config.kind == "s3":
        if not config.s3_bucket:
            raise TerminalError('[dead_letters] kind = "s3" needs s3_bucket.')
        assert s3 is not None
        return s3
    if not config.sqs_queue_url:
        raise TerminalError('[dead_letters] kind = "sqs" needs sqs_queue_url.')
    sqs_client = sqs_client or _boto3("sqs", region, endpoint_url)
    return SqsDeadLetters(sqs_client, config.sqs_queue_url, overflow=s3)


def _boto3(service: str, region: str | None, endpoint_url: str | None) -> Any:
    import boto3  # noqa: PLC0415 (the aws extra; only the S3 and SQS kinds need it)

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def read_dead_letters(store: DeadLetterStore, table: str | None = None) -> list[DeadLetter]:
    """Every letter in ``store`` (of ``table``), for a look before a replay."""
    return list(store.read(table))
