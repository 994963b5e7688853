"""Change -> changelog row and mirror row."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ddb2bq.exceptions import ConversionError
from ddb2bq.records import Change, make_seq
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import build_layout

KEYS = [("pk", "S"), ("sk", "N")]


def change(op: str, new: dict | None = None, old: dict | None = None, position: int = 1) -> Change:
    keys = {"pk": {"S": "a"}, "sk": {"N": "7"}}
    return Change(op, keys, new, old, make_seq(0, position), 1764460800_000000, f"e{position}")  # type: ignore[arg-type]


def test_changelog_row_holds_the_item_once_with_its_types_and_the_typed_columns() -> None:
    # GIVEN a MODIFY with a promoted NUMERIC column
    builder = RowBuilder(
        build_layout(KEYS, promoted={"total": "NUMERIC"}), clock=lambda: 1764460801_000000
    )
    new = {"pk": {"S": "a"}, "sk": {"N": "7"}, "total": {"N": "10.50"}, "big": {"N": "1E-130"}}
    new["tags"] = {"SS": ["b", "a"]}
    old = {"pk": {"S": "a"}, "sk": {"N": "7"}, "total": {"N": "9"}}
    # WHEN rows are built
    rows = builder.build(change("MODIFY", new, old))
    # THEN the changelog holds the new image once, as the item with its type sidecar, and the
    # typed values beside it; the old image is not stored (the default)
    row = rows.changelog
    assert "new_image" not in row
    assert "old_image" not in row
    assert "old_item" not in row
    assert orjson.loads(row["item_types"]) == {"tags": "SS"}
    assert row["changed_at"] == "2025-11-30T00:00:00.000000Z"
    assert row["ingested_at"] == "2025-11-30T00:00:01.000000Z"
    assert (row["pk"], row["sk"], row["total"], row["op"]) == ("a", "7", "10.5", "MODIFY")
    assert orjson.loads(row["item"]) == {
        "pk": "a", "sk": 7, "total": 10.5, "big": 1e-130, "tags": ["a", "b"],
    }  # fmt: skip
    # AND the mirror row is the item's new state
    assert rows.mirror == {
        "pk": "a",
        "sk": "7",
        "total": "10.5",
        "item": row["item"],
        "_seq": row["seq"],
        "_changed_at": row["changed_at"],
    }


def test_hard_delete_has_no_mirror_row_and_soft_delete_keeps_the_last_state() -> None:
    old = {"pk": {"S": "a"}, "sk": {"N": "7"}, "total": {"N": "9"}}
    hard = RowBuilder(build_layout(KEYS, promoted={"total": "INT64"})).build(
        change("REMOVE", None, old)
    )
    soft = RowBuilder(build_layout(KEYS, promoted={"total": "INT64"}, soft_deletes=True)).build(
        change("REMOVE", None, old)
    )
    assert hard.mirror is None
    assert hard.changelog["item"] is None
    assert soft.mirror is not None
    assert soft.mirror["_deleted"] is True
    assert soft.mirror["total"] == "9"
    assert orjson.loads(soft.mirror["item"]) == {"pk": "a", "sk": 7, "total": 9}


def test_a_type_conflict_leaves_the_column_null_and_the_value_in_item() -> None:
    new = {"pk": {"S": "a"}, "sk": {"N": "7"}, "total": {"S": "ten"}}
    rows = RowBuilder(build_layout(KEYS, promoted={"total": "NUMERIC"})).build(
        change("INSERT", new)
    )
    assert rows.changelog["total"] is None
    assert rows.mirror is not None
    assert rows.mirror["total"] is None
    assert orjson.loads(rows.changelog["item"])["total"] == "ten"
    assert rows.conflicts == (("total", "a S value does not fit a NUMERIC column"),)


def test_keys_only_changes_reach_the_changelog_but_not_the_mirror() -> None:
    rows = RowBuilder(build_layout(KEYS)).build(change("MODIFY"))
    assert rows.changelog["item"] is None
    assert rows.changelog["item_types"] is None
    assert rows.mirror is None


def test_a_key_that_does_not_fit_its_column_names_key_and_remedy() -> None:
    layout = build_layout([("id", "N")], key_column_types={"id": "INT64"})
    bad = Change(
        "INSERT",
        {"id": {"N": "1.5"}},
        {"id": {"N": "1.5"}},
        None,
        make_seq(0, 1),
        0,
        "e9",
        table="orders",
    )
    with pytest.raises(
        ConversionError,
        match=r"a change \(table 'orders', eventID e9, key id='1.5'\).*set its type in \[columns\] types",
    ):
        RowBuilder(layout).build(bad)


def test_a_bad_value_names_table_event_key_and_attribute() -> None:
    new = {"pk": {"S": "a"}, "sk": {"N": "7"}, "m": {"M": {"x": {"N": "one"}}}}
    with pytest.raises(
        ConversionError, match=r"a change \(eventID e1, key pk='a', sk='7'\): attribute 'm.x'"
    ):
        RowBuilder(build_layout(KEYS)).build(change("INSERT", new))


def test_an_absent_set_is_an_empty_array_because_bigquery_arrays_are_never_null() -> None:
    new = {"pk": {"S": "a"}, "sk": {"N": "7"}}
    rows = RowBuilder(build_layout(KEYS, promoted={"tags": "ARRAY<STRING>"})).build(
        change("INSERT", new)
    )
    assert rows.changelog["tags"] == []


def test_text_json_cannot_hold_names_its_attribute() -> None:
    # GIVEN an image holding a lone surrogate (Lambda's JSON parser lets one through)
    new = {"pk": {"S": "a"}, "sk": {"N": "7"}, "note": {"S": "\ud800"}}
    # WHEN its rows are built  THEN a ConversionError names the record and the attribute
    with pytest.raises(
        ConversionError, match=r"eventID e1, key pk='a', sk='7'\): attribute 'note'"
    ):
        RowBuilder(build_layout(KEYS)).build(change("INSERT", new))


def test_an_old_image_too_deep_to_store_is_refused_by_name_when_old_images_are_stored() -> None:
    # GIVEN an old image nested 300 levels deep
    deep: dict[str, Any] = {"N": "1"}
    for _ in range(300):
        deep = {"M": {"x": deep}}
    bad = change("MODIFY", {"pk": {"S": "a"}, "sk": {"N": "7"}})
    bad = Change(bad.op, bad.keys, bad.new_image, {"d": deep}, bad.seq, 0, "e1", index=5)
    # WHEN its rows are built with [target] old_images  THEN refused naming record 5 and the
    # attribute
    stored = build_layout(KEYS, old_images=True)
    with pytest.raises(ConversionError, match=r"^record 5 \(eventID e1.*attribute 'd.x.x.x"):
        RowBuilder(stored).build(bad)
    # AND without them (the default) the old image is not stored, so the change is written
    assert RowBuilder(build_layout(KEYS)).build(bad).changelog["item"] is not None
