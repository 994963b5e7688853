"""ddb2bq: replicate Amazon DynamoDB tables into Google BigQuery, continuously and without loss.

>>> import ddb2bq
>>> [c.op for c in ddb2bq.from_lambda_event({"Records": []})]
[]
"""

from __future__ import annotations

from ddb2bq.config import Config, load_config
from ddb2bq.contract import DeadLetter, DeadLetterSink, Failure, Writer, WriteResult
from ddb2bq.exceptions import (
    ConfigError,
    ConversionError,
    Ddb2bqError,
    RecordError,
    RetryableError,
    TerminalError,
)
from ddb2bq.pipeline import BatchResult, Outcome, Pipeline, Status, Unparsed
from ddb2bq.records import (
    Change,
    from_export_line,
    from_get_records,
    from_kinesis_record,
    from_lambda_event,
    from_scan_item,
    make_seq,
    snapshot_seq,
)
from ddb2bq.rows import RowBuilder, Rows
from ddb2bq.schema import Column, TableLayout, build_layout

__version__ = "0.1.0"

__all__ = [
    "BatchResult",
    "Change",
    "Column",
    "Config",
    "ConfigError",
    "ConversionError",
    "Ddb2bqError",
    "DeadLetter",
    "DeadLetterSink",
    "Failure",
    "Outcome",
    "Pipeline",
    "RecordError",
    "RetryableError",
    "RowBuilder",
    "Rows",
    "Status",
    "TableLayout",
    "TerminalError",
    "Unparsed",
    "WriteResult",
    "Writer",
    "__version__",
    "build_layout",
    "from_export_line",
    "from_get_records",
    "from_kinesis_record",
    "from_lambda_event",
    "from_scan_item",
    "load_config",
    "make_seq",
    "snapshot_seq",
]
