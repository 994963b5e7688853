"""The BigQuery API failing for a while (a fault proxy in front of the emulator): the sink's
writers retry, a change still failing is tried again from the first one reported, and the mirror
ends exact in view and merge mode: no item lost, none doubled, whatever the changelog holds."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.storage_write import StorageWriteWriter
from ddb2bq.bigquery.tables import TableRefs, init_tables, initial_layout, merge_mirror
from ddb2bq.contract import Writer
from ddb2bq.local import Server
from ddb2bq.pipeline import Pipeline
from ddb2bq.schema import TableLayout
from tests.integration.fault_proxy import HttpFaultProxy, TcpFaultProxy
from tests.integration.mirror_support import (
    ListDeadLetters,
    bigquery_pipeline,
    changes,
    config,
)
from tests.integration.test_mirror import FIRST, SECOND, expected, state

# Few attempts, so that some faults outlast the writer's own retries and reach the caller,
# which then re-sends from the first change reported, as Lambda does.
POLICY = RetryPolicy(max_attempts=2, initial=0.05, maximum=0.2, deadline=5.0, random=lambda: 1.0)
HTTP_FAULTS = ["503", "503", "reset_after", "429", "429", "reset", "503", "reset_after"]
TCP_FAULTS = ["reset", "reset", "reset"]  # a gRPC channel keeps the connection that got through


@pytest.mark.parametrize("writer", ["insert_all", "storage_write"])
@pytest.mark.parametrize("mirror", ["view", "merge"])
def test_the_mirror_is_exact_after_the_api_failed_for_a_while(
    writer: str,
    mirror: str,
    bigquery_server: Server,
    bq_client: bigquery.Client,
    bq_project: str,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    bq_client_through: Callable[[HttpFaultProxy], bigquery.Client],
    write_client_through: Callable[[TcpFaultProxy], Any],
) -> None:
    # GIVEN the tables of a replication, and a sink whose writer reaches BigQuery through a
    # proxy that fails the first requests (503, 429, resets, answers lost after the write)
    settings = config(
        dataset, mirror=mirror, writer=writer, promote=["status"], types={"status": "STRING"}
    )
    report = init_tables(bq_client, settings, initial_layout(settings, [("pk", "S")]))
    refs = TableRefs.from_config(settings, bq_project)
    faults = HTTP_FAULTS if writer == "insert_all" else TCP_FAULTS
    proxy: HttpFaultProxy | TcpFaultProxy
    if writer == "insert_all":
        proxy = HttpFaultProxy(bigquery_server.endpoint, faults)
        client = bq_client_through(proxy)

        def make(layout: TableLayout) -> Writer:
            return InsertAllWriter(client, refs.changes.api, layout.changelog_columns(),
                                   retry_policy=POLICY, timeout=10)  # fmt: skip
    else:
        proxy = TcpFaultProxy(bigquery_server.grpc_endpoint, faults)
        write_client = write_client_through(proxy)
        path = f"projects/{bq_project}/datasets/{dataset.dataset_id}/tables/{refs.changes.table}"

        def make(layout: TableLayout) -> Writer:
            return StorageWriteWriter(write_client, path, layout.changelog_columns(),
                                      retry_policy=POLICY, timeout=10)  # fmt: skip

    dead_letters = ListDeadLetters()
    sink = bigquery_pipeline(settings, report.layout, bq_client, make, dead_letters)
    # WHEN the scripted history is delivered, each batch re-sent from its first change reported
    with proxy:
        sends = deliver(sink, FIRST) + deliver(sink, SECOND)
    if mirror == "merge":
        merge_mirror(bq_client, settings)
    # THEN every fault was met, nothing was dead-lettered, and the mirror is the final state
    assert proxy.injected == faults
    assert dead_letters.letters == []
    assert sends > 2, "some fault should have outlasted the writer's own retries"
    rows = query(bq_client, f"SELECT * FROM {refs.mirror.sql} ORDER BY pk", bq_retry)
    assert state(rows) == expected(soft=False)
    logged = {
        r["event_id"]
        for r in query(bq_client, f"SELECT event_id FROM {refs.changes.sql}", bq_retry)
    }
    assert logged == {r["eventID"] for r in FIRST + SECOND}


def deliver(sink: Pipeline, records: Sequence[dict[str, Any]], attempts: int = 10) -> int:
    """Send ``records`` until every change is settled, re-sending from the first one reported
    retryable (nothing after it counts as done), after a pause as Lambda makes (it gives a
    reset gRPC channel time to reconnect); returns how many sends it took."""
    pending = list(records)
    for attempt in range(1, attempts + 1):
        result = sink.process(changes(pending), ordered=False)
        first = result.first_retryable
        if first is None:
            return attempt
        pending = pending[first:]
        time.sleep(0.5)
    raise AssertionError(f"still failing after {attempts} sends")


def query(client: bigquery.Client, sql: str, retry: Retry) -> list[dict[str, Any]]:
    job = client.query(sql, retry=retry, job_retry=retry)
    return [dict(row) for row in job.result(retry=retry, timeout=30)]
