"""Structured logs and CloudWatch metrics for the Lambda function.

Logs are one JSON object per line (CloudWatch Logs Insights parses them as they are)::

    {"time": "2026-11-30T12:00:00.123456Z", "level": "INFO", "logger": "ddb2bq.aws_lambda",
     "message": "Batch done.", "request_id": "8f5...", "records": 100, "written": 100}

Items are user data: nothing here logs an image or an attribute value; messages carry counts,
event ids and sequence numbers. Fields passed with ``extra=`` become top-level keys.

Metrics are printed in CloudWatch Embedded Metric Format (one JSON object on stdout per batch):
CloudWatch turns them into metrics of namespace ``ddb2bq``, dimension ``Table``, without any API
call or extra permission.

==========================  ============  ===================================================
metric                      unit          meaning
==========================  ============  ===================================================
``Records``                 Count         stream records in the batch
``Bytes``                   Bytes         their size (``SizeBytes``; Kinesis: payload size)
``ChangelogRowsWritten``    Count         changes written to the changelog
``DeadLetters``             Count         changes sent to the dead letters
``RetryableFailures``       Count         changes left for Lambda to retry
``Retries``                 Count         requests the writers sent again
``BytesSent``               Bytes         request bytes sent to BigQuery
``LagMax`` / ``LagAverage`` Milliseconds  now minus ``ApproximateCreationDateTime``
``Duration``                Milliseconds  time spent on the batch
==========================  ============  ===================================================
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from ddb2bq.classes import data_class
from ddb2bq.pipeline import BatchResult

NAMESPACE = "ddb2bq"
logger = logging.getLogger(__name__)
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ddb2bq_request_id", default=None
)
_STANDARD = frozenset({*vars(logging.makeLogRecord({})), "message", "asctime"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, ``extra`` fields.

    >>> record = logging.makeLogRecord({"msg": "Batch done.", "levelname": "INFO", "records": 3})
    >>> JsonFormatter().format(record)  # doctest: +ELLIPSIS
    '{"time":"...","level":"INFO","logger":null,"message":"Batch done.","records":3}'
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _REQUEST_ID.get()
        if request_id:
            document["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure_logging(stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Send the ``ddb2bq`` loggers' records to ``stream`` (stdout) as JSON lines, once.

    The records do not propagate to the root logger, where the Lambda runtime's own handler
    would print them a second time in its text format.
    """
    logger = logging.getLogger("ddb2bq")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Tag every log line written inside the block with the invocation's request id."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


@data_class(frozen=True, slots=True)
class BatchMetrics:
    """What one batch did, for the metrics line and the summary log."""

    records: int
    bytes: int
    changelog_rows_written: int
    dead_letters: int
    retryable_failures: int
    retries: int
    bytes_sent: int
    lag_max_ms: float | None
    lag_average_ms: float | None
    duration_ms: float


def batch_metrics(
    result: BatchResult, *, records: int, size: int, lags_ms: Sequence[float], duration_ms: float
) -> BatchMetrics:
    """The metrics of one processed batch: ``records`` in, ``size`` bytes, the lag of each
    change (now minus its change time), the time the batch took."""
    return BatchMetrics(
        records=records,
        bytes=size,
        changelog_rows_written=result.count("written"),
        dead_letters=result.count("dead_lettered"),
        retryable_failures=result.count("retryable"),
        retries=result.retries,
        bytes_sent=result.bytes_sent,
        lag_max_ms=max(lags_ms) if lags_ms else None,
        lag_average_ms=sum(lags_ms) / len(lags_ms) if lags_ms else None,
        duration_ms=duration_ms,
    )


def log_batch(
    result: BatchResult, metrics: BatchMetrics, *, retry_from: str | None, runtime: str
) -> None:
    """One summary line per batch: counts, and where ``runtime`` resumes when it must retry."""
    counts = {
        "records": metrics.records,
        "written": metrics.changelog_rows_written,
        "dead_lettered": metrics.dead_letters,
        "retryable": metrics.retryable_failures,
        "lag_max_ms": metrics.lag_max_ms,
    }
    first = result.first_retryable
    if first is None or retry_from is None:
        logger.info("Batch done.", extra=counts)
        return
    reason = result.outcomes[first].reason
    logger.warning("%s will retry from %s: %s", runtime, retry_from, reason, extra=counts)


_METRICS = (
    ("Records", "records", "Count"),
    ("Bytes", "bytes", "Bytes"),
    ("ChangelogRowsWritten", "changelog_rows_written", "Count"),
    ("DeadLetters", "dead_letters", "Count"),
    ("RetryableFailures", "retryable_failures", "Count"),
    ("Retries", "retries", "Count"),
    ("BytesSent", "bytes_sent", "Bytes"),
    ("LagMax", "lag_max_ms", "Milliseconds"),
    ("LagAverage", "lag_average_ms", "Milliseconds"),
    ("Duration", "duration_ms", "Milliseconds"),
)


def emf_document(
    metrics: BatchMetrics, table: str, timestamp_ms: int | None = None
) -> dict[str, Any]:
    """The Embedded Metric Format object for one batch (metrics without a value are left out).

    >>> m = BatchMetrics(3, 120, 3, 0, 0, 0, 900, 1500.0, 1000.0, 12.5)
    >>> emf_document(m, "orders", 0)["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    [['Table']]
    """
    values = {name: getattr(metrics, field) for name, field, _ in _METRICS}
    present = [(name, unit) for name, _, unit in _METRICS if values[name] is not None]
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Table"]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in present],
                }
            ],
        },
        "Table": table,
        **{name: values[name] for name, _ in present},
    }


def print_metrics(metrics: BatchMetrics, table: str, stream: IO[str] | None = None) -> None:
    """Print the batch's metrics line (Embedded Metric Format) to ``stream`` (stdout)."""
    out = stream or sys.stdout
    out.write(orjson.dumps(emf_document(metrics, table)).decode() + "\n")
    out.flush()
