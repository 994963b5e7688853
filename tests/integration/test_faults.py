"""Writers under faults: the proxy answers 503/429 or cuts connections for the first requests;
the writer retries within its bounds and the table ends exact (nothing lost, nothing doubled
where insert ids can prevent it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.storage_write import StorageWriteWriter
from ddb2bq.local import Server
from ddb2bq.schema import Column
from tests.integration.fault_proxy import HttpFaultProxy, TcpFaultProxy
from tests.sink_data import changes, rows_of

# No jitter (random=1.0), so that the waits surely outlast gRPC's reconnect backoff below: a
# call made while the channel waits to reconnect fails at once with UNAVAILABLE.
POLICY = RetryPolicy(max_attempts=8, initial=0.05, maximum=0.5, deadline=20.0, random=lambda: 1.0)


def event_ids(client: bigquery.Client, table: bigquery.Table, retry: Retry) -> list[str]:
    sql = f"SELECT event_id FROM `{table.project}.{table.dataset_id}.{table.table_id}` ORDER BY 1"
    job = client.query(sql, retry=retry, job_retry=retry)
    return [row["event_id"] for row in job.result(retry=retry, timeout=30)]


EXPECTED = [f"evt-{n:04d}-insert" for n in range(1, 6)]


@pytest.mark.parametrize(
    "faults",
    [["503"], ["429", "429"], ["reset"], ["503", "reset", "429"]],
    ids="-".join,
)
def test_insert_all_retries_through_transient_faults_and_lands_exactly(
    faults: list[str],
    bigquery_server: Server,
    bq_client: bigquery.Client,
    bq_client_through: Callable[[HttpFaultProxy], bigquery.Client],
    changelog: tuple[bigquery.Table, list[Column]],
    bq_retry: Retry,
) -> None:
    table, columns = changelog
    with HttpFaultProxy(bigquery_server.endpoint, faults) as proxy:
        writer = InsertAllWriter(
            bq_client_through(proxy), table.reference, columns,
            retry_policy=POLICY, timeout=10,
        )  # fmt: skip
        result = writer.write(rows_of(changes(5)))
    assert (result.written, result.failures, result.retries) == (5, (), len(faults))
    assert proxy.injected == faults
    assert event_ids(bq_client, table, bq_retry) == EXPECTED


def test_insert_ids_absorb_a_write_whose_answer_was_lost(
    bigquery_server: Server,
    bq_client: bigquery.Client,
    bq_client_through: Callable[[HttpFaultProxy], bigquery.Client],
    changelog: tuple[bigquery.Table, list[Column]],
    bq_retry: Retry,
) -> None:
    # GIVEN a proxy that forwards the first request and cuts the connection before the answer
    table, columns = changelog
    with HttpFaultProxy(bigquery_server.endpoint, ["reset_after"]) as proxy:
        writer = InsertAllWriter(
            bq_client_through(proxy), table.reference, columns, retry_policy=POLICY
        )
        # WHEN the batch is written (and so sent twice)
        result = writer.write(rows_of(changes(5)))
    # THEN the retry's rows were dropped by their insert ids: each change is in the table once
    assert (result.written, result.retries) == (5, 1)
    assert event_ids(bq_client, table, bq_retry) == EXPECTED


def test_insert_all_reports_a_lasting_outage_as_retryable_within_its_bounds(
    bigquery_server: Server,
    bq_client: bigquery.Client,
    bq_client_through: Callable[[HttpFaultProxy], bigquery.Client],
    changelog: tuple[bigquery.Table, list[Column]],
    bq_retry: Retry,
) -> None:
    table, columns = changelog
    policy = RetryPolicy(max_attempts=4, initial=0.05, maximum=0.1, deadline=5.0)
    with HttpFaultProxy(bigquery_server.endpoint, ["503"] * 10) as proxy:
        writer = InsertAllWriter(
            bq_client_through(proxy), table.reference, columns, retry_policy=policy
        )
        started = time.monotonic()
        result = writer.write(rows_of(changes(5)))
        elapsed = time.monotonic() - started
    assert [f.retryable for f in result.failures] == [True] * 5
    assert (result.written, result.requests, proxy.seen) == (0, 4, 4)
    assert elapsed < 5.0  # our bounds, not the client library's 600 s
    assert event_ids(bq_client, table, bq_retry) == []


@pytest.mark.parametrize("cuts", [1, 3])
def test_storage_write_retries_through_cut_connections_and_lands_exactly(
    cuts: int,
    bigquery_server: Server,
    bq_client: bigquery.Client,
    changelog: tuple[bigquery.Table, list[Column]],
    write_client_through: Any,
    bq_retry: Retry,
) -> None:
    table, columns = changelog
    path = f"projects/{table.project}/datasets/{table.dataset_id}/tables/{table.table_id}"
    with TcpFaultProxy(bigquery_server.grpc_endpoint, ["reset"] * cuts) as proxy:
        writer = StorageWriteWriter(
            write_client_through(proxy), path, columns, retry_policy=POLICY, timeout=10
        )
        result = writer.write(rows_of(changes(5)))
    assert (result.written, [f.reason for f in result.failures]) == (5, [])
    assert result.retries >= 1
    assert proxy.injected == ["reset"] * cuts
    assert event_ids(bq_client, table, bq_retry) == EXPECTED
