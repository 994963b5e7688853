"""Both changelog writers against local-bigquery: a batch lands exactly, value for value; a row
BigQuery refuses costs only itself; insert ids de-duplicate a re-sent row."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.storage_write import StorageWriteWriter
from ddb2bq.contract import Writer
from ddb2bq.records import from_lambda_record
from ddb2bq.rows import Rows
from ddb2bq.schema import Column, TableLayout
from tests.sink_data import layout, record, rows_of

QUICK = RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2, deadline=5.0)


def create_table(
    client: bigquery.Client,
    dataset: bigquery.Dataset,
    name: str,
    columns: list[Column],
    retry: Retry,
) -> bigquery.Table:
    schema = [bigquery.SchemaField(c.name, c.field_type, mode=c.field_mode) for c in columns]
    table = bigquery.Table(dataset.table(name), schema=schema)
    return client.create_table(table, retry=retry, timeout=30)


def read_rows(client: bigquery.Client, table: bigquery.Table, retry: Retry) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM `{table.project}.{table.dataset_id}.{table.table_id}` ORDER BY event_id"
    job = client.query(sql, retry=retry, job_retry=retry)
    return [dict(row) for row in job.result(retry=retry, timeout=30)]


def expected_value(value: Any, column: Column) -> Any:
    """What BigQuery gives back for a value the row builder produced for ``column``."""
    if column.field_mode == "REPEATED":
        return [expected_value(v, Column(column.name, column.field_type)) for v in value or []]
    if value is None:
        return None
    convert = {
        "NUMERIC": Decimal,
        "BIGNUMERIC": Decimal,
        "INT64": int,
        "BYTES": base64.b64decode,
        "JSON": json.loads,
        "TIMESTAMP": datetime.fromisoformat,
    }.get(column.field_type)
    return convert(value) if convert else value


def sample_batch(table_layout: TableLayout) -> list[Rows]:
    """Inserts, a modify and a delete, with NULLs and an extreme number."""
    records = [
        record(1, "INSERT"),
        record(2, "INSERT", total={"N": "-99999999999999999999999999999.999999999"}),
        record(3, "INSERT", tags={"NULL": True}, meta={"L": [{"N": "1E+125"}]}),
        record(1, "MODIFY", sequence=2001, status={"S": "SHIPPED"}),
        record(2, "REMOVE", sequence=2002),
    ]
    return rows_of([from_lambda_record(r, index=i) for i, r in enumerate(records)], table_layout)


def insert_all_writer(
    client: bigquery.Client, table: bigquery.Table, columns: list[Column]
) -> Writer:
    return InsertAllWriter(client, table.reference, columns, retry_policy=QUICK, timeout=10)


def storage_writer(
    write_client: BigQueryWriteClient, table: bigquery.Table, columns: list[Column]
) -> Writer:
    path = f"projects/{table.project}/datasets/{table.dataset_id}/tables/{table.table_id}"
    return StorageWriteWriter(write_client, path, columns, retry_policy=QUICK, timeout=10)


@pytest.mark.parametrize("kind", ["insert_all", "storage_write"])
def test_a_batch_lands_exactly_value_for_value(
    kind: str,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a changelog table with every column type and a batch of five changes
    table_layout = layout()
    columns = table_layout.changelog_columns()
    table = create_table(bq_client, dataset, "orders_changes", columns, bq_retry)
    batch = sample_batch(table_layout)
    writer = (
        insert_all_writer(bq_client, table, columns)
        if kind == "insert_all"
        else storage_writer(bq_write_client, table, columns)
    )
    # WHEN the batch is written
    result = writer.write(batch)
    # THEN every change landed once, and every column reads back equal to what was sent
    assert (result.written, result.failures) == (5, ())
    landed = read_rows(bq_client, table, bq_retry)
    sent = sorted((rows.changelog for rows in batch), key=lambda row: row["event_id"])
    assert len(landed) == len(sent)
    for got, row in zip(landed, sent, strict=True):
        for column in columns:
            assert got[column.name] == expected_value(row.get(column.name), column), column.name


@pytest.mark.parametrize("kind", ["insert_all", "storage_write"])
def test_a_row_bigquery_refuses_costs_only_itself(
    kind: str,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a table created when `total` was NUMERIC, while the layout now keeps it as STRING
    # (a value grew past NUMERIC), and a batch where one total is 10^40
    table_layout = layout(promoted={"status": "STRING", "total": "STRING"})
    columns = table_layout.changelog_columns()
    stale = [Column(c.name, "NUMERIC") if c.name == "total" else c for c in columns]
    table = create_table(bq_client, dataset, "orders_changes", stale, bq_retry)
    changes = [
        from_lambda_record(record(n, total={"N": "1E+40" if n == 3 else f"{n}.5"}), index=n)
        for n in range(1, 6)
    ]
    writer = (
        insert_all_writer(bq_client, table, columns)
        if kind == "insert_all"
        else storage_writer(bq_write_client, table, columns)
    )
    # WHEN the batch is written
    result = writer.write(rows_of(changes, table_layout))
    # THEN change 3 (index 2) failed terminally with BigQuery's reason; the four others landed
    (failure,) = result.failures
    assert (failure.index, failure.retryable) == (2, False)
    assert "numeric" in failure.reason.lower()
    assert "event evt-0003-insert" in failure.reason
    assert result.written == 4
    landed = read_rows(bq_client, table, bq_retry)
    assert [r["event_id"] for r in landed] == [
        "evt-0001-insert", "evt-0002-insert", "evt-0004-insert", "evt-0005-insert",
    ]  # fmt: skip


def test_insert_ids_make_a_resent_row_land_once(
    bq_client: bigquery.Client, dataset: bigquery.Dataset, bq_retry: Retry
) -> None:
    # GIVEN a batch written once
    table_layout = layout()
    columns = table_layout.changelog_columns()
    table = create_table(bq_client, dataset, "orders_changes", columns, bq_retry)
    batch = sample_batch(table_layout)
    writer = insert_all_writer(bq_client, table, columns)
    assert writer.write(batch).ok
    # WHEN the same batch is written again (a retry after a lost response)
    assert writer.write(batch).ok
    # THEN the emulator, like BigQuery (best effort, about a minute), kept one row per event id
    assert len(read_rows(bq_client, table, bq_retry)) == len(batch)
