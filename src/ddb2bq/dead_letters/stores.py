"""The dead-letter store ``[dead_letters]`` describes: a local folder, S3 or SQS.

>>> dead_letters_from_config(DeadLettersConfig(kind="local", path="dead-letters"))  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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
    only when a kind needs one and none is given, and then at their first call
    (:class:`LazyClient`)."""
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


def _boto3(service: str, region: str | None, endpoint_url: str | None) -> LazyClient:
    return LazyClient(service, region, endpoint_url)


class LazyClient:
    """A boto3 client made at its first call, not with the sink: importing boto3 and making a
    client cost a Lambda function's first batch about 230 to 320 ms (docs/lambda.md), and most
    batches write no dead letter.

    ``client.method`` is a function that makes the client (once, under a lock: boto3's default
    session is not thread-safe), then calls the method; so whatever making it raises (no
    region, no credentials) is raised by the call, where the sinks turn it into an error that
    names the bucket or queue.
    """

    def __init__(self, service: str, region: str | None, endpoint_url: str | None) -> None:
        self.service = service
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return getattr(self.made(), name)(*args, **kwargs)

        return method

    def made(self) -> Any:
        """The boto3 client, made now if it was not yet."""
        with self._lock:
            if self._client is None:
                import boto3  # noqa: PLC0415 (the aws extra; only the S3 and SQS kinds need it)

                self._client = boto3.client(
                    self.service, region_name=self._region, endpoint_url=self._endpoint_url
                )
            return self._client


def read_dead_letters(store: DeadLetterStore, table: str | None = None) -> list[DeadLetter]:
    """Every letter in ``store`` (of ``table``), for a look before a replay."""
    return list(store.read(table))
