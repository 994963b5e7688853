"""Entities end to end: a moto table holding users, orders and order lines (a NEW_IMAGE stream),
its stream delivered as Lambda events to the handler, into local-bigquery; each entity's mirror
equals the table's items of that entity, classified here independently of ddb2bq's rules.

Covered: key parts typed and exact (INT64 2^63-1, DATE), items of no entity in the table's own
mirror, an item whose ``type`` changes moving between mirrors, REMOVEs without an old image (one
that the keys classify, one whose rule reads ``type``), a hostile key value that is only data; the
``view`` and ``merge`` mirrors; and an entity added later, filled from the changelog alone.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.aws_lambda import Handler
from ddb2bq.bigquery.factory import pipeline_from_config
from ddb2bq.bigquery.reclassify import reclassify
from ddb2bq.bigquery.tables import (
    TableRefs,
    config_entities,
    init_tables,
    initial_layout,
    load_layout,
    merge_mirror,
)
from ddb2bq.cli.main import main
from ddb2bq.config import Config, load_config
from ddb2bq.convert import plain_item
from ddb2bq.dead_letters.replay import DiscardDeadLetters
from ddb2bq.dynamodb.events import lambda_events
from ddb2bq.dynamodb.streams import read_records
from ddb2bq.exceptions import ConfigError
from ddb2bq.local import REGION, Server
from tests.integration.aws_lambda.conftest import query, replication_environ
from tests.strategies import to_event_json

HOSTILE = "x'; DROP TABLE y; --"
MAX = 2**63 - 1
USERS = {"name": "users", "match": {"pk": "USER#{user_id}", "sk": "PROFILE"},
         "promote": ["email"]}  # fmt: skip
ORDERS = {
    "name": "orders",
    "match": {"pk": "USER#{user_id}", "sk": "ORDER#{ordered_on}#{order_id}", "type": "Order"},
    "types": {"ordered_on": "DATE", "order_id": "INT64"},
    "promote": ["total"],
}
LINES = {
    "name": "order_lines",
    "match": {"pk": "ORDER#{order_id}", "sk": "LINE#{line_no}"},
    "types": {"order_id": "INT64", "line_no": "INT64"},
    "promote": ["sku"],
}
TYPES = {"email": "STRING", "total": "NUMERIC", "sku": "STRING"}
PROMOTED = {"users": "email", "orders": "total", "order_lines": "sku"}


def types_of(entities: list[dict[str, Any]]) -> str:
    """``DDB2BQ_COLUMNS_TYPES`` for the entities' promoted attributes."""
    return json.dumps({a: TYPES[a] for e in entities for a in e["promote"]})


def s(text: str) -> dict[str, str]:
    return {"S": text}


def write_workload(dynamodb: Any, table: str) -> None:
    """Users, orders, order lines and items of none; a type change each way; two deletes."""
    items = [
        {"pk": s("USER#1"), "sk": s("PROFILE"), "email": s("one@x.com")},
        {"pk": s(f"USER#{HOSTILE}"), "sk": s("PROFILE"), "email": s(HOSTILE)},
        {"pk": s("USER#1"), "sk": s(f"ORDER#2026-11-30#{MAX}"), "type": s("Order"),
         "total": {"N": "12.5"}},
        {"pk": s("USER#2"), "sk": s("ORDER#2026-01-02#7"), "type": s("Order"), "total": {"N": "3"}},
        {"pk": s("USER#2"), "sk": s("ORDER#2026-02-03#8"), "type": s("Order")},
        {"pk": s("USER#1"), "sk": s("ORDER#2026-03-04#9"), "type": s("Order")},
        {"pk": s("USER#3"), "sk": s("ORDER#2026-05-06#10"), "type": s("Draft")},
        {"pk": s("ORDER#7"), "sk": s("LINE#1"), "sku": s("A-1")},
        {"pk": s("ORDER#7"), "sk": s("LINE#2"), "sku": s("B-2")},
        {"pk": s("USER#1"), "sk": s("SETTINGS"), "theme": s("dark")},
        {"pk": s("USER#1"), "sk": s("ORDER#2026-01-01#0981"), "type": s("Order")},  # 0981: none
        {"pk": s("misc"), "sk": s("1")},
    ]  # fmt: skip
    for item in items:
        dynamodb.put_item(TableName=table, Item=item)
    retype = {
        ("USER#1", "ORDER#2026-03-04#9"): "Refund",
        ("USER#3", "ORDER#2026-05-06#10"): "Order",
    }
    for (pk, sk), kind in retype.items():  # orders -> none, and none -> orders
        dynamodb.update_item(
            TableName=table, Key={"pk": s(pk), "sk": s(sk)}, UpdateExpression="SET #t = :t",
            ExpressionAttributeNames={"#t": "type"}, ExpressionAttributeValues={":t": s(kind)},
        )  # fmt: skip
    for pk, sk in (("USER#2", "ORDER#2026-02-03#8"), ("ORDER#7", "LINE#2")):
        dynamodb.delete_item(TableName=table, Key={"pk": s(pk), "sk": s(sk)})


def expected_entity(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The item's mirror and key parts, by prefixes: written apart from ddb2bq's templates."""
    pk, sk, kind = item["pk"]["S"], item["sk"]["S"], item.get("type", {}).get("S")
    if pk.startswith("USER#") and sk == "PROFILE":
        return "users", {"user_id": pk.removeprefix("USER#")}
    if pk.startswith("USER#") and sk.startswith("ORDER#") and kind == "Order":
        ordered_on, _, order_id = sk.removeprefix("ORDER#").partition("#")
        if re.fullmatch(r"0|[1-9][0-9]*", order_id):
            return "orders", {"user_id": pk.removeprefix("USER#"),
                              "ordered_on": date.fromisoformat(ordered_on),
                              "order_id": int(order_id)}  # fmt: skip
    if pk.startswith("ORDER#") and sk.startswith("LINE#"):
        return "order_lines", {"order_id": int(pk[6:]), "line_no": int(sk[5:])}
    return "", {}


def expected_mirrors(
    dynamodb: Any, table: str, own: str, promoted: Mapping[str, str] = PROMOTED
) -> dict[str, dict[Any, Any]]:
    items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    mirrors: dict[str, dict[Any, Any]] = {own: {}, "users": {}, "orders": {}, "order_lines": {}}
    for raw in items:
        item = to_event_json(raw)
        name, parts = expected_entity(item)
        plain = orjson.loads(orjson.dumps(plain_item(item)))
        row = {**parts, "item": plain}
        if name in promoted:
            value = plain.get(promoted[name])
            row[promoted[name]] = Decimal(str(value)) if isinstance(value, float | int) else value
        mirrors[name or own][(item["pk"]["S"], item["sk"]["S"])] = row
    return mirrors


def mirror_contents(
    client: bigquery.Client, config: Config, retry: Retry, promoted: Mapping[str, str] = PROMOTED
) -> dict[str, Any]:
    refs = TableRefs.from_config(config, client.project)
    found = {}
    for name in (refs.mirror.table, "users", "orders", "order_lines"):
        ref = f"`{refs.mirror.project}.{refs.mirror.dataset}.{name}`"
        rows = query(client, f"SELECT * FROM {ref}", retry)
        drop = {"pk", "sk", "_seq", "_changed_at"}
        found[name] = {
            (r["pk"], r["sk"]): {
                k: (json.loads(v) if k == "item" and isinstance(v, str) else v)
                for k, v in r.items()
                if k not in drop
            }
            for r in rows
        }
    return found


def replicate(
    dynamodb: Any,
    dynamodbstreams: Any,
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    tmp_path: Path,
    entities: list[dict[str, Any]],
    **settings: str,
) -> tuple[str, dict[str, str], Config]:
    """A NEW_IMAGE table with the workload, ``ddb2bq init``, and its stream through the handler."""
    table = f"shop_{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )  # fmt: skip
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    write_workload(dynamodb, table)
    environ = replication_environ(
        bigquery_server, bq_project, dataset.dataset_id, table, tmp_path / "dead-letters",
        DDB2BQ_ENTITIES=json.dumps(entities), DDB2BQ_COLUMNS_TYPES=types_of(entities), **settings,
    )  # fmt: skip
    config = load_config(environ=environ)
    init_tables(bq_client, config, initial_layout(config, [("pk", "S"), ("sk", "S")]))
    handler = Handler(config)
    records = read_records(dynamodbstreams, stream_arn)
    for event in lambda_events(records, stream_arn, REGION, batch_size=5):
        assert handler(event) == {"batchItemFailures": []}  # type: ignore[arg-type]
    return table, environ, config


@pytest.mark.parametrize(("mirror", "writer"), [("view", "insert_all"), ("merge", "storage_write")])
def test_each_entity_mirror_equals_the_items_of_that_entity(
    mirror: str,
    writer: str,
    dynamodb: Any,
    dynamodbstreams: Any,
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
) -> None:
    # GIVEN users, orders and order lines in one table, replicated through the Lambda handler
    table, _, config = replicate(
        dynamodb, dynamodbstreams, bigquery_server, bq_project, bq_client, dataset, tmp_path,
        [USERS, ORDERS, LINES], DDB2BQ_TARGET_MIRROR=mirror, DDB2BQ_TARGET_WRITER=writer,
    )  # fmt: skip
    # WHEN the mirrors are read (a merge mirror after `ddb2bq merge`)
    if mirror == "merge":
        merge_mirror(bq_client, config)
    found = mirror_contents(bq_client, config, bq_retry)
    # THEN each equals the table's items of its entity, key parts typed and exact
    expected = expected_mirrors(dynamodb, table, table)
    assert found == expected
    assert expected["orders"][("USER#1", f"ORDER#2026-11-30#{MAX}")]["order_id"] == MAX
    assert expected["users"][(f"USER#{HOSTILE}", "PROFILE")]["user_id"] == HOSTILE
    # ... the retyped items moved, and the deleted ones are in no mirror
    assert ("USER#1", "ORDER#2026-03-04#9") in expected[table]
    assert ("USER#3", "ORDER#2026-05-06#10") in expected["orders"]
    assert all(("USER#2", "ORDER#2026-02-03#8") not in rows for rows in found.values())
    assert all(("ORDER#7", "LINE#2") not in rows for rows in found.values())


def test_an_entity_added_later_is_filled_from_the_changelog_alone(
    dynamodb: Any,
    dynamodbstreams: Any,
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
) -> None:
    # GIVEN a replication whose changes were written before order_lines was an entity
    table, environ, _ = replicate(
        dynamodb, dynamodbstreams, bigquery_server, bq_project, bq_client, dataset, tmp_path,
        [USERS, ORDERS], DDB2BQ_TARGET_WRITER="insert_all",
    )  # fmt: skip
    # WHEN order_lines is configured, `ddb2bq init` runs and the changelog is classified again
    # (promoted columns added now are NULL on rows written before, as for [columns] promote)
    later = [USERS, ORDERS, {**LINES, "promote": []}]
    config = load_config(
        environ={**environ, "DDB2BQ_ENTITIES": json.dumps(later),
                 "DDB2BQ_COLUMNS_TYPES": types_of(later)}
    )  # fmt: skip
    init_tables(bq_client, config, initial_layout(config, [("pk", "S"), ("sk", "S")]))
    refs = TableRefs.from_config(config, bq_client.project)
    layout = load_layout(bq_client, refs)
    result = reclassify(bq_client, refs.changes, layout, config_entities(config, layout))
    # THEN the order lines' changes (two inserts, a REMOVE by its keys) are of order_lines now
    assert result.classified == 3
    promoted = {"users": "email", "orders": "total"}
    expected = expected_mirrors(dynamodb, table, table, promoted)
    assert mirror_contents(bq_client, config, bq_retry, promoted) == expected
    assert list(expected["order_lines"]) == [("ORDER#7", "LINE#1")]
    # ... and a second run finds nothing left to classify
    again = reclassify(bq_client, refs.changes, layout, config_entities(config, layout))
    assert again.classified == 0


def test_entities_on_a_changelog_init_has_not_prepared_are_refused_before_any_write(
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    tmp_path: Path,
) -> None:
    # GIVEN a changelog made by `ddb2bq init` before [[entities]] were configured
    table = f"shop_{uuid.uuid4().hex[:8]}"
    environ = replication_environ(
        bigquery_server, bq_project, dataset.dataset_id, table, tmp_path / "dead-letters"
    )
    before = load_config(environ=environ)
    init_tables(bq_client, before, initial_layout(before, [("pk", "S"), ("sk", "S")]))
    # WHEN the function starts with entities but init was not run again
    after = load_config(environ={**environ, "DDB2BQ_ENTITIES": json.dumps([USERS])})
    with pytest.raises(ConfigError) as refused:
        pipeline_from_config(after, DiscardDeadLetters(), client=bq_client)
    # THEN it is refused, naming the changelog and what to run, instead of every row being
    # refused by BigQuery and dead-lettered
    assert f"{table}_changes" in str(refused.value)
    assert "ddb2bq init" in str(refused.value)


def test_the_stream_runner_fills_each_entity_mirror_as_the_handler_does(
    dynamodb: Any,
    local_env: dict[str, str],
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the single table with users, orders and order lines (NEW_IMAGE stream), and a
    # configuration with the three entities in [[entities]] (the file, not the environment)
    table = f"shop_{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )  # fmt: skip
    write_workload(dynamodb, table)
    path = tmp_path / "ddb2bq.toml"
    path.write_text(
        f'[source]\ntable = "{table}"\n[target]\ndataset = "{dataset.dataset_id}"\n'
        f'writer = "insert_all"\n[columns]\ntypes = {_inline(TYPES)}\n'
        f'[dead_letters]\npath = "{tmp_path / "dead-letters"}"\n'
        f'[runner]\ncheckpoints = "{tmp_path / "state.sqlite"}"\n'
        + "".join(_entity_toml(e) for e in (USERS, ORDERS, LINES))
    )
    monkeypatch.delenv("DDB2BQ_ENTITIES", raising=False)
    # WHEN `ddb2bq init` and `ddb2bq run --until-caught-up` run
    assert main(["init", "--config", str(path)]) == 0
    assert main(["run", "--config", str(path), "--until-caught-up"]) == 0
    # THEN each entity's mirror equals the table's items of that entity, as through Lambda
    config = load_config(path, environ=local_env)
    assert mirror_contents(bq_client, config, bq_retry) == expected_mirrors(dynamodb, table, table)
    # AND `ddb2bq verify` finds the table equal to its mirrors taken together (exit 0)
    assert main(["verify", "--config", str(path), "--recheck-after", "0"]) == 0


def _inline(values: Mapping[str, str]) -> str:
    """A TOML inline table of string values."""
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in values.items()) + " }"


def _entity_toml(entity: Mapping[str, Any]) -> str:
    """One ``[[entities]]`` table of ``entity`` (inline tables for match and types)."""
    lines = [f"name = {json.dumps(entity['name'])}", f"match = {_inline(entity['match'])}"]
    if entity.get("types"):
        lines.append(f"types = {_inline(entity['types'])}")
    lines.append(f"promote = {json.dumps(entity.get('promote', []))}")
    return "\n[[entities]]\n" + "\n".join(lines) + "\n"
