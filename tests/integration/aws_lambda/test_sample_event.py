"""The AWS documented sample event through the handler into local-bigquery: item 101 is
inserted, modified, then gone; the changelog holds the three changes exactly."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.aws_lambda import Handler, StreamEvent
from ddb2bq.config import Config
from ddb2bq.images import new_image
from ddb2bq.local import Server
from tests.integration.aws_lambda.conftest import (
    changelog_rows,
    init_replication,
    mirror_rows,
    replication_environ,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"
TABLE = "ExampleTableWithStream"
SEQ = "0000000000000000/0000000000000000/0000000000000000/"


def mirror(client: bigquery.Client, config: Config, retry: Retry) -> list[tuple[Any, Any]]:
    rows = mirror_rows(client, config, retry, "Id, TO_JSON_STRING(item) AS item")
    return [(row["Id"], json.loads(row["item"])) for row in rows]


def sample_records() -> list[dict[str, Any]]:
    event = json.loads((FIXTURES / "aws_sample_event.json").read_text())
    return cast(list[dict[str, Any]], event["Records"])


@pytest.mark.parametrize("writer", ["storage_write", "insert_all"])
def test_item_101_is_inserted_modified_then_gone(
    writer: str,
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
) -> None:
    # GIVEN the tables of ExampleTableWithStream (key Id, a number) on the emulator
    environ = replication_environ(
        bigquery_server,
        bq_project,
        dataset.dataset_id,
        TABLE,
        tmp_path / "dead-letters",
        DDB2BQ_TARGET_WRITER=writer,
    )
    config = init_replication(bq_client, environ, [("Id", "N")])
    handler = Handler(config, metrics_stream=io.StringIO())
    records = sample_records()

    # WHEN Lambda delivers the INSERT  THEN the mirror holds the new item
    assert handler(cast(StreamEvent, {"Records": records[:1]})) == {"batchItemFailures": []}
    assert mirror(bq_client, config, bq_retry) == [
        (Decimal(101), {"Id": 101, "Message": "New item!"})
    ]
    # WHEN the MODIFY follows  THEN the mirror holds the changed item
    assert handler(cast(StreamEvent, {"Records": records[1:2]})) == {"batchItemFailures": []}
    assert mirror(bq_client, config, bq_retry) == [
        (Decimal(101), {"Id": 101, "Message": "This item has changed"})
    ]
    # WHEN the REMOVE follows  THEN the item is gone
    assert handler(cast(StreamEvent, {"Records": records[2:]})) == {"batchItemFailures": []}
    assert mirror(bq_client, config, bq_retry) == []

    # AND the changelog holds the three changes, in order, losslessly
    rows = changelog_rows(bq_client, config, bq_retry)
    assert [(r["event_id"], r["op"], r["seq"], r["Id"]) for r in rows] == [
        ("1", "INSERT", SEQ + "000000000000006f", Decimal(101)),
        ("2", "MODIFY", SEQ + "00000000000000de", Decimal(101)),
        ("3", "REMOVE", SEQ + "000000000000014d", Decimal(101)),
    ]
    assert [r["changed_at"].timestamp() for r in rows] == [1693997155, 1693997156, 1693997157]
    assert [new_image(r) for r in rows] == [
        records[0]["dynamodb"]["NewImage"],
        records[1]["dynamodb"]["NewImage"],
        None,
    ]
    assert [r["item_types"] for r in rows] == [None, None, None]  # nothing needs a tag
    assert "new_image" not in rows[0]  # each image once: the lean row has no DynamoDB JSON
    assert [r["is_ttl_delete"] for r in rows] == [False, False, False]
    assert not (tmp_path / "dead-letters").exists()
