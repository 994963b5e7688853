"""Entities wired into the configuration, the changelog rows and the function's environment."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from ddb2bq.config import load_config
from ddb2bq.deploy.template import function_environment
from ddb2bq.entities import Entities
from ddb2bq.exceptions import ConfigError
from ddb2bq.records import Change
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import build_layout

RAW = [
    {"name": "orders",
     "match": {"pk": "USER#{user_id}", "sk": "ORDER#{order_id}", "type": "Order"},
     "types": {"order_id": "INT64"}, "promote": ["total", "status"]},
    {"name": "users", "match": {"pk": "USER#{user_id}"}, "promote": ["email"]},
]  # fmt: skip
TOML = """
[source]
table = "shop"
[columns]
promote = ["status"]
[[entities]]
name = "orders"
match = { pk = "USER#{user_id}", sk = "ORDER#{order_id}", type = "Order" }
types = { order_id = "INT64" }
promote = ["total", "status"]
[[entities]]
name = "users"
match = { pk = "USER#{user_id}" }
promote = ["email"]
"""
ENTITIES = Entities.from_config(RAW, table="shop", keys=["pk", "sk"])
LAYOUT = build_layout([("pk", "S"), ("sk", "S")]).with_entities(ENTITIES)


def change(op: str, new: dict | None, old: dict | None = None, sk: str = "ORDER#9") -> Change:  # type: ignore[type-arg]
    keys = {"pk": {"S": "USER#1"}, "sk": {"S": sk}}
    return Change(op, keys, new, old, "0/0/0/1", 0, "e1")


def test_entities_come_from_the_file_and_from_ddb2bq_entities(tmp_path: Path) -> None:
    # GIVEN the same entities in a TOML file and as DDB2BQ_ENTITIES
    path = tmp_path / "ddb2bq.toml"
    path.write_text(TOML, encoding="utf-8")
    from_file = load_config(path, environ={})
    from_env = load_config(
        environ={"DDB2BQ_SOURCE_TABLE": "shop", "DDB2BQ_COLUMNS_PROMOTE": "status",
                 "DDB2BQ_ENTITIES": json.dumps(RAW)}
    )  # fmt: skip
    # THEN both read the same, and the promoted attributes are the union, in order
    assert list(from_file.entities) == list(from_env.entities) == RAW
    assert from_file.promoted_attributes == ("status", "total", "email")


@pytest.mark.parametrize(
    "text", ['{"name": "x"}', '[{"match": {}}]', "[{", '[{"name": "a", "promote": "x"}]']
)
def test_a_malformed_ddb2bq_entities_is_refused_by_name(text: str) -> None:
    with pytest.raises(ConfigError, match="DDB2BQ_ENTITIES"):
        load_config(environ={"DDB2BQ_ENTITIES": text})


def test_the_function_environment_carries_the_entities(tmp_path: Path) -> None:
    path = tmp_path / "ddb2bq.toml"
    path.write_text(TOML + '[target]\ndataset = "d"\nproject = "p"\n', encoding="utf-8")
    environment = function_environment(load_config(path, environ={}))
    assert json.loads(environment["DDB2BQ_ENTITIES"]) == RAW
    assert load_config(environ={"DDB2BQ_ENTITIES": environment["DDB2BQ_ENTITIES"]}).entities


def test_the_changelog_row_names_the_entity_and_its_typed_parts() -> None:
    new = {"pk": {"S": "USER#1"}, "sk": {"S": "ORDER#9223372036854775807"}, "type": {"S": "Order"}}
    rows = RowBuilder(LAYOUT, clock=lambda: 0).build(change("INSERT", new))
    assert rows.changelog["_entity"] == "orders" == rows.entity
    assert rows.changelog["_parts"] == '{"user_id":"1","order_id":9223372036854775807}'
    assert orjson.loads(rows.changelog["_parts"])["order_id"] == 2**63 - 1
    assert [c.name for c in LAYOUT.changelog_columns()][-2:] == ["_entity", "_parts"]


def test_a_remove_is_classified_by_its_old_image_else_only_when_the_keys_decide() -> None:
    builder = RowBuilder(LAYOUT, clock=lambda: 0)
    old = {"pk": {"S": "USER#1"}, "sk": {"S": "ORDER#9"}, "type": {"S": "Order"}}
    assert builder.build(change("REMOVE", None, old)).entity == "orders"
    # orders reads `type`, and its key templates match: the keys cannot tell (not "users")
    assert builder.build(change("REMOVE", None)).changelog["_entity"] is None
    # no orders key: users reads only keys and decides
    removed = builder.build(change("REMOVE", None, sk="PROFILE"))
    assert (removed.entity, removed.changelog["_parts"]) == ("users", '{"user_id":"1"}')


def test_without_entities_the_rows_are_unchanged() -> None:
    rows = RowBuilder(build_layout([("pk", "S"), ("sk", "S")]), clock=lambda: 0).build(
        change("INSERT", {"pk": {"S": "USER#1"}, "sk": {"S": "ORDER#9"}})
    )
    assert "_entity" not in rows.changelog
    assert rows.entity is None
