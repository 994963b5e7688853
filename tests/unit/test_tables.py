"""The pure parts of ddb2bq.bigquery.tables: table names from config, the key from DescribeTable, and
the layout written into (and read back from) a changelog's schema."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import bigquery

from ddb2bq.bigquery.tables import (
    TableRefs,
    column_of,
    initial_layout,
    layout_from_schema,
    schema_field,
)
from ddb2bq.config import ColumnsConfig, Config, SourceConfig, TargetConfig
from ddb2bq.dynamodb.tables import describe_key_schema
from ddb2bq.exceptions import ConfigError
from ddb2bq.schema import Column, build_layout

CONFIG = Config(
    source=SourceConfig(table="orders"),
    target=TargetConfig(project="p", dataset="d", deletes="soft"),
    columns=ColumnsConfig(
        promote=("status", "first name", "untyped"),
        types={"status": "string", "first name": "INT64", "order": "STRING"},
    ),
)


class FakeDynamoDB:
    """The DescribeTable answer of a table keyed by (customer S, order N), range key listed first."""

    class exceptions:  # noqa: N801 (boto3's spelling)
        class ResourceNotFoundException(Exception):  # noqa: N818 (boto3's name)
            pass

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        if TableName != "orders":
            raise self.exceptions.ResourceNotFoundException(TableName)
        return {
            "Table": {
                "KeySchema": [
                    {"AttributeName": "order", "KeyType": "RANGE"},
                    {"AttributeName": "customer", "KeyType": "HASH"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "customer", "AttributeType": "S"},
                    {"AttributeName": "order", "AttributeType": "N"},
                    {"AttributeName": "gsi_key", "AttributeType": "S"},
                ],
            }
        }


def test_table_refs_name_the_changelog_after_the_table() -> None:
    refs = TableRefs.from_config(CONFIG)
    assert (refs.changes.api, refs.mirror.api) == ("p.d.orders_changes", "p.d.orders")


def test_table_refs_take_the_clients_project_and_say_what_is_missing() -> None:
    no_project = Config(source=SourceConfig(table="t"), target=TargetConfig(dataset="d"))
    assert TableRefs.from_config(no_project, "from-client").mirror.api == "from-client.d.t"
    with pytest.raises(ConfigError, match=r"\[target\] project"):
        TableRefs.from_config(no_project)
    with pytest.raises(ConfigError, match=r"\[target\] dataset"):
        TableRefs.from_config(Config(source=SourceConfig(table="t")), "p")


def test_key_schema_puts_the_hash_key_first() -> None:
    assert describe_key_schema(FakeDynamoDB(), "orders") == [("customer", "S"), ("order", "N")]


def test_a_missing_dynamodb_table_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'nope' does not exist"):
        describe_key_schema(FakeDynamoDB(), "nope")


def test_initial_layout_promotes_only_typed_attributes_and_types_keys_as_configured() -> None:
    # GIVEN promote with and without types, and a key typed STRING in [columns] types
    layout = initial_layout(CONFIG, [("customer", "S"), ("order", "N")])
    # THEN only typed attributes have columns yet, and the key keeps its configured type
    assert [(c.name, c.type) for c in layout.keys] == [("customer", "STRING"), ("order", "STRING")]
    assert [(c.attribute, c.type) for c in layout.promoted] == [
        ("first name", "INT64"),
        ("status", "STRING"),
    ]
    assert layout.soft_deletes


def test_schema_fields_record_the_attribute_and_read_back_to_the_same_layout() -> None:
    # GIVEN a layout with a renamed attribute, an array column and a key
    layout = build_layout(
        [("Id", "N")], promoted={"first name": "NUMERIC", "tags": "ARRAY<STRING>", "ok": "BOOL"}
    )
    # WHEN written as a changelog schema (as the API answers: legacy type names) and read back
    fields = [schema_field(c) for c in layout.changelog_columns()]
    answered = [
        bigquery.SchemaField(
            f.name,
            {"BOOL": "BOOLEAN", "INT64": "INTEGER"}.get(f.field_type, f.field_type),
            mode=f.mode,
            description=f.description,
        )
        for f in fields
    ]
    # THEN the layout is the same, attribute names included
    assert layout_from_schema(answered, layout) == layout
    by_name = {f.name: f for f in fields}
    assert by_name["first_name_1b836d86"].description == "DynamoDB attribute: first name"
    assert by_name["tags"].mode == "REPEATED"
    assert by_name["item"].description is None


def test_a_column_without_a_description_is_its_own_attribute() -> None:
    assert column_of(bigquery.SchemaField("note", "STRING")) == Column("note", "STRING", "note")
    assert column_of(bigquery.SchemaField("n", "INTEGER", mode="REPEATED")).type == "ARRAY<INT64>"


def test_an_attribute_name_too_long_for_a_description_cannot_be_promoted() -> None:
    with pytest.raises(ConfigError, match="too long to promote"):
        schema_field(Column("x", "STRING", attribute="a" * 1100))


@pytest.mark.parametrize(
    ("table", "mirror"),
    [("orders.v2", "orders_v2_ace4ce8e"), ("orders-v2", "orders-v2"), ("orders_v2", "orders_v2")],
)
def test_every_table_of_a_replication_has_the_bigquery_name_of_its_dynamodb_table(
    table: str, mirror: str
) -> None:
    # GIVEN a DynamoDB table whose name BigQuery may refuse (a dot)
    config = Config(source=SourceConfig(table=table), target=TargetConfig(project="p", dataset="d"))
    # WHEN its BigQuery tables are named
    refs = TableRefs.from_config(config)
    # THEN mirror, changelog and generations all derive from the one BigQuery name
    assert (refs.mirror.table, refs.changes.table, refs.generations.table) == (
        mirror,
        f"{mirror}_changes",
        f"{mirror}_generations",
    )


def test_a_target_table_bigquery_refuses_is_named_with_one_it_accepts() -> None:
    config = Config(
        source=SourceConfig(table="orders"),
        target=TargetConfig(project="p", dataset="d", table="orders.mirror"),
    )
    with pytest.raises(ConfigError, match=r"\[target\] table 'orders.mirror'.*use 'orders_mirror'"):
        TableRefs.from_config(config)


def test_a_type_for_an_attribute_that_gets_no_column_is_refused_at_init() -> None:
    # GIVEN a type for an attribute neither promoted nor a key (the keys come from DescribeTable)
    config = Config(
        source=SourceConfig(table="orders"),
        columns=ColumnsConfig(promote=("status",), types={"status": "STRING", "total": "NUMERIC"}),
    )
    # WHEN init builds the first layout  THEN it refuses, naming the attribute and the fix
    with pytest.raises(ConfigError, match=r"\[columns\] types gives 'total' a type.*add it to"):
        initial_layout(config, [("customer", "S"), ("order", "N")])
