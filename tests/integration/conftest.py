"""Fixtures for integration tests: real local servers over loopback, started here, never by hand.

Session scope (one of each per test run, started on first use):
    moto_server       ddb2bq.local.Server: DynamoDB + Streams (moto), ``.endpoint``
    bigquery_server   ddb2bq.local.Server: local-bigquery, ``.endpoint`` (REST) and
                      ``.grpc_endpoint`` (Storage Write), tables kept in a pytest tmp folder
    bq_project        the emulator's project id

Function scope (fresh per test):
    dynamodb, dynamodbstreams   boto3 clients on moto, with dummy AWS credentials in the env
    bq_client                   google.cloud.bigquery.Client on the emulator
    bq_write_client             BigQueryWriteClient over an insecure gRPC channel
    dataset                     a new uniquely named dataset, deleted with its tables afterwards
    bq_retry                    a short retry for BigQuery calls (the client's default retries 5xx
                                for 600 s): ``bq_client.query(sql, retry=bq_retry,
                                job_retry=bq_retry).result(retry=bq_retry, timeout=30)``
    local_env                   the DDB2BQ_* and AWS_* variables for these servers, also set in
                                os.environ for the test's duration
    changelog                   a changelog table of tests.sink_data's layout, and its columns
    bq_client_through           makes a BigQuery client that goes through an HTTP fault proxy
    write_client_through        makes a Storage Write client that goes through a TCP fault proxy

Every test under tests/integration is marked ``integration``: ``pytest -m "not integration"``
runs the unit tests alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)

from ddb2bq.local import (
    AWS_DUMMY_CREDENTIALS,
    REGION,
    LocalServers,
    Server,
    start_bigquery,
    start_moto,
)
from ddb2bq.schema import Column
from tests.integration.fault_proxy import HttpFaultProxy, TcpFaultProxy
from tests.sink_data import layout

HERE = Path(__file__).parent
BQ_PROJECT = "ddb2bq-test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees every collected item, unit tests included: mark only the ones under here.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands (`ddb2bq run`, `backfill`, `verify`) configure the ``ddb2bq`` logger (JSON
    lines on stderr, no propagation): undo it after each test."""
    logger = logging.getLogger("ddb2bq")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(logger, "level", logger.level)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Server]:
    with start_moto() as server:
        yield server


@pytest.fixture(scope="session")
def bq_project() -> str:
    return BQ_PROJECT


@pytest.fixture(scope="session")
def bigquery_server(tmp_path_factory: pytest.TempPathFactory, bq_project: str) -> Iterator[Server]:
    with start_bigquery(bq_project, data_dir=tmp_path_factory.mktemp("bigquery")) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for boto3, and no profile or real keys from the developer's shell."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def dynamodb(aws_env: None, moto_server: Server) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto_server.endpoint, region_name=REGION)


@pytest.fixture
def dynamodbstreams(aws_env: None, moto_server: Server) -> Any:
    return boto3.client("dynamodbstreams", endpoint_url=moto_server.endpoint, region_name=REGION)


@pytest.fixture
def bq_retry() -> Retry:
    return bigquery.DEFAULT_RETRY.with_timeout(15.0)


@pytest.fixture
def bq_client(bigquery_server: Server, bq_project: str) -> Iterator[bigquery.Client]:
    client = bigquery.Client(
        project=bq_project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.endpoint),
    )
    yield client
    client.close()


@pytest.fixture
def bq_write_client(bigquery_server: Server) -> Iterator[bigquery_storage_v1.BigQueryWriteClient]:
    channel = grpc.insecure_channel(bigquery_server.grpc_endpoint)
    yield bigquery_storage_v1.BigQueryWriteClient(
        transport=BigQueryWriteGrpcTransport(channel=channel)
    )
    channel.close()


@pytest.fixture
def dataset(bq_client: bigquery.Client, bq_retry: Retry) -> Iterator[bigquery.Dataset]:
    created = bq_client.create_dataset(f"test_{uuid.uuid4().hex[:12]}", retry=bq_retry, timeout=30)
    yield created
    bq_client.delete_dataset(
        created, delete_contents=True, not_found_ok=True, retry=bq_retry, timeout=30
    )


@pytest.fixture
def local_env(
    monkeypatch: pytest.MonkeyPatch, moto_server: Server, bigquery_server: Server, bq_project: str
) -> dict[str, str]:
    environment = LocalServers(moto_server, bigquery_server, bq_project).environment()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


# --- through a fault proxy (tests/integration/fault_proxy.py) and a changelog to write to ------

FAST_RECONNECT = [  # a cut gRPC connection is re-made in 0.1 s, not gRPC's default 1 s and up
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
]


@pytest.fixture
def changelog(
    bq_client: bigquery.Client, dataset: bigquery.Dataset, bq_retry: Retry
) -> tuple[bigquery.Table, list[Column]]:
    """A changelog table of tests.sink_data's layout, and its columns."""
    columns = layout().changelog_columns()
    schema = [bigquery.SchemaField(c.name, c.field_type, mode=c.field_mode) for c in columns]
    table = bq_client.create_table(
        bigquery.Table(dataset.table("orders_changes"), schema=schema), retry=bq_retry, timeout=30
    )
    return table, columns


@pytest.fixture
def bq_client_through(bq_project: str) -> Callable[[HttpFaultProxy], bigquery.Client]:
    """Makes a BigQuery client whose REST requests go through an HTTP fault proxy."""

    def build(proxy: HttpFaultProxy) -> bigquery.Client:
        return bigquery.Client(
            project=bq_project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=proxy.url),
        )

    return build


@pytest.fixture
def write_client_through() -> Iterator[Callable[[TcpFaultProxy], Any]]:
    """Makes a Storage Write client whose gRPC channel goes through a TCP fault proxy and
    reconnects quickly after a cut; the channels are closed after the test."""
    channels: list[grpc.Channel] = []

    def build(proxy: TcpFaultProxy) -> bigquery_storage_v1.BigQueryWriteClient:
        channel = grpc.insecure_channel(proxy.endpoint, options=FAST_RECONNECT)
        channels.append(channel)
        return bigquery_storage_v1.BigQueryWriteClient(
            transport=BigQueryWriteGrpcTransport(channel=channel)
        )

    yield build
    for channel in channels:
        channel.close()
