"""Attribute names are user data. Names that are SQL, reserved words, Unicode, ddb2bq's own column
names, the SQL's own aliases, or that differ only in case are replicated without error and without
executing anything: every table still exists afterwards and each value lands in its column."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.cli.tables import run_init
from ddb2bq.dynamodb.tables import describe_key_schema
from tests.integration.mirror_support import changes, config, replicate

HASH_KEY = "x`; DROP TABLE victim; --"
RANGE_KEY = "select"
HOSTILE = {  # attribute -> its value in the one item written
    "from": {"S": "reserved word"},
    "Status": {"S": "upper"},
    "status": {"S": "lower"},
    "名前": {"S": "ユニコード"},
    "a\\b": {"N": "7"},
    "item": {"S": "shadows ddb2bq's own column"},
    "_CHANGE_TYPE": {"S": "DELETE"},
    "target": {"S": "the MERGE's alias"},
    "'); DELETE FROM victim; --": {"BOOL": True},
}


def create_source_table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": HASH_KEY, "KeyType": "HASH"},
            {"AttributeName": RANGE_KEY, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": RANGE_KEY, "AttributeType": "N"},
            {"AttributeName": HASH_KEY, "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def record(sequence: int, op: str = "INSERT") -> dict[str, Any]:
    keys = {HASH_KEY: {"S": "k"}, RANGE_KEY: {"N": "1"}}
    image = {**keys, **HOSTILE}
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1_700_000_000,
        "Keys": keys,
        "SequenceNumber": str(sequence),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    dynamodb["OldImage" if op == "REMOVE" else "NewImage"] = image
    return {"eventID": f"e{sequence}", "eventName": op, "dynamodb": dynamodb}


@pytest.mark.parametrize("mirror", ["view", "merge", "cdc"])
def test_hostile_attribute_names_replicate_and_execute_nothing(
    mirror: str,
    dynamodb: Any,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a DynamoDB table keyed by hostile names, every hostile attribute promoted, and a
    # table `victim` that the names try to drop
    table = f"hostile_{mirror}"
    create_source_table(dynamodb, table)
    victim = bq_client.create_table(dataset.table("victim"), retry=bq_retry)
    settings = config(dataset, mirror=mirror, promote=list(HOSTILE), table=table,
                      types={"from": "STRING", "a\\b": "INT64"})  # fmt: skip
    # WHEN `ddb2bq init` runs (DescribeTable gives the keys) and an item is written
    assert run_init(argparse.Namespace(), settings, client=bq_client, dynamodb=dynamodb) == 0
    key_schema = describe_key_schema(dynamodb, table)
    replication = replicate(settings, bq_client, bq_write_client, bq_retry, key_schema=key_schema)
    sink, refs = replication.sink, replication.refs
    result = sink.process(changes([record(1)]), ordered=False)
    if mirror == "merge":
        replication.merge()
    # THEN it is written, and nothing was dropped
    assert result.count("written") == 1
    assert bq_client.get_table(victim, retry=bq_retry).table_id == "victim"
    assert bq_client.get_table(refs.changes.api, retry=bq_retry).num_rows is not None
    # AND each value is in its own column, named by the naming rule
    by_attribute = {c.attribute: c.name for c in sink.layout.promoted}
    assert set(by_attribute) == set(HOSTILE)
    assert len({name.lower() for name in by_attribute.values()}) == len(HOSTILE)
    assert by_attribute["status"] != by_attribute["Status"]
    assert by_attribute["from"] == "from"
    assert by_attribute["target"] == "target"
    (changelog_row,) = replication.rows("changes")
    expected = {"from": "reserved word", "Status": "upper", "status": "lower", "名前": "ユニコード",
                "a\\b": 7, "item": "shadows ddb2bq's own column", "_CHANGE_TYPE": "DELETE",
                "target": "the MERGE's alias", "'); DELETE FROM victim; --": True}  # fmt: skip
    assert {a: changelog_row[name] for a, name in by_attribute.items()} == expected
    # AND `item` holds every original name
    assert changelog_row["item"] == {HASH_KEY: "k", RANGE_KEY: 1, **expected}
    if mirror != "cdc":  # the emulator does not apply CDC writes: the cdc mirror stays empty
        (mirror_row,) = replication.rows()
        assert {a: mirror_row[name] for a, name in by_attribute.items()} == expected
        assert mirror_row[sink.layout.keys[0].name] == "k"
