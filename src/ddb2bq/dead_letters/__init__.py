"""Dead letters: where changes that cannot be written go, whole, and how they are read back.

A dead letter is one JSON object (see :mod:`~ddb2bq.sinks.dead_letters.format`)::

    {"table": "orders", "error": "BigQuery rejected the row of event e1 (key Id='7') ...",
     "failed_at": "2024-05-01T12:00:00.000000Z", "failed_at_us": 1714564800000000,
     "source": "lambda", "event_id": "e1", "keys": {"Id": {"N": "7"}},
     "record": {... the original input record, as it came ...}}

``source`` names the record's format (``lambda``, ``kinesis``, ``getrecords``, ``export``,
``scan``) so ``ddb2bq replay-dead-letters`` can parse it again. :func:`to_json` keeps every
record JSON-able without loss: ``bytes`` become base64 text, ``datetime`` ISO 8601 text,
``Decimal`` its exact text, sets sorted lists.

==============  ==============================================================================
kind            where
==============  ==============================================================================
``local``       ``<path>/<table>/<YYYY-MM-DD>.jsonl``, appended under a lock and fsync'd
``s3``          ``s3://<bucket>/<prefix><table>/<YYYY-MM-DD>/<failed_at_us>-<uuid>.jsonl``, one
                object per batch
``sqs``         one message per letter (batches of 10, each body under 256 KB); a bigger letter
                goes to S3 when ``s3_bucket`` is set, else it is an error naming its key
==============  ==============================================================================

Each kind is also a :class:`DeadLetterStore`: :meth:`~DeadLetterStore.claim` takes the letters
of a table for a replay (a local file is renamed aside, an SQS message hidden) and
:meth:`~DeadLetterStore.settle` removes them or puts back those that still fail, with their new
error. A replay interrupted half-way leaves its claimed letters in place to be claimed again.
"""

from __future__ import annotations

from typing import Any

from ddb2bq.config import DeadLettersConfig
from ddb2bq.exceptions import TerminalError
from ddb2bq.sinks.base import DeadLetter
from ddb2bq.sinks.dead_letters.aws import S3DeadLetters, SqsDeadLetters
from ddb2bq.sinks.dead_letters.format import (
    Claim,
    DeadLetterStore,
    decode_letter,
    encode_letter,
    to_json,
    with_error,
)
from ddb2bq.sinks.dead_letters.local import LocalDeadLetters

__all__ = [
    "Claim",
    "DeadLetterStore",
    "LocalDeadLetters",
    "S3DeadLetters",
    "SqsDeadLetters",
    "dead_letters_from_config",
    "decode_letter",
    "encode_letter",
    "read_dead_letters",
    "to_json",
    "with_error",
]


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
