"""The Lambda function: ``ddb2bq.aws_lambda.handler`` on a DynamoDB stream (or a Kinesis Data
Stream for DynamoDB), writing every change into BigQuery through the one
:class:`~ddb2bq.pipeline.Pipeline` (``ordered=True``: a batch is one shard's records, in order).

The contract with Lambda (event source mapping with ``ReportBatchItemFailures``): the answer
names at most one record, ``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``,
the first change that must be tried again; Lambda re-invokes with it and everything after it, so
nothing after it is acted upon (in particular not dead-lettered: it is delivered again). A
terminal failure (a record that cannot be parsed, converted, or that BigQuery refuses) goes whole
to the dead letters and is not reported: one bad item never blocks its shard. The identifier is
``dynamodb.SequenceNumber`` (DynamoDB Streams) or ``kinesis.sequenceNumber`` (Kinesis).

Per container (cold start): the configuration is read from the ``DDB2BQ_*`` environment once and
validated (a bad setting is logged as one clear error and fails every invocation); the pipeline
(credentials, clients, the table layout) is made at the first batch, so the import of this
module stays cheap (:mod:`ddb2bq.bigquery.factory` says what each writer imports). With the
default writer (``storage_write``, no ``cdc`` mirror) the container's state also imports the
insertAll write path and starts loading the Storage Write client in a background thread; the
changelog goes through insertAll until it is loaded (:mod:`ddb2bq.bigquery.warm_start`). In a
Lambda runtime (``AWS_LAMBDA_RUNTIME_API`` set) that state is made when this module is imported,
in Lambda's init phase; elsewhere at the first invocation. Per invocation: a fresh response, a
summary log line and one metrics line (:mod:`ddb2bq.observability`).

The invocation's deadline: the handler reads ``context.get_remaining_time_in_millis()`` and gives
the pipeline a :class:`~ddb2bq.contract.Deadline` that much later less a safety margin (10 % of
it, at least 1 s: time to send the dead letters already due, log and answer). Schema reads,
requests and their retries stop there, and the batch is answered with the first change not
written, instead of Lambda killing the function mid-write and retrying the whole batch.

Example (what Lambda does)::

    response = handler({"Records": [...]}, context)
    # {"batchItemFailures": []} when every change was written or dead-lettered
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from ddb2bq import heap
from ddb2bq.classes import data_class
from ddb2bq.config import Config, check_function_config, load_config
from ddb2bq.contract import Deadline, deadline_scope
from ddb2bq.credentials import CredentialsProvider
from ddb2bq.exceptions import ConfigError, RecordError, RetryableError
from ddb2bq.observability import (
    batch_metrics,
    configure_logging,
    log_batch,
    print_metrics,
    request_context,
)
from ddb2bq.pipeline import BatchResult, Outcome, Pipeline, Unparsed
from ddb2bq.records import Change, from_lambda_record, now_micros

if TYPE_CHECKING:
    from ddb2bq.bigquery.warm_start import StorageWriteLoader

logger = logging.getLogger(__name__)

SOURCE = "lambda"


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

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


PipelineFactory = Callable[[Config, CredentialsProvider], Pipeline]


@data_class()
class Handler:
    """The function's logic for one container; :func:`handler` holds the default one.

    ``pipeline_factory`` makes the pipeline at the first batch, from the configuration and the
    container's Google credentials (default: :func:`bigquery_pipeline`, given
    ``storage_loader``: the cold start's background load of Storage Write, see
    :func:`container_handler`). ``margin`` (a fraction of the remaining time, at least
    ``min_margin_s`` seconds) is kept free before the invocation's end; ``monotonic`` is the
    deadline's clock.
    """

    config: Config
    pipeline_factory: PipelineFactory | None = None
    clock: Callable[[], int] = now_micros
    metrics_stream: IO[str] | None = None
    credentials: CredentialsProvider | None = None
    margin: float = 0.10
    min_margin_s: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    storage_loader: StorageWriteLoader | None = None
    _pipeline: Pipeline | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.credentials is None:
            self.credentials = CredentialsProvider(
                self.config.google
            )  # the function's region: AWS_REGION

    def __call__(self, event: StreamEvent, context: LambdaContext | None = None) -> BatchResponse:
        """Handle one batch; the response is new on every call."""
        response: BatchResponse = {"batchItemFailures": []}
        request_id = getattr(context, "aws_request_id", None)
        with request_context(request_id), self._loader_paused():
            records = _records_of(event)
            if records:
                failed = self._handle(records, self._deadline(context))
                if failed is not None:
                    response["batchItemFailures"].append({"itemIdentifier": failed})
        return response

    def _loader_paused(self) -> contextlib.AbstractContextManager[None]:
        """The invocation comes first: a warm start's loader waits meanwhile, except while
        the handler waits for BigQuery (:mod:`ddb2bq.bigquery.warm_start`)."""
        loader = self.storage_loader
        return contextlib.nullcontext() if loader is None or loader.done else loader.paused()

    def _deadline(self, context: LambdaContext | None) -> Deadline | None:
        """When the batch must be settled: the invocation's end less the safety margin."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining):
            return None
        seconds = remaining() / 1000
        margin = max(seconds * self.margin, self.min_margin_s)
        why = f"the Lambda invocation's deadline ({seconds:.1f} s left, less {margin:.1f} s)"
        return Deadline.after(max(seconds - margin, 0.0), why, self.monotonic)

    def _handle(
        self, records: Sequence[Mapping[str, Any]], deadline: Deadline | None
    ) -> str | None:
        started = time.perf_counter()
        items = [self._parse(index, record) for index, record in enumerate(records)]
        with deadline_scope(deadline):
            result = self._process(items, deadline)
        first = result.first_retryable
        identifier = None if first is None else _identifier(records[first], first)
        lags = [(self.clock() - c.changed_at_us) / 1000 for c in items if isinstance(c, Change)]
        metrics = batch_metrics(
            result,
            records=len(records),
            size=sum(_record_bytes(record) for record in records),
            lags_ms=lags,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        where = None if first is None else f"sequence number {identifier} (record {first})"
        log_batch(result, metrics, retry_from=where, runtime="Lambda")
        print_metrics(metrics, self._table_name(), self.metrics_stream)
        return identifier

    def _parse(self, index: int, record: Mapping[str, Any]) -> Change | Unparsed:
        generation = self.config.source.generation
        try:
            return from_lambda_record(record, generation=generation, index=index)
        except RecordError as exc:
            event_id = record.get("eventID") if isinstance(record, Mapping) else None
            return Unparsed(record, str(exc), event_id if isinstance(event_id, str) else "")

    def _process(
        self, items: Sequence[Change | Unparsed], deadline: Deadline | None
    ) -> BatchResult:
        try:
            pipeline = self._pipeline_for_writes()
        except RetryableError as exc:
            logger.warning("The batch will be retried: %s", exc)
            return BatchResult(tuple(Outcome("retryable", str(exc)) for _ in items))
        return pipeline.process(items, ordered=True, deadline=deadline)

    def _pipeline_for_writes(self) -> Pipeline:
        if self._pipeline is None:
            assert self.credentials is not None  # set by __post_init__
            factory = self.pipeline_factory or functools.partial(
                bigquery_pipeline, storage_loader=self.storage_loader
            )
            self._pipeline = factory(self.config, self.credentials)
        return self._pipeline

    def _table_name(self) -> str:
        return self.config.source.table or self.config.target_table


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
    if not isinstance(record, Mapping):
        return 0  # not a record at all: parsing names it and it is dead-lettered
    body = record.get("dynamodb")
    if isinstance(body, Mapping) and isinstance(body.get("SizeBytes"), int):
        return int(body["SizeBytes"])
    kinesis = record.get("kinesis")
    if isinstance(kinesis, Mapping) and isinstance(kinesis.get("data"), str):
        return len(kinesis["data"]) * 3 // 4
    return 0


def bigquery_pipeline(
    config: Config,
    credentials: CredentialsProvider,
    *,
    storage_loader: StorageWriteLoader | None = None,
) -> Pipeline:
    """The pipeline of the configuration: BigQuery, and ``[dead_letters]`` (S3 or SQS in a
    deployed function). Imported and made at the first batch, not at cold start; the changelog
    goes through insertAll until ``storage_loader`` is done, when given."""
    from ddb2bq.bigquery.factory import pipeline_from_config  # noqa: PLC0415 (lazy: cold start)
    from ddb2bq.dead_letters.stores import dead_letters_from_config  # noqa: PLC0415

    dead_letters = dead_letters_from_config(config.dead_letters)
    return pipeline_from_config(
        config,
        dead_letters,
        credentials=credentials,
        source=SOURCE,
        storage_loader=storage_loader,
    )


def start_warm_up(config: Config) -> StorageWriteLoader | None:
    """The cold start's warm-up: import the insertAll write path (and the dead letters) here,
    then load the Storage Write client in the background; None when it does not apply
    (:func:`ddb2bq.bigquery.warm_start.applies`) or cannot start (logged: the first batch then
    loads Storage Write itself)."""
    try:
        import ddb2bq.dead_letters.stores  # noqa: F401, PLC0415 (the write path: before the thread)
        from ddb2bq.bigquery import warm_start  # noqa: PLC0415 (lazy: cold start)

        return warm_start.start_loader(config)
    except (ImportError, RuntimeError) as exc:  # a broken package; no thread to be had
        logger.error("The Storage Write warm-up did not start (%s: %s).", type(exc).__name__, exc)
        return None


# --- the entry point ---------------------------------------------------------------------------

_container: Handler | None = None


def container_handler(environ: Mapping[str, str] | None = None) -> Handler:
    """The container's handler, made on first use from the ``DDB2BQ_*`` environment."""
    global _container  # noqa: PLW0603 (one per container, by design: the cold-start state)
    if _container is None:
        configure_logging()
        try:
            config = load_config(environ=environ)
            check_function_config(config)
        except ConfigError as exc:
            logger.error("The function's configuration is invalid: %s", exc, extra={"fatal": True})
            raise
        logger.info("Cold start.", extra=config.summary())
        _container = Handler(config, storage_loader=start_warm_up(config))
    return _container


def handler(event: StreamEvent, context: LambdaContext | None = None) -> BatchResponse:
    """The Lambda entry point (``ddb2bq.aws_lambda.handler``)."""
    return container_handler()(event, context)


def _init_phase(environ: Mapping[str, str]) -> None:
    """In a Lambda runtime, make the container's state now, in Lambda's init phase, so the
    Storage Write client starts loading before the first event; a bad configuration is logged
    here and again by every invocation, which fails with it.

    Then what the init phase made (the modules, their classes and functions, the container's
    state: tens of thousands of objects that live as long as the container) is moved out of
    the cyclic garbage collector's reach (``gc.freeze``): else each full collection walks them
    all again, and the runtime's parse of every event's JSON (about 30 objects per record) sets
    off several per batch. Refcounting still frees them; only a cycle made at init is kept.
    """
    if environ.get("AWS_LAMBDA_RUNTIME_API"):
        with contextlib.suppress(ConfigError):  # logged; each invocation reports it again
            container_handler()
        heap.freeze_for_good()


_init_phase(os.environ)


__all__ = [
    "BatchItemFailure",
    "BatchResponse",
    "DynamoDBStreamRecord",
    "Handler",
    "KinesisRecord",
    "StreamEvent",
    "handler",
]
