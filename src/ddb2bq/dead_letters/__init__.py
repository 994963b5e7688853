"""Dead letters: where changes that cannot be written go, whole, and how they are read back.

A dead letter is one JSON object (see :mod:`~ddb2bq.dead_letters.format`)::

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
``local``       ``<path>/<table>/<YYYY-MM-DD>-<failed_at_us>-<id>.jsonl``, one file per send,
                written whole (temporary name, fsync, rename) or not at all
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

from ddb2bq.dead_letters.aws import S3DeadLetters, SqsDeadLetters
from ddb2bq.dead_letters.format import (
    Claim,
    DeadLetterStore,
    decode_letter,
    encode_letter,
    to_json,
    with_error,
)
from ddb2bq.dead_letters.local import LocalDeadLetters
from ddb2bq.dead_letters.stores import dead_letters_from_config, read_dead_letters

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
