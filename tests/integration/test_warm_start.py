"""The warm start against the emulator: a cold Lambda handler with the default writer writes its
first batch through insertAll (the light REST client) while the Storage Write client loads in
the background, then its later batches through Storage Write (gRPC); the changelog holds each
change once. The load is held until the test lets it go, so which writer takes which batch does
not depend on timing."""

from __future__ import annotations

import copy
import json
import logging
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.aws_lambda import Handler, StreamEvent
from ddb2bq.bigquery import clients, warm_start
from ddb2bq.local import Server
from tests.integration.aws_lambda.conftest import (
    changelog_rows,
    init_replication,
    replication_environ,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
WAIT = 60.0


def sample_event(offset: int = 0) -> dict[str, Any]:
    """The AWS sample event (3 changes of one item); ``offset`` shifts event ids and sequence
    numbers, so a later batch holds later changes."""
    event = cast(dict[str, Any], json.loads((FIXTURES / "aws_sample_event.json").read_text()))
    for record in event["Records"]:
        record["eventID"] = str(int(record["eventID"]) + offset)
        body = record["dynamodb"]
        body["SequenceNumber"] = str(int(body["SequenceNumber"]) + offset * 111)
    return copy.deepcopy(event)


def test_a_cold_handler_writes_through_insert_all_until_storage_write_is_loaded(
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN the default writer (storage_write, view mirror) on the emulator, and a cold
    # container whose Storage Write client is loading (held by the test)
    environ = replication_environ(
        bigquery_server,
        bq_project,
        dataset.dataset_id,
        "ExampleTableWithStream",
        tmp_path / "dead-letters",
    )
    config = init_replication(bq_client, environ, [("Id", "N")])
    release = threading.Event()

    def load() -> None:
        assert release.wait(WAIT)
        clients.import_write_client(config)

    loader = warm_start.StorageWriteLoader(load, steps=warm_start.STORAGE_WRITE_STEPS)
    loader.start()
    handler = Handler(config, storage_loader=loader)
    caplog.set_level(logging.INFO, logger="ddb2bq")
    # WHEN the first batch comes
    assert handler(cast(StreamEvent, sample_event()), None) == {"batchItemFailures": []}
    # THEN it went through insertAll, without waiting for the load
    assert not loader.done
    messages = [r.getMessage() for r in caplog.records]
    assert any("through insertAll while the Storage Write client loads" in m for m in messages)
    # WHEN the load ends and two more batches come
    release.set()
    assert loader.wait(WAIT)
    assert loader.ready
    assert handler(cast(StreamEvent, sample_event(3)), None) == {"batchItemFailures": []}
    assert handler(cast(StreamEvent, sample_event(6)), None) == {"batchItemFailures": []}
    # THEN they went through Storage Write (switched once, after one insertAll batch)
    switched = [r for r in caplog.records if r.getMessage().startswith("Storage Write is ready")]
    assert [getattr(r, "insert_all_batches", None) for r in switched] == [1]
    # ... and the changelog holds each of the nine changes once, in seq order
    rows = changelog_rows(bq_client, config, bq_retry)
    assert [row["event_id"] for row in rows] == [str(n) for n in range(1, 10)]
    assert [row["op"] for row in rows] == ["INSERT", "MODIFY", "REMOVE"] * 3
