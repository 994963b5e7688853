"""Reading one shard: iterators from checkpoints, GetRecords pages, and what each error means.

:class:`ShardCursor` keeps one shard's place: the checkpoint (the last record written or
dead-lettered), the last record read into memory, the iterator, and the records read but not yet
settled (BigQuery asked for a retry). :func:`read_page` makes one GetRecords call for it and
turns the stream's errors into :class:`Read` outcomes:

==================================  =========================================================
answer                              what the runner does
==================================  =========================================================
records                             hand them to the pipeline
empty page, iterator given          the shard is idle (open) or not there yet: poll later
no ``NextShardIterator``            the shard is closed and read to its end
ExpiredIteratorException            a new iterator AFTER the last record read, at once
TrimmedDataAccessException          a gap: changes after the checkpoint are lost
ResourceNotFoundException           the shard is gone: a gap unless it was read to its end
LimitExceeded, ProvisionedThrough-  back off with jitter, then the same call again
putExceeded
InternalServerError, 5xx, network   back off with jitter, then again
==================================  =========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ddb2bq.dynamodb.client import StreamsClient
from ddb2bq.dynamodb.connect import error_code, is_unreachable
from ddb2bq.exceptions import Ddb2bqError

THROTTLED = frozenset(("LimitExceededException", "ProvisionedThroughputExceededException"))
TRANSIENT = frozenset(("InternalServerError", "ServiceUnavailable", "ThrottlingException"))

ReadKind = Literal["records", "idle", "ended", "throttled", "transient", "trimmed", "gone"]


class StreamError(Ddb2bqError):
    """DynamoDB Streams refused a call for a reason retrying will not fix (access denied, a bad
    request): the message names the stream, the shard and the error."""


@dataclass
class ShardCursor:
    """One shard's place in the runner (mutable: the runner's own state, one per shard)."""

    shard_id: str
    parent_id: str | None
    checkpoint: str | None = None
    """The last record written or dead-lettered: a restart resumes after it."""
    checkpoint_at: float = 0.0
    """When the checkpoint was last saved (or, for an idle shard, confirmed)."""
    last_read: str | None = None
    """The last record read into memory: an expired iterator is renewed after it."""
    iterator: str | None = None
    pending: list[Mapping[str, Any]] = field(default_factory=list)
    """Records read whose changes BigQuery has not settled yet (retryable), in order."""
    ended: bool = False
    """GetRecords answered without NextShardIterator: nothing more will come."""
    finished: bool = False
    """Ended and every record settled: children may be read."""
    due_at: float = 0.0
    empty_pages: int = 0
    throttled: int = 0
    retries: int = 0
    newest_change_at: float | None = None
    """``ApproximateCreationDateTime`` of the newest record read (for lag and catch-up)."""


@dataclass(frozen=True, slots=True)
class Read:
    """What one GetRecords call gave."""

    kind: ReadKind
    records: tuple[Mapping[str, Any], ...] = ()
    error: str = ""


def read_page(streams: StreamsClient, stream_arn: str, cursor: ShardCursor, limit: int) -> Read:
    """One GetRecords page for ``cursor`` (getting an iterator first when it has none)."""
    try:
        if cursor.iterator is None:
            cursor.iterator = _iterator(streams, stream_arn, cursor)
        answer = streams.get_records(ShardIterator=cursor.iterator, Limit=limit)
    except Exception as exc:  # noqa: BLE001 (botocore's errors, classified below)
        return _failed(exc, cursor, stream_arn)
    records = tuple(answer.get("Records") or ())
    cursor.iterator = answer.get("NextShardIterator") or None
    cursor.ended = cursor.iterator is None  # a closed shard read to its end: nothing more comes
    if records:
        cursor.last_read = sequence_number(records[-1]) or cursor.last_read
        return Read("records", records)
    return Read("ended" if cursor.ended else "idle")


def _iterator(streams: StreamsClient, stream_arn: str, cursor: ShardCursor) -> str:
    """An iterator after the last record read (or checkpointed), else at the shard's start."""
    after = cursor.last_read or cursor.checkpoint
    if after is None:
        answer = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=cursor.shard_id, ShardIteratorType="TRIM_HORIZON"
        )
    else:
        answer = streams.get_shard_iterator(
            StreamArn=stream_arn,
            ShardId=cursor.shard_id,
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            SequenceNumber=after,
        )
    return str(answer["ShardIterator"])


def _failed(exc: Exception, cursor: ShardCursor, stream_arn: str) -> Read:
    code = error_code(exc)
    text = f"{code or type(exc).__name__}: {exc}"
    if code == "ExpiredIteratorException":
        cursor.iterator = None  # renewed after the last record read, on the next call
        return Read("transient", error=text)
    if code == "TrimmedDataAccessException":
        return Read("trimmed", error=text)
    if code == "ResourceNotFoundException":
        return Read("gone", error=text)
    if code in THROTTLED:
        return Read("throttled", error=text)
    if code in TRANSIENT or is_unreachable(exc) or _server_error(exc):
        return Read("transient", error=text)
    raise StreamError(
        f"DynamoDB Streams refused to read shard {cursor.shard_id} of {stream_arn}: {text}"
    ) from exc


def sequence_number(record: Mapping[str, Any]) -> str | None:
    """A GetRecords record's ``dynamodb.SequenceNumber`` (None when it has none)."""
    body = record.get("dynamodb")
    number = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return str(number) if number is not None else None


def _server_error(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return isinstance(status, int) and status >= 500
