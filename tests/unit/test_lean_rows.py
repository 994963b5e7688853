"""The lean changelog row: each image once, as the plain item with a sidecar of its DynamoDB
types, and read back exactly, in both row formats (ddb2bq.images)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb2bq.convert import lean_item
from ddb2bq.exceptions import ConversionError
from ddb2bq.images import dynamodb_item, image_columns, new_image, old_image
from ddb2bq.records import Change, make_seq
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import build_layout
from ddb2bq.verify.canonical import canonical_map
from tests.strategies import EXTREME_NUMBERS, attribute_values, items, to_event_json

KEYS = [("pk", "S"), ("sk", "N")]
EXTREMES = [
    *EXTREME_NUMBERS,
    "9007199254740993",  # 2**53 + 1: no float holds it
    "0.30000000000000004",
    "-0",
]
TEN_TYPES = [
    {"S": "text"},
    {"N": "1E-130"},
    {"B": "AAEC/w=="},
    {"BOOL": False},
    {"NULL": True},
    {"SS": ["b", "a"]},
    {"NS": ["12345678901234567890123456789012345678", "1.5", "-3"]},
    {"BS": ["AQ==", "AA=="]},
    {"M": {"n": {"N": "1"}}},
    {"L": [{"S": "x"}, {"B": "AA=="}]},
]


def change(new: dict[str, Any] | None, old: dict[str, Any] | None = None) -> Change:
    op = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    keys = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    return Change(op, keys, new, old, make_seq(0, 1), 0, "e1")


def through_bigquery(row: dict[str, Any]) -> dict[str, Any]:
    """The row as a query gives it back: JSON columns parsed by the standard library (as the
    BigQuery client does), so numbers are Python ints and floats."""
    return {k: json.loads(v) if isinstance(v, str) and k.startswith(("item", "old_item")) else v
            for k, v in row.items()}  # fmt: skip


def same_item(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Equal as DynamoDB compares items: numbers by value, sets as sets."""
    return a is not None and canonical_map(a) == canonical_map(b)


@settings(max_examples=300)
@given(items(), items())
def test_item_to_lean_row_to_item_is_identity_for_both_images(
    new: dict[str, Any], old: dict[str, Any]
) -> None:
    # GIVEN any two images (Lambda event JSON) and a layout that stores old images too
    new, old = to_event_json(new), to_event_json(old)
    builder = RowBuilder(build_layout(KEYS, old_images=True), clock=lambda: 0)
    # WHEN a MODIFY becomes a changelog row, and the row comes back from BigQuery
    row = through_bigquery(builder.build(change(new, old)).changelog)
    # THEN both images are rebuilt exactly from the row alone
    assert same_item(new_image(row), new)
    assert same_item(old_image(row), old)
    # AND each image is stored once: no DynamoDB JSON beside the lean columns
    assert "new_image" not in row
    assert "old_image" not in row


@settings(max_examples=200)
@given(attribute_values)
def test_one_value_round_trips_and_its_sidecar_tags_only_what_json_cannot_tell(
    value: dict[str, Any],
) -> None:
    # GIVEN any attribute value
    image = {"v": to_event_json(value)}
    # WHEN it is made lean and rebuilt
    item, types = lean_item(image)
    rebuilt = dynamodb_item(json.loads(orjson.dumps(item)), types)
    # THEN it is the same value
    assert same_item(rebuilt, image)
    # AND a value of only strings, small numbers, booleans, nulls, maps and lists needs no tag
    if not any(tag in orjson.dumps(image).decode() for tag in ('"B"', '"SS"', '"NS"', '"BS"')):
        text_numbers = [
            n for n in _numbers(image) if isinstance(lean_item({"n": {"N": n}})[0]["n"], str)
        ]
        assert (types is None) == (not text_numbers)


def _numbers(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [value["N"]] if "N" in value and len(value) == 1 else [
            n for v in value.values() for n in _numbers(v)
        ]  # fmt: skip
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


@pytest.mark.parametrize("bottom", TEN_TYPES, ids=lambda v: next(iter(v)))
def test_values_of_all_ten_types_nested_32_levels_deep_round_trip(bottom: dict[str, Any]) -> None:
    # GIVEN a value of each type at the bottom of 32 levels of maps and lists (DynamoDB's limit)
    deep = bottom
    for level in range(32 - (next(iter(bottom)) in ("M", "L"))):
        deep = {"M": {f"m{level}": deep}} if level % 2 else {"L": [{"NULL": True}, deep]}
    image = {"pk": {"S": "a"}, "sk": {"N": "1"}, "deep": deep}
    # WHEN it becomes a row and comes back
    row = through_bigquery(RowBuilder(build_layout(KEYS)).build(change(image)).changelog)
    # THEN it is rebuilt exactly
    assert same_item(new_image(row), image)
    # AND one level more is refused, naming the attribute
    with pytest.raises(ConversionError, match=r"attribute 'deep.*nested more than 32 levels"):
        RowBuilder(build_layout(KEYS)).build(change({**image, "deep": {"L": [deep]}}))


@pytest.mark.parametrize("text", EXTREMES)
def test_extreme_numbers_round_trip_alone_in_sets_and_in_lists(text: str) -> None:
    # GIVEN an extreme number as N, in an NS and in an L
    image = {"n": {"N": text}, "ns": {"NS": [text, "7"]}, "l": {"L": [{"N": text}]}}
    # WHEN made lean, sent as JSON text and rebuilt
    item, types = lean_item(image)
    rebuilt = dynamodb_item(json.loads(orjson.dumps(item)), json.loads(orjson.dumps(types)))
    # THEN every value is the same number
    assert same_item(rebuilt, image)


def test_the_sidecar_is_small_and_null_when_nothing_needs_a_tag() -> None:
    # GIVEN the example item
    image = {
        "id": {"S": "u1"},
        "tags": {"SS": ["b", "a"]},
        "avatar": {"B": "AAEC"},
        "metrics": {"M": {"ledger": {"N": "1234567890123456789012345678901234567"}, "n": {"N": "2"}}},
        "lines": {"L": [{"S": "x"}, {"NS": ["1"]}]},
    }  # fmt: skip
    # WHEN made lean  THEN only the values plain JSON cannot tell are tagged
    item, types = lean_item(image)
    assert types == {
        "tags": "SS", "avatar": "B", "metrics": {"ledger": "N"}, "lines": {"1": "NS"},
    }  # fmt: skip
    assert item["metrics"] == {"ledger": "1234567890123456789012345678901234567", "n": 2}
    # AND an item of strings, exact numbers, booleans, nulls, maps and lists has no sidecar
    plain = {
        "s": {"S": "x"},
        "n": {"N": "0.5"},
        "m": {"M": {"b": {"BOOL": True}}},
        "z": {"NULL": True},
    }
    row = RowBuilder(build_layout([("s", "S")])).build(
        Change("INSERT", {"s": {"S": "x"}}, plain, None, make_seq(0, 1), 0, "e")
    )
    assert row.changelog["item_types"] is None


def test_rows_written_before_the_lean_format_are_read_the_same() -> None:
    # GIVEN a changelog row of the earlier format: DynamoDB JSON images beside the item
    new = {"pk": {"S": "a"}, "tags": {"SS": ["x"]}, "n": {"N": "1.50"}}
    old = {"pk": {"S": "a"}, "tags": {"SS": ["y"]}}
    earlier = {
        "new_image": orjson.dumps(new).decode(),
        "old_image": orjson.dumps(old).decode(),
        "item": '{"pk":"a","tags":["x"],"n":1.5}',
    }
    # WHEN its images are read  THEN they are the DynamoDB JSON it holds, as it came
    assert new_image(earlier) == new
    assert old_image(earlier) == old
    # AND parsed JSON columns (as a query returns them) read the same
    assert new_image({k: orjson.loads(v) for k, v in earlier.items()}) == new
    # AND a lean row without an old image says so
    assert old_image({"item": '{"pk":"a"}', "item_types": None}) is None


def test_a_changelog_made_before_the_lean_row_keeps_getting_rows_it_can_hold() -> None:
    # GIVEN the layout of a changelog with new_image and old_image but no item_types yet
    earlier = dataclasses.replace(build_layout(KEYS), lean=False, earlier_images=True)
    new = {"pk": {"S": "a"}, "sk": {"N": "1"}, "b": {"B": "AA=="}}
    # WHEN a change is converted for it
    row = RowBuilder(earlier).build(change(new, {"pk": {"S": "a"}, "sk": {"N": "1"}})).changelog
    # THEN the row is of the earlier format, every column one the table has
    assert orjson.loads(row["new_image"]) == new
    assert set(row) <= {c.name for c in earlier.changelog_columns()}
    assert "item_types" not in row
    assert image_columns(earlier, old=True) == ["item", "new_image", "old_image"]
    # AND once `ddb2bq init` has added item_types, both kinds of rows are read
    upgraded = dataclasses.replace(earlier, lean=True)
    assert image_columns(upgraded) == ["item", "item_types", "new_image"]
    assert same_item(new_image(row), new)


@pytest.mark.parametrize(
    ("item", "types", "named"),
    [
        ({"a": 1}, {"a": "SS"}, "a"),
        ({"a": "x"}, {"a": "NS"}, "a"),
        ({"a": {"b": [1]}}, {"a": {"b": {"0": "B"}}}, r"a\.b\[0\]"),
        ({"a": []}, {"a": "BS"}, "a"),
        ({"a": 1}, {"a": "Q"}, "a"),
    ],
)
def test_a_sidecar_that_does_not_fit_its_item_is_refused_naming_the_attribute(
    item: dict[str, Any], types: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConversionError, match=rf"attribute '{named}'"):
        dynamodb_item(item, types)


def test_lean_rows_are_smaller_than_the_earlier_ones() -> None:
    # GIVEN a MODIFY of an item with sets, binary and long numbers
    new = {
        "pk": {"S": "a"}, "sk": {"N": "1"}, "tags": {"SS": ["gift", "new"]}, "b": {"B": "AAEC"},
        "big": {"N": "12345678901234567890123456789012345678"}, "m": {"M": {"x": {"N": "1.5"}}},
    }  # fmt: skip
    old = dict(new, tags={"SS": ["gift"]})
    lean = RowBuilder(build_layout(KEYS), clock=lambda: 0).build(change(new, old)).changelog
    earlier_layout = dataclasses.replace(build_layout(KEYS), lean=False)
    earlier = RowBuilder(earlier_layout, clock=lambda: 0).build(change(new, old)).changelog
    # THEN the lean row is smaller than the item's own DynamoDB JSON plus the earlier row's rest
    assert len(orjson.dumps(lean)) < 0.6 * len(orjson.dumps(earlier))
    assert len(orjson.dumps(lean)) < 1.3 * len(orjson.dumps(new)) + 250


@given(st.lists(st.sampled_from(EXTREMES), min_size=1, max_size=5))
def test_number_sets_of_extreme_members_keep_every_member(members: list[str]) -> None:
    unique = list({Decimal(m): m for m in members}.values())
    image = {"ns": {"NS": unique}}
    item, types = lean_item(image)
    assert types == {"ns": "NS"}
    assert same_item(dynamodb_item(json.loads(orjson.dumps(item)), types), image)


@pytest.mark.parametrize("item", [None, [{"S": "a"}], "id", 3])
def test_an_item_that_is_no_object_is_refused_saying_so(item: Any) -> None:
    # GIVEN an image that is not an object of attributes  WHEN converted
    # THEN a ConversionError says what it is (not an error of Python's own)
    with pytest.raises(ConversionError, match="an item is an object of attributes, not"):
        lean_item(item)
