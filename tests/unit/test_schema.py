"""Column names, promoted-column types and additive evolution."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddb2bq.schema import (
    MAX_NAME,
    assign_names,
    build_layout,
    column_base_name,
    infer_type,
)

VALID = r"[A-Za-z_][A-Za-z0-9_]*"


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("status", "status"),
        ("first name", "first_name"),
        ("2fa", "_2fa"),
        ("", "_"),
        ("_CHANGE_TYPE", "a_CHANGE_TYPE"),
        ("_partitiontime", "a_partitiontime"),
        ("größe", "gr__e"),
        ("x`; DROP TABLE y; --", "x___DROP_TABLE_y____"),
    ],
)
def test_base_names_are_names_bigquery_accepts(attribute: str, expected: str) -> None:
    assert column_base_name(attribute) == expected


def test_names_differing_only_in_case_get_distinct_columns() -> None:
    # GIVEN attributes BigQuery would see as one column
    names = assign_names(["Status", "status", "STATUS"])
    # THEN each gets its own, case-insensitively distinct, column
    assert len({n.lower() for n in names.values()}) == 3
    assert names["STATUS"] == "STATUS"  # code-point order: upper case first


def test_existing_columns_keep_their_names_and_new_ones_never_steal_them() -> None:
    first = assign_names(["a b"], taken=["item"])
    later = assign_names(["a_b", "item"], taken=["item", *first.values()])
    assert later["a_b"] == "a_b"
    assert later["item"].startswith("item_")
    assert first["a b"].startswith("a_b_")


def test_long_names_are_cut_to_300_characters_deterministically() -> None:
    attribute = "x" * 400
    (name,) = assign_names([attribute]).values()
    assert len(name) <= MAX_NAME
    assert assign_names([attribute]) == assign_names([attribute])
    assert assign_names(["x" * 301])[("x" * 301)] != name


@given(
    st.lists(st.text(max_size=320), max_size=12, unique=True),
    st.lists(st.text(max_size=20), max_size=4),
)
def test_any_attribute_names_get_valid_unique_columns(
    attributes: list[str], taken: list[str]
) -> None:
    names = assign_names(attributes, taken=taken)
    lowered = [n.lower() for n in names.values()]
    assert len(set(lowered)) == len(lowered)
    assert not set(lowered) & {t.lower() for t in taken}
    for name in names.values():
        assert len(name) <= MAX_NAME
        assert __import__("re").fullmatch(VALID, name)
        assert not name.lower().startswith(
            ("_change_", "_partition", "_table_", "_file_", "_row_timestamp")
        )
    assert assign_names(list(reversed(attributes)), taken=taken) == names


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([{"N": "1"}, {"N": "-9223372036854775808"}], "INT64"),
        ([{"N": "1"}, {"N": "1.5"}], "NUMERIC"),
        ([{"N": "1"}, {"N": "1E-20"}], "BIGNUMERIC"),
        ([{"N": "1"}, {"N": "1E+100"}], "STRING"),
        ([{"S": "a"}, {"NULL": True}], "STRING"),
        ([{"NULL": True}], None),
        ([{"SS": ["a"]}], "ARRAY<STRING>"),
        ([{"NS": ["1"]}, {"NS": ["2.5"]}], "ARRAY<NUMERIC>"),
        ([{"M": {}}, {"L": []}], "JSON"),
        ([{"S": "a"}, {"N": "1"}], "JSON"),
        ([{"B": "AA=="}], "BYTES"),
        ([{"BOOL": True}], "BOOL"),
    ],
)
def test_type_inference_widens(values: list[dict[str, Any]], expected: str | None) -> None:
    assert infer_type(values) == expected


def test_layout_columns_and_additive_evolution() -> None:
    # GIVEN a table keyed by pk (S) and sk (N) with one promoted column
    layout = build_layout(
        [("pk", "S"), ("sk", "N")], promoted={"total": "NUMERIC"}, soft_deletes=True
    )
    assert [(c.name, c.type) for c in layout.keys] == [("pk", "STRING"), ("sk", "BIGNUMERIC")]
    assert [c.name for c in layout.mirror_columns()] == [
        "pk",
        "sk",
        "total",
        "item",
        "_seq",
        "_changed_at",
        "_deleted",
    ]
    changelog = [c.name for c in layout.changelog_columns()]
    assert changelog[:5] == ["event_id", "op", "seq", "changed_at", "ingested_at"]
    # WHEN attributes are promoted later, one colliding with an existing column
    evolved = layout.with_promoted({"Total": "STRING", "item": "JSON", "total": "INT64"})
    # THEN only new columns are added, existing ones unchanged, names never collide
    assert evolved.promoted[0] == layout.promoted[0]
    added = {c.attribute: c for c in evolved.promoted[1:]}
    assert set(added) == {"Total", "item"}
    assert added["item"].name.startswith("item_")
    assert added["Total"].name.startswith("Total_")
    assert added["Total"].type == "STRING"


def test_key_column_types_can_be_overridden() -> None:
    layout = build_layout([("id", "N")], key_column_types={"id": "string"})
    assert layout.keys[0].type == "STRING"


# --- table names (bigquery_table_name) -----------------------------------------------------------

import re  # noqa: E402 (this part was appended: the module's head belongs to other changes)

from ddb2bq.schema import bigquery_table_name  # noqa: E402

DYNAMODB_NAME = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
    min_size=3,
    max_size=255,
)


@pytest.mark.parametrize("name", ["orders", "orders-v2", "orders_v2", "Orders2024", "a-b_c"])
def test_a_table_name_bigquery_accepts_is_kept(name: str) -> None:
    # GIVEN a DynamoDB table name BigQuery accepts as it is  THEN existing tables keep it
    assert bigquery_table_name(name) == name


def test_dotted_dashed_and_underscored_names_stay_three_tables() -> None:
    # GIVEN three DynamoDB tables that differ only in their separator
    names = {n: bigquery_table_name(n) for n in ("orders.v2", "orders-v2", "orders_v2")}
    # THEN the dotted one (BigQuery refuses dots) is sanitised with its hash; none collide
    assert names == {
        "orders.v2": "orders_v2_ace4ce8e",
        "orders-v2": "orders-v2",
        "orders_v2": "orders_v2",
    }


@given(DYNAMODB_NAME)
def test_every_dynamodb_table_name_becomes_a_bigquery_table_name(name: str) -> None:
    # GIVEN any DynamoDB table name WHEN it is named for BigQuery
    table = bigquery_table_name(name)
    # THEN BigQuery accepts it with its _generations suffix, and it is the same every time
    assert re.fullmatch(r"[A-Za-z0-9_-]+", table)
    assert len(f"{table}_generations".encode()) <= 1024
    assert table == bigquery_table_name(name)
    assert (table == name) == ("." not in name)


@given(DYNAMODB_NAME, DYNAMODB_NAME)
def test_different_dynamodb_tables_get_different_bigquery_tables(a: str, b: str) -> None:
    if a != b:
        assert bigquery_table_name(a) != bigquery_table_name(b)


def test_a_name_too_long_for_bigquery_is_cut_and_hashed() -> None:
    # GIVEN a name that fits BigQuery's 1,024 bytes only without the _generations suffix
    long = "x" * 1020
    # THEN it is cut to leave room for the suffix, with the hash that keeps it apart
    table = bigquery_table_name(long)
    assert len(f"{table}_generations") == 1024
    assert table != bigquery_table_name("x" * 1021)
