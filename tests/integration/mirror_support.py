"""Shared by the mirror, schema-evolution, hostile-name and init tests: stream records as Lambda
delivers them, and a replication set up end to end on the emulator (init, sink, writer, merge)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.bigquery import tables
from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.mirror import MergeResult
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.sql import quote_all
from ddb2bq.bigquery.storage_write import StorageWriteWriter
from ddb2bq.bigquery.tables import InitReport, TableRefs, init_tables, initial_layout, merge_mirror
from ddb2bq.config import ColumnsConfig, Config, SourceConfig, TargetConfig
from ddb2bq.contract import DeadLetterSink, Writer
from ddb2bq.pipeline import BatchResult, Pipeline, WriterFactory
from ddb2bq.records import Change, from_lambda_record
from ddb2bq.schema import TableLayout
from tests.doubles.dead_letters import ListDeadLetters

QUICK = RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2, deadline=5.0)
WRITERS = ("insert_all", "storage_write")
NOW_S = int(time.time())  # the merge window reaches 2 days back from now: changes are recent


def stream_record(
    key: str,
    op: str,
    sequence: int,
    *,
    key_name: str = "pk",
    event_id: str | None = None,
    seconds_ago: int = 0,
    **attributes: Any,
) -> dict[str, Any]:
    """A Lambda DynamoDB Streams record (NEW_AND_OLD_IMAGES) of item ``key``.

    ``attributes`` are the new image's attributes (DynamoDB JSON); a REMOVE carries them as its
    old image, as DynamoDB does.
    """
    keys = {key_name: {"S": key}}
    image = {**keys, **attributes}
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": NOW_S - seconds_ago,
        "Keys": keys,
        "SequenceNumber": str(sequence),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if op == "REMOVE":
        dynamodb["OldImage"] = image
    else:
        dynamodb["NewImage"] = image
    return {
        "eventID": event_id or f"{key}-{sequence}",
        "eventName": op,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/x",
    }


def changes(records: Sequence[dict[str, Any]]) -> list[Change]:
    return [from_lambda_record(r, index=i) for i, r in enumerate(records)]


@dataclasses.dataclass
class Replication:
    """One replicated table on the emulator: its config, tables, sink and dead letters."""

    config: Config
    client: bigquery.Client
    refs: TableRefs
    sink: Pipeline
    dead_letters: ListDeadLetters
    report: InitReport
    retry: Retry

    def write(self, records: Sequence[dict[str, Any]]) -> BatchResult:
        result = self.sink.process(changes(records), ordered=True)
        assert result.first_retryable is None, result.outcomes
        return result

    def merge(self, **kwargs: Any) -> MergeResult:
        return merge_mirror(self.client, self.config, **kwargs)

    def rows(self, table: str = "mirror") -> list[dict[str, Any]]:
        ref = getattr(self.refs, table)
        keys = quote_all(c.name for c in self.sink.layout.keys)
        order = keys if table == "mirror" else f"{keys}, `seq`"
        sql = f"SELECT * FROM {ref.sql} ORDER BY {order}"
        job = self.client.query(sql, retry=self.retry, job_retry=self.retry)
        return [dict(row) for row in job.result(retry=self.retry, timeout=30)]

    def table(self, table: str = "mirror") -> bigquery.Table:
        return self.client.get_table(getattr(self.refs, table).api, retry=self.retry)


def config(
    dataset: bigquery.Dataset,
    *,
    mirror: str = "view",
    deletes: str = "hard",
    writer: str = "insert_all",
    promote: Sequence[str] = (),
    types: dict[str, str] | None = None,
    table: str = "orders",
) -> Config:
    return Config(
        source=SourceConfig(table=table),
        target=TargetConfig(
            project=dataset.project,
            dataset=dataset.dataset_id,
            location=dataset.location or "US",
            mirror=mirror,  # type: ignore[arg-type]
            deletes=deletes,  # type: ignore[arg-type]
            writer=writer,  # type: ignore[arg-type]
        ),
        columns=ColumnsConfig(promote=tuple(promote), types=types or {}),
    )


def writer_for(
    kind: str, settings: Config, client: bigquery.Client, write_client: BigQueryWriteClient
) -> Any:
    refs = TableRefs.from_config(settings, client.project)
    changes_ref = refs.changes

    def make(layout: TableLayout) -> Writer:
        columns = layout.changelog_columns()
        if kind == "insert_all":
            return InsertAllWriter(client, changes_ref.api, columns, retry_policy=QUICK, timeout=10)
        path = f"projects/{changes_ref.project}/datasets/{changes_ref.dataset}/tables/{changes_ref.table}"
        return StorageWriteWriter(write_client, path, columns, retry_policy=QUICK, timeout=10)

    return make


def replicate(
    settings: Config,
    client: bigquery.Client,
    write_client: BigQueryWriteClient,
    retry: Retry,
    *,
    key_schema: Sequence[tuple[str, str]] = (("pk", "S"),),
) -> Replication:
    """Init the tables of ``settings`` and a sink writing to them with ``[target] writer``."""
    report = init_tables(client, settings, initial_layout(settings, key_schema))
    dead_letters = ListDeadLetters()
    writer = writer_for(settings.target.writer, settings, client, write_client)
    sink = bigquery_pipeline(settings, report.layout, client, writer, dead_letters)
    refs = TableRefs.from_config(settings, client.project)
    return Replication(settings, client, refs, sink, dead_letters, report, retry)


def bigquery_pipeline(
    settings: Config,
    layout: TableLayout,
    client: bigquery.Client,
    writer_for: WriterFactory,
    dead_letters: DeadLetterSink,
    **kwargs: Any,
) -> Pipeline:
    """The pipeline over the emulator as the composition root builds it: columns are added with
    ``client`` (:func:`ddb2bq.bigquery.tables.evolve`)."""

    def evolve(current: TableLayout, attributes: Mapping[str, str]) -> TableLayout:
        return tables.evolve(client, settings, current, attributes)

    return Pipeline(settings, layout, writer_for, dead_letters, evolve=evolve, **kwargs)
