"""Schema evolution on the emulator: a promoted attribute's first value adds its column to the
changelog and the mirror before its row is written, no row is lost, a value that does not fit
its column stays in ``item``, and workers that evolve the same table converge on one schema."""

from __future__ import annotations

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.bigquery import tables
from ddb2bq.bigquery.tables import add_columns, evolve, init_tables, initial_layout
from tests.integration.mirror_support import (
    WRITERS,
    ListDeadLetters,
    bigquery_pipeline,
    changes,
    config,
    replicate,
    stream_record,
    writer_for,
)

PROMOTE = ["status", "total"]


def columns(table: bigquery.Table) -> dict[str, str]:
    return {f.name: f.field_type for f in table.schema}


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("mirror", ["view", "merge"])
def test_a_new_attribute_adds_its_column_mid_stream_without_losing_a_row(
    writer: str,
    mirror: str,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN two promoted attributes with no configured type: init creates no column for them
    settings = config(dataset, mirror=mirror, writer=writer, promote=PROMOTE)
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    assert "status" not in columns(replication.table("changes"))
    # WHEN `status` appears, then `total`, then a `total` that does not fit the INT64 it became
    replication.write([stream_record("a", "INSERT", 1, status={"S": "new"})])
    after_status = columns(replication.table("changes"))
    replication.write([stream_record("b", "INSERT", 2, status={"S": "new"}, total={"N": "7"})])
    replication.write([stream_record("c", "INSERT", 3, total={"N": "1.5"})])
    if mirror == "merge":
        replication.merge()
    # THEN each column was added with the type its first values showed, on both tables
    assert after_status["status"] == "STRING"
    assert "total" not in after_status
    assert columns(replication.table("changes"))["total"] == "INTEGER"
    assert {"status", "total"} <= set(columns(replication.table()))
    # AND every row landed, the values in their columns, the misfit NULL but kept in `item`
    rows = {r["pk"]: r for r in replication.rows()}
    assert [(k, r["status"], r["total"]) for k, r in sorted(rows.items())] == [
        ("a", "new", None),
        ("b", "new", 7),
        ("c", None, None),
    ]
    assert rows["c"]["item"] == {"pk": "c", "total": 1.5}
    assert len(replication.rows("changes")) == 3
    assert replication.sink.conflicts.counts == {"total": 1}
    assert replication.dead_letters.letters == []


def test_workers_evolving_the_same_table_converge_on_one_schema(
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN two workers started from the same initial layout (two Lambda containers)
    settings = config(dataset, mirror="merge", promote=PROMOTE)
    first = replicate(settings, bq_client, bq_write_client, bq_retry)
    second = bigquery_pipeline(
        settings,
        first.report.layout,
        bq_client,
        writer_for("insert_all", settings, bq_client, bq_write_client),
        ListDeadLetters(),
    )
    # WHEN the first adds `total` as INT64, and the second then meets `total` as a decimal and
    # `status` for the first time
    first.write([stream_record("a", "INSERT", 1, total={"N": "3"})])
    batch = changes([stream_record("b", "INSERT", 2, total={"N": "2.5"}, status={"S": "x"})])
    result = second.process(batch, ordered=False)
    first.merge()
    # THEN the second adopts the existing INT64 column (never re-typed) and adds `status` once
    assert result.first_retryable is None
    assert columns(first.table("changes"))["total"] == "INTEGER"
    assert [c.name for c in second.layout.promoted] == ["total", "status"]
    assert list(columns(first.table("changes"))).count("status") == 1
    # AND the decimal that does not fit stays in `item`
    rows = {r["pk"]: r for r in first.rows()}
    assert (rows["b"]["total"], rows["b"]["status"]) == (None, "x")
    assert rows["b"]["item"] == {"pk": "b", "total": 2.5, "status": "x"}


def test_init_after_evolution_keeps_every_column_and_changes_nothing(
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a table whose schema evolved in flight
    settings = config(dataset, mirror="merge", promote=PROMOTE)
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    replication.write([stream_record("a", "INSERT", 1, status={"S": "new"})])
    before = (columns(replication.table("changes")), columns(replication.table()))
    # WHEN `ddb2bq init` runs again
    report = init_tables(bq_client, settings, initial_layout(settings, [("pk", "S")]))
    # THEN it keeps everything and knows the evolved column
    assert (columns(replication.table("changes")), columns(replication.table())) == before
    assert [c.name for c in report.layout.promoted] == ["status"]
    assert not any(a.startswith(("created", "added")) for a in report.actions)


def test_a_name_taken_by_a_racing_worker_is_never_used_for_another_attribute(
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a worker that read the layout, then another worker that added `Status` (attribute
    # Status) before the first adds a column for attribute `status`
    settings = config(dataset, mirror="merge", promote=["Status", "status"])
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    stale = replication.report.layout
    add_columns(
        bq_client, replication.refs.changes, stale.with_promoted({"Status": "STRING"}).promoted
    )
    # WHEN the first worker adds its column (BigQuery names are case-insensitive: `status` is taken)
    actions: list[str] = []
    layout = tables._add_promoted(
        bq_client, replication.refs.changes, stale, {"status": "STRING"}, actions
    )
    # THEN its layout gives `status` no column rather than the other attribute's one
    assert [(c.attribute, c.name) for c in layout.promoted] == [("Status", "Status")]
    assert actions == []
    # AND the next evolution gives `status` a column of its own
    evolved = evolve(bq_client, settings, layout, {"status": "STRING"})
    assert [(c.attribute, c.name) for c in evolved.promoted] == [
        ("Status", "Status"),
        ("status", "status_073c1634"),
    ]
