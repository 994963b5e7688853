"""The Lambda function: ``ddb2bq.aws_lambda.handler`` on a DynamoDB stream (or a Kinesis Data
Stream for DynamoDB), writing every change into BigQuery.

The contract with Lambda (event source mapping with ``ReportBatchItemFailures``):

- each invocation gets an ordered batch of one shard's records; the answer names at most one
  record, ``{"batchItemFailures": [{"itemIdentifier": <its sequence number>}]}``: the first
  change that must be tried again. Lambda then re-invokes with that record and everything after
  it, so nothing after a failed record counts as done (a record after it that was written is
  written again: same ``event_id`` and ``seq``, which the mirror's latest-``seq`` rule absorbs);
- a terminal failure (a record that cannot be parsed, converted or that BigQuery refuses) goes
  whole to the dead letters and is not reported: one bad item never blocks its shard;
- a retryable failure (quota, 5xx, timeout, dead letters unreachable) is reported.
  The identifier is ``dynamodb.SequenceNumber`` (DynamoDB Streams) or ``kinesis.sequenceNumber``
  (Kinesis).

Per container (cold start): the configuration is read from the ``DDB2BQ_*`` environment once and
validated (a bad setting is logged as one clear error and fails every invocation); the Google
credentials, the BigQuery clients, the table layout and the sink are made at the first write, so
the import of this module stays cheap. The layout is read, and ``insert_all`` rows are sent, by a
light REST client on the standard library (:mod:`ddb2bq.sinks.rest`): with ``[target] writer =
"insert_all"`` the Google client libraries are never imported, unless a schema evolution needs
them; Storage Write imports its gRPC client at the first write. Per invocation: a fresh
response, a summary log line and one metrics line (see :mod:`ddb2bq.observability`).

Example (what Lambda does)::

    response = handler({"Records": [...]}, context)
    # {"batchItemFailures": []} when every change was written or dead-lettered
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from ddb2bq.config import Config, load_config
from ddb2bq.credentials import CredentialsProvider
from ddb2bq.exceptions import ConfigError, RecordError, RetryableError
from ddb2bq.observability import (
    BatchMetrics,
    configure_logging,
    print_metrics,
    request_context,
)
from ddb2bq.records import Change, from_lambda_record, now_micros
from ddb2bq.sinks.base import DeadLetter, DeadLetterSink, Writer, WriteResult

if TYPE_CHECKING:
    from ddb2bq.rows import Rows
    from ddb2bq.schema import TableLayout

logger = logging.getLogger(__name__)

SOURCE = "lambda"
Status = Literal["written", "dead_lettered", "retryable"]


# --- the Lambda contract -----------------------------------------------------------------------


class StreamRecordData(TypedDict, total=False):
    """``dynamodb`` of a DynamoDB Streams record (images in DynamoDB JSON, B as base64 text)."""

    ApproximateCreationDateTime: float
    Keys: dict[str, Any]
    NewImage: dict[str, Any]
    OldImage: dict[str, Any]
    SequenceNumber: str
    SizeBytes: int
    StreamViewType: str


class DynamoDBStreamRecord(TypedDict, total=False):
    """One record of a DynamoDB Streams event."""

    eventID: str
    eventName: Literal["INSERT", "MODIFY", "REMOVE"]
    eventVersion: str
    eventSource: Literal["aws:dynamodb"]
    awsRegion: str
    eventSourceARN: str
    dynamodb: StreamRecordData
    userIdentity: dict[str, str]


class KinesisData(TypedDict, total=False):
    """``kinesis`` of a Kinesis record; ``data`` is the base64 DynamoDB change JSON."""

    kinesisSchemaVersion: str
    partitionKey: str
    sequenceNumber: str
    data: str
    approximateArrivalTimestamp: float


class KinesisRecord(TypedDict, total=False):
    """One record of a Kinesis Data Streams event (Kinesis Data Streams for DynamoDB)."""

    kinesis: KinesisData
    eventSource: Literal["aws:kinesis"]
    eventVersion: str
    eventID: str
    eventName: str
    invokeIdentityArn: str
    awsRegion: str
    eventSourceARN: str


StreamRecord = DynamoDBStreamRecord | KinesisRecord


class StreamEvent(TypedDict):
    """The event of an event source mapping on a DynamoDB stream or a Kinesis stream."""

    Records: list[StreamRecord]


class BatchItemFailure(TypedDict):
    """The first record Lambda must deliver again."""

    itemIdentifier: str


class BatchResponse(TypedDict):
    """The partial batch response (``ReportBatchItemFailures``)."""

    batchItemFailures: list[BatchItemFailure]


class LambdaContext(Protocol):
    """The part of Lambda's context object the handler reads."""

    aws_request_id: str
    function_name: str


class Outcome(Protocol):
    """One change's fate, as the BigQuery sink reports it."""

    @property
    def status(self) -> Status: ...

    @property
    def reason(self) -> str: ...


class SinkResult(Protocol):
    """One outcome per change of the batch, in order."""

    @property
    def outcomes(self) -> tuple[Outcome, ...]: ...


class ChangeSink(Protocol):
    """What the handler writes through: :class:`ddb2bq.sinks.bigquery.BigQuerySink`."""

    def write(self, changes: Sequence[Change]) -> SinkResult:
        """Write ``changes``; one outcome per change."""
        ...


# --- write statistics --------------------------------------------------------------------------


@dataclass
class WriteCounters:
    """Running totals of the writers' results over the container's life (read as deltas)."""

    retries: int = 0
    bytes_sent: int = 0

    def snapshot(self) -> tuple[int, int]:
        """The current totals, to subtract from a later snapshot."""
        return self.retries, self.bytes_sent


class CountingWriter:
    """A :class:`~ddb2bq.sinks.base.Writer` that adds each result's retries and bytes to
    ``counters``, for the batch metrics."""

    def __init__(self, inner: Writer, counters: WriteCounters) -> None:
        self._inner = inner
        self._counters = counters

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Write through the wrapped writer and count."""
        result = self._inner.write(batch)
        self._counters.retries += result.retries
        self._counters.bytes_sent += result.bytes_sent
        return result


def counting(factory: Callable[[TableLayout], Writer], counters: WriteCounters) -> Any:
    """A writer factory whose writers count into ``counters``."""
    return lambda layout: CountingWriter(factory(layout), counters)


# --- the container -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink factory gets: the configuration, the dead letters, the write counters, and
    the container's Google credentials (resolved on first use, then kept)."""

    config: Config
    dead_letters: DeadLetterSink
    counters: WriteCounters
    credentials: CredentialsProvider


SinkFactory = Callable[[SinkContext], ChangeSink]
DeadLettersFactory = Callable[[Config], DeadLetterSink]


@dataclass
class _Parsed:
    index: int
    record: Mapping[str, Any]
    change: Change | None = None
    error: str = ""
    status: Status | None = None


@dataclass
class Handler:
    """The function's logic for one container; :func:`handler` holds the default one.

    ``sink_factory`` makes the sink at the first write (default: BigQuery from the
    configuration); ``dead_letters_factory`` the dead-letter sink (default: ``[dead_letters]``).
    """

    config: Config
    sink_factory: SinkFactory | None = None
    dead_letters_factory: DeadLettersFactory | None = None
    clock: Callable[[], int] = now_micros
    metrics_stream: IO[str] | None = None
    counters: WriteCounters = field(default_factory=WriteCounters)
    credentials: CredentialsProvider | None = None
    _sink: ChangeSink | None = field(default=None, init=False, repr=False)
    _dead_letters: DeadLetterSink | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.credentials is None:
            self.credentials = CredentialsProvider(self.config.google)

    def __call__(self, event: StreamEvent, context: LambdaContext | None = None) -> BatchResponse:
        """Handle one batch; the response is new on every call."""
        response: BatchResponse = {"batchItemFailures": []}
        request_id = getattr(context, "aws_request_id", None)
        with request_context(request_id):
            records = _records_of(event)
            if records:
                failed = self._handle(records)
                if failed is not None:
                    response["batchItemFailures"].append({"itemIdentifier": failed})
        return response

    def _handle(self, records: Sequence[Mapping[str, Any]]) -> str | None:
        started = time.perf_counter()
        before = self.counters.snapshot()
        parsed = [self._parse(index, record) for index, record in enumerate(records)]
        self._write(parsed)
        self._dead_letter_unparsed(parsed)
        first = next((p for p in parsed if p.status == "retryable"), None)
        identifier = None if first is None else _identifier(first.record, first.index)
        metrics = self._metrics(parsed, before, started)
        _log_batch(parsed, first, identifier, metrics)
        print_metrics(metrics, self._table_name(parsed), self.metrics_stream)
        return identifier

    def _parse(self, index: int, record: Mapping[str, Any]) -> _Parsed:
        generation = self.config.source.generation
        try:
            change = from_lambda_record(record, generation=generation, index=index)
        except RecordError as exc:
            return _Parsed(index, record, error=str(exc))
        return _Parsed(index, record, change)

    def _write(self, parsed: list[_Parsed]) -> None:
        pending = [p for p in parsed if p.change is not None]
        if not pending:
            return
        try:
            result = self._sink_for_writes().write([p.change for p in pending if p.change])
        except RetryableError as exc:
            logger.warning("The batch will be retried: %s", exc)
            for item in pending:
                item.status = "retryable"
            return
        for item, outcome in zip(pending, result.outcomes, strict=True):
            item.status = outcome.status
            if outcome.status != "written":
                logger.debug("Change %s: %s", _event_id(item), outcome.reason)

    def _dead_letter_unparsed(self, parsed: list[_Parsed]) -> None:
        bad = [p for p in parsed if p.change is None]
        if not bad:
            return
        now = self.clock()
        letters = [_unparsed_letter(p, self._table_name(parsed), now) for p in bad]
        try:
            self._dead_letter_sink().send(letters)
        except RetryableError as exc:
            logger.warning("The dead letters cannot be reached; retrying the records: %s", exc)
            status: Status = "retryable"
        else:
            status = "dead_lettered"
        for item in bad:
            item.status = status

    def _sink_for_writes(self) -> ChangeSink:
        if self._sink is None:
            factory = self.sink_factory or bigquery_sink
            assert self.credentials is not None  # set by __post_init__
            parts = SinkContext(
                self.config, self._dead_letter_sink(), self.counters, self.credentials
            )
            self._sink = factory(parts)
        return self._sink

    def _dead_letter_sink(self) -> DeadLetterSink:
        if self._dead_letters is None:
            factory = self.dead_letters_factory or dead_letters_from_config
            self._dead_letters = factory(self.config)
        return self._dead_letters

    def _metrics(
        self, parsed: list[_Parsed], before: tuple[int, int], started: float
    ) -> BatchMetrics:
        now = self.clock()
        lags = [(now - p.change.changed_at_us) / 1000 for p in parsed if p.change is not None]
        retries, bytes_sent = (a - b for a, b in zip(self.counters.snapshot(), before, strict=True))
        return BatchMetrics(
            records=len(parsed),
            bytes=sum(_record_bytes(p.record) for p in parsed),
            changelog_rows_written=sum(1 for p in parsed if p.status == "written"),
            dead_letters=sum(1 for p in parsed if p.status == "dead_lettered"),
            retryable_failures=sum(1 for p in parsed if p.status == "retryable"),
            retries=retries,
            bytes_sent=bytes_sent,
            lag_max_ms=max(lags) if lags else None,
            lag_average_ms=sum(lags) / len(lags) if lags else None,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    def _table_name(self, parsed: list[_Parsed]) -> str:
        tables = (p.change.table for p in parsed if p.change is not None and p.change.table)
        return self.config.source.table or next(tables, "") or self.config.target_table


def _records_of(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise RecordError("The event has no 'Records' list: is the function on a stream?")
    return records


def _identifier(record: Mapping[str, Any], index: int) -> str:
    """The record's ``itemIdentifier``: its DynamoDB or Kinesis sequence number."""
    for section, key in (("dynamodb", "SequenceNumber"), ("kinesis", "sequenceNumber")):
        body = record.get(section)
        if isinstance(body, Mapping) and isinstance(body.get(key), str):
            return str(body[key])
    # Without an identifier Lambda cannot resume at this record: fail the whole invocation.
    raise RecordError(
        "has no sequence number to report for a retry; failing the batch instead",
        record=f"record {index}",
    )


def _record_bytes(record: Mapping[str, Any]) -> int:
    body = record.get("dynamodb")
    if isinstance(body, Mapping) and isinstance(body.get("SizeBytes"), int):
        return int(body["SizeBytes"])
    kinesis = record.get("kinesis")
    if isinstance(kinesis, Mapping) and isinstance(kinesis.get("data"), str):
        return len(kinesis["data"]) * 3 // 4
    return 0


def _event_id(item: _Parsed) -> str:
    change = item.change
    return change.event_id if change is not None else str(item.record.get("eventID", item.index))


def _unparsed_letter(item: _Parsed, table: str, now: int) -> DeadLetter:
    return DeadLetter(
        table=table,
        error=f"The record cannot be parsed: {item.error}",
        failed_at_us=now,
        source=SOURCE,
        record=dict(item.record),
        event_id=str(item.record.get("eventID", "")),
    )


def _log_batch(
    parsed: list[_Parsed], first: _Parsed | None, identifier: str | None, metrics: BatchMetrics
) -> None:
    counts = {
        "records": metrics.records,
        "written": metrics.changelog_rows_written,
        "dead_lettered": metrics.dead_letters,
        "retryable": metrics.retryable_failures,
        "lag_max_ms": metrics.lag_max_ms,
    }
    for item in parsed:
        if item.status == "dead_lettered":
            logger.warning(
                "A change went to the dead letters (the reason is stored with it).",
                extra={"event_id": _event_id(item), "sequence_number": _sequence(item)},
            )
    if first is not None:
        logger.warning(
            "Lambda will retry from sequence number %s (record %d of %d).",
            identifier,
            first.index,
            len(parsed),
            extra=counts,
        )
    else:
        logger.info("Batch done.", extra=counts)


def _sequence(item: _Parsed) -> str | None:
    if item.change is not None and item.change.sequence_number:
        return item.change.sequence_number
    return None


# --- defaults: BigQuery and the dead letters from the configuration ---------------------------


def dead_letters_from_config(config: Config) -> DeadLetterSink:
    """The ``[dead_letters]`` sink (S3 or SQS in a deployed function)."""
    from ddb2bq.sinks.dead_letters import (  # noqa: PLC0415 (lazy: cold start)
        dead_letters_from_config as from_section,
    )

    return from_section(config.dead_letters)


def bigquery_sink(parts: SinkContext) -> Any:
    """The BigQuery sink of the configuration: clients, the changelog's layout, the writers.

    Made at the first write, not at cold start. The layout is read, and ``insertAll`` rows are
    streamed, by the light REST client (:mod:`ddb2bq.sinks.rest`); the full client is made only
    when a schema evolution needs it. So with ``[target] writer = "insert_all"`` (and a mirror
    other than ``cdc``) no Google client library is imported (google.cloud.bigquery,
    google.api_core, requests, gRPC); Storage Write imports its own (gRPC, protobuf,
    google.api_core) here.
    """
    from ddb2bq.sinks import clients  # noqa: PLC0415 (lazy: cold start)
    from ddb2bq.sinks.bigquery import BigQuerySink  # noqa: PLC0415
    from ddb2bq.sinks.tables import TableRefs, load_layout  # noqa: PLC0415

    config, counters = parts.config, parts.counters
    credentials = None if config.target.endpoint else parts.credentials.get()
    client = clients.rest_client(config, credentials)
    full_client = functools.partial(clients.bigquery_client, config, credentials)
    refs = TableRefs.from_config(config, client.project)
    layout = load_layout(client, refs, soft=config.target.deletes == "soft")
    needs_storage = config.target.writer == "storage_write" or config.target.mirror == "cdc"
    write_client = clients.bigquery_write_client(config, credentials) if needs_storage else None
    writer_for = clients.changelog_writer_for(config, client, write_client)
    mirror_for = None
    if config.target.mirror == "cdc":
        mirror_for = counting(clients.cdc_writer_for(config, client, write_client), counters)
    logger.info(
        "BigQuery sink ready.",
        extra={"changelog": str(refs.changes), "writer": config.target.writer},
    )
    return BigQuerySink(
        config,
        layout,
        full_client,
        counting(writer_for, counters),
        parts.dead_letters,
        mirror_writer_for=mirror_for,
        source=SOURCE,
    )


# --- the entry point ---------------------------------------------------------------------------

_container: Handler | None = None


def container_handler(environ: Mapping[str, str] | None = None) -> Handler:
    """The container's handler, made on first use from the ``DDB2BQ_*`` environment."""
    global _container  # noqa: PLW0603 (one per container, by design: the cold-start state)
    if _container is None:
        configure_logging()
        try:
            config = load_config(environ=environ)
            check_config(config)
        except ConfigError as exc:
            logger.error("The function's configuration is invalid: %s", exc, extra={"fatal": True})
            raise
        logger.info("Cold start.", extra=_config_summary(config))
        _container = Handler(config)
    return _container


def check_config(config: Config) -> None:
    """Refuse a configuration the function cannot run with, naming the variable to set."""
    if not config.target_table:
        raise ConfigError("Set DDB2BQ_SOURCE_TABLE (or DDB2BQ_TARGET_TABLE).")
    for key in ("project", "dataset"):
        if not getattr(config.target, key):
            raise ConfigError(f"Set DDB2BQ_TARGET_{key.upper()}: the BigQuery {key}.")
    if config.dead_letters.kind == "local":
        logger.warning(
            "Dead letters are kept on the container's disk (%s) and are lost with it; "
            "set DDB2BQ_DEAD_LETTERS_KIND to s3 or sqs.",
            config.dead_letters.path,
        )


def _config_summary(config: Config) -> dict[str, Any]:
    return {
        "table": config.source.table,
        "target": f"{config.target.project}.{config.target.dataset}.{config.target_table}",
        "mirror": config.target.mirror,
        "writer": config.target.writer,
        "dead_letters": config.dead_letters.kind,
        "credentials": config.google.credentials,
    }


def handler(event: StreamEvent, context: LambdaContext | None = None) -> BatchResponse:
    """The Lambda entry point (``ddb2bq.aws_lambda.handler``)."""
    return container_handler()(event, context)


__all__ = [
    "BatchItemFailure",
    "BatchResponse",
    "DynamoDBStreamRecord",
    "Handler",
    "KinesisRecord",
    "StreamEvent",
    "handler",
]
