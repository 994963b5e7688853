"""The SQL of the mirrors of a table with entities, as text (tests/integration/test_entity_mirrors.py
runs every statement on the emulator)."""

from __future__ import annotations

import re

import pytest

from ddb2bq.bigquery.entity_mirrors import (
    DEFAULT_SCOPE,
    default_layout,
    entity_layout,
    entity_scope,
    part_sql,
    scoped_mirrors,
)
from ddb2bq.bigquery.mirror import (
    MirrorScope,
    cdc_table_ddl,
    merge_sql,
    mirror_columns,
    view_ddl,
    view_sql,
)
from ddb2bq.bigquery.sql import TableRef
from ddb2bq.entities import Entities, Entity
from ddb2bq.exceptions import ConfigError
from ddb2bq.schema import Column, TableLayout, build_layout

CHANGES = TableRef("my-project", "shop", "shop_changes")
MIRROR = TableRef("my-project", "shop", "shop")
GENERATIONS = TableRef("my-project", "shop", "shop_generations")
ORDERS = Entity(
    "orders",
    {"pk": "USER#{user_id}", "sk": "ORDER#{ordered_on}#{order_id}", "type": "Order"},
    {"ordered_on": "DATE", "order_id": "INT64"},
    promote=["total"],
)
USERS = Entity("users", {"pk": "USER#{user_id}", "sk": "PROFILE"}, promote=["email"])
ENTITIES = Entities((ORDERS, USERS))
HELD = "COALESCE(`_entity` = 'orders', FALSE)"


def layout(soft: bool = False) -> TableLayout:
    promoted = {"status": "STRING", "total": "NUMERIC", "email": "STRING"}
    return build_layout([("pk", "S"), ("sk", "S")], promoted=promoted, soft_deletes=soft)


def orders(soft: bool = False) -> tuple[TableLayout, MirrorScope]:
    return entity_layout(ORDERS, layout(soft)), entity_scope(ORDERS)


@pytest.mark.parametrize(
    ("part_type", "sql"),
    [
        ("STRING", "JSON_VALUE(`_parts`, '$.p')"),
        ("INT64", "CAST(JSON_VALUE(`_parts`, '$.p') AS INT64)"),
        ("NUMERIC", "CAST(JSON_VALUE(`_parts`, '$.p') AS NUMERIC)"),
        ("BIGNUMERIC", "CAST(JSON_VALUE(`_parts`, '$.p') AS BIGNUMERIC)"),
        ("DATE", "CAST(JSON_VALUE(`_parts`, '$.p') AS DATE)"),
        ("TIMESTAMP", "CAST(JSON_VALUE(`_parts`, '$.p') AS TIMESTAMP)"),
        ("BOOL", "CAST(JSON_VALUE(`_parts`, '$.p') AS BOOL)"),
    ],
)
def test_each_part_type_is_read_from_parts_by_json_value_and_an_exact_cast(
    part_type: str, sql: str
) -> None:
    assert part_sql(Column("p", part_type)) == sql


@pytest.mark.parametrize("name", ["x'; DROP TABLE y; --", "a.b", "9lives", "", "ü"])
def test_a_part_name_that_is_no_column_name_never_reaches_sql(name: str) -> None:
    # GIVEN a part name no configuration accepts WHEN its SQL is asked for THEN it is refused
    with pytest.raises(ValueError, match="no column name"):
        part_sql(Column(name, "STRING"))


@pytest.mark.parametrize("name", ["x'; DROP TABLE y; --", "or'ders", "9x", ""])
def test_an_entity_name_that_is_no_table_name_never_reaches_sql(name: str) -> None:
    with pytest.raises(ValueError, match="cannot name a mirror"):
        MirrorScope(name)


def test_an_entity_view_keeps_the_keys_whose_newest_state_is_of_the_entity() -> None:
    # GIVEN the orders mirror with hard deletes WHEN its view is built
    entity_layout_, scope = orders()
    sql = view_sql(entity_layout_, CHANGES, scope=scope)
    # THEN it selects keys, typed parts, the entity's promoted column, and the rest, in order
    assert sql.splitlines()[0] == (
        "SELECT `pk`, `sk`, `user_id`, `ordered_on`, `order_id`, `total`, `item`, `_seq`, "
        "`_changed_at`"
    )
    # AND reads the parts from `_parts`, typed, beside `_entity`
    assert (
        "  SELECT `pk`, `sk`, JSON_VALUE(`_parts`, '$.user_id') AS `user_id`, "
        "CAST(JSON_VALUE(`_parts`, '$.ordered_on') AS DATE) AS `ordered_on`, "
        "CAST(JSON_VALUE(`_parts`, '$.order_id') AS INT64) AS `order_id`, `total`, `item`, "
        "`_entity`, `op`, `seq` AS `_seq`, `changed_at` AS `_changed_at`\n" in sql
    )
    # AND keeps only live keys of this entity, whatever the other promoted columns
    assert sql.endswith(f"WHERE `op` != 'REMOVE' AND {HELD}")
    assert "`status`" not in sql
    assert "`email`" not in sql


def test_the_tables_own_mirror_keeps_the_keys_of_no_entity_with_its_own_columns() -> None:
    # GIVEN entities WHEN the table's own view is built
    own = default_layout(layout(), ENTITIES, promote=["status"])
    sql = view_sql(own, CHANGES, generations=GENERATIONS, scope=DEFAULT_SCOPE)
    # THEN it holds the keys whose state has no entity, and only its own promoted column
    assert sql.splitlines()[0] == "SELECT `pk`, `sk`, `status`, `item`, `_seq`, `_changed_at`"
    assert "WHERE `op` != 'REMOVE' AND `item` IS NOT NULL AND `_entity` IS NULL AND SUBSTR(" in sql


def test_a_soft_entity_view_takes_the_entity_and_parts_of_the_state_row() -> None:
    # GIVEN soft deletes WHEN the orders view is built
    entity_layout_, scope = orders(soft=True)
    sql = view_sql(entity_layout_, CHANGES, generations=GENERATIONS, scope=scope)
    # THEN the entity, parts and promoted columns are the newest non-REMOVE change's
    assert (
        "SELECT `latest`.`pk`, `latest`.`sk`, `state`.`user_id`, `state`.`ordered_on`, "
        "`state`.`order_id`, `state`.`total`, `state`.`item`, `state`.`_entity`, "
        "`latest`.`_seq`, `latest`.`_changed_at`, `latest`.`op` = 'REMOVE' AS `_deleted`" in sql
    )
    assert "WHERE `op` != 'REMOVE' AND `item` IS NOT NULL\n" in sql
    # AND a key belongs to the entity of that state, deleted or not
    assert f"\nWHERE {HELD} AND SUBSTR(`_seq`, 1, 16) >= (SELECT" in sql
    assert sql.splitlines()[0].endswith("`_changed_at`, `_deleted`")


def test_a_hard_entity_merge_deletes_keys_that_moved_and_inserts_only_its_own() -> None:
    # GIVEN the orders mirror, hard deletes WHEN the MERGE is built
    entity_layout_, scope = orders()
    sql = merge_sql(entity_layout_, CHANGES, TableRef("my-project", "shop", "orders"), scope=scope)
    held = "COALESCE(`source`.`_entity` = 'orders', FALSE)"
    # THEN a newer REMOVE, or a newer change of another entity or none, deletes the key
    assert (
        "WHEN MATCHED AND `source`.`_seq` > `target`.`_seq` AND (`source`.`op` = 'REMOVE' OR "
        f"NOT ({held})) THEN DELETE" in sql
    )
    # AND a newer change of this entity updates its parts too
    assert "THEN UPDATE SET `user_id` = `source`.`user_id`, `ordered_on` = `source`." in sql
    # AND only a change of this entity is inserted
    assert f"WHEN NOT MATCHED AND `source`.`op` != 'REMOVE' AND {held} THEN\n" in sql
    assert "INSERT (`pk`, `sk`, `user_id`, `ordered_on`, `order_id`, `total`, `item`," in sql
    # AND the window is the parameters', no value pasted
    assert set(re.findall(r"@\w+", sql)) == {"@since", "@after"}
    assert not re.search(r"TIMESTAMP\s*'|DATE\s*'", sql)


def test_a_soft_entity_merge_moves_keys_and_keeps_a_deleted_key_in_its_mirror() -> None:
    # GIVEN soft deletes WHEN the orders MERGE is built
    entity_layout_, scope = orders(soft=True)
    sql = merge_sql(entity_layout_, CHANGES, TableRef("my-project", "shop", "orders"), scope=scope)
    held = "COALESCE(`source`.`_entity` = 'orders', FALSE)"
    clauses = sql[sql.index("WHEN") :].split("\nWHEN ")
    # THEN a newer state of another entity deletes the key (it moved), before any update
    assert clauses[0] == (
        "WHEN MATCHED AND `source`.`_seq` > `target`.`_seq` AND `source`.`item` IS NOT NULL AND "
        f"NOT ({held}) THEN DELETE"
    )
    # AND a REMOVE without a state in the window flags the key and keeps its parts
    assert (
        "`user_id` = IF(`source`.`item` IS NOT NULL, `source`.`user_id`, `target`.`user_id`)"
        in clauses[1]
    )
    # AND a key is inserted only with a state of this entity
    assert clauses[2].startswith(f"NOT MATCHED AND {held} THEN\n")


def test_aliases_move_aside_for_part_names() -> None:
    # GIVEN an entity whose parts are named like the SQL's aliases
    entity = Entity("odd", {"pk": "{target}#{source}", "sk": "{latest}#{state}"})
    base = layout(soft=True)
    # WHEN its MERGE is built THEN no alias is a part's name
    sql = merge_sql(entity_layout(entity, base), CHANGES, MIRROR, scope=entity_scope(entity))
    assert "AS `target_`" in sql
    assert ") AS `source_`" in sql
    assert "WITH `latest_` AS (" in sql
    assert "), `state_` AS (" in sql
    assert (
        "`target` = IF(`source_`.`item` IS NOT NULL, `source_`.`target`, `target_`.`target`)" in sql
    )


def test_cdc_ddl_of_an_entity_has_its_typed_parts_after_the_keys() -> None:
    entity_layout_, scope = orders(soft=True)
    ddl = cdc_table_ddl(entity_layout_, TableRef("my-project", "shop", "orders"), scope=scope)
    assert "  `sk` STRING,\n  `user_id` STRING,\n  `ordered_on` DATE,\n  `order_id` INT64,\n" in ddl
    assert "  PRIMARY KEY (`pk`, `sk`) NOT ENFORCED\n)" in ddl


def test_without_a_scope_every_statement_is_the_unscoped_one() -> None:
    # GIVEN a table without entities WHEN its mirrors are listed
    (only,) = scoped_mirrors(layout(soft=True), MIRROR, Entities())
    # THEN there is one, unscoped, and its SQL is the mirror's as before
    assert (only.ref, only.scope) == (MIRROR, None)
    assert only.view_ddl(CHANGES, GENERATIONS) == view_ddl(
        layout(True), CHANGES, MIRROR, GENERATIONS
    )
    assert only.merge_sql(CHANGES) == merge_sql(layout(True), CHANGES, MIRROR)
    assert only.cdc_table_ddl() == cdc_table_ddl(layout(True), MIRROR)
    assert "_entity" not in only.view_ddl(CHANGES) + only.merge_sql(CHANGES)


def test_each_entity_has_a_mirror_named_after_it_with_its_own_promoted_columns() -> None:
    # GIVEN two entities WHEN the mirrors are listed
    mirrors = scoped_mirrors(layout(), MIRROR, ENTITIES, promote=["status"])
    # THEN the table's own comes first, then one per entity, in the same dataset
    assert [(m.ref.table, m.scope.entity if m.scope else "-") for m in mirrors] == [
        ("shop", None),
        ("orders", "orders"),
        ("users", "users"),
    ]
    assert [c.name for c in mirrors[2].columns()] == [
        "pk", "sk", "user_id", "email", "item", "_seq", "_changed_at",
    ]  # fmt: skip
    assert mirror_columns(mirrors[0].layout, mirrors[0].scope) == mirrors[0].columns()


def test_a_part_named_like_a_column_of_the_mirror_is_refused() -> None:
    # GIVEN an entity whose part has the name of a key column
    entity = Entity("clash", {"pk": "A#{sk}"})
    # WHEN its layout is made THEN the error names the entity and the part
    with pytest.raises(ConfigError, match=r"Entity 'clash': the key part \{sk\}"):
        entity_layout(entity, layout())


def test_hostile_names_reach_entity_sql_only_quoted() -> None:
    # GIVEN an entity promoting an attribute named with SQL
    hostile = "x`; DROP TABLE y; --"
    entity = Entity("evil", {"pk": "E#{id}"}, promote=[hostile])
    base = build_layout([("pk", "S")], promoted={hostile: "STRING"})
    scoped, scope = entity_layout(entity, base), entity_scope(entity)
    (column,) = scoped.promoted
    # WHEN its statements are built THEN the name is a sanitised, quoted column only
    for sql in (
        view_sql(scoped, CHANGES, scope=scope),
        merge_sql(scoped, CHANGES, MIRROR, scope=scope),
    ):
        assert "DROP TABLE" not in sql
        assert f"`{column.name}`" in sql
        assert column.name.startswith("x___DROP_TABLE_y")
