"""Poison values: whatever an image holds, conversion either succeeds or raises ConversionError
naming the attribute, so the sink can dead-letter that one change and go on (never a crash)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ddb2bq.convert import column_value, number_json, plain_item
from ddb2bq.exceptions import ConversionError, RecordError
from ddb2bq.records import UNCHECKED, Change, make_seq, parse_one
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import build_layout

TAGS = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "M", "L", "X"]
junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["²", "١٢", "1e999", "NaN", "-", ".", "1.", "AAA", "AA==", "0x10", "1_0"]),
)
junk = st.recursive(
    junk_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(TAGS), inner, max_size=2),
        st.dictionaries(st.text(max_size=3), inner, max_size=2),
    ),
    max_leaves=8,
)
COLUMN_TYPES = [
    "STRING",
    "INT64",
    "NUMERIC",
    "BIGNUMERIC",
    "BYTES",
    "BOOL",
    "JSON",
    "ARRAY<STRING>",
    "ARRAY<NUMERIC>",
    "ARRAY<BYTES>",
]


@pytest.mark.parametrize("text", ["²", "١٢", "1²", "٣.٥"])
def test_numbers_in_other_scripts_digits_are_refused(text: str) -> None:
    with pytest.raises(ConversionError, match="not a DynamoDB number"):
        number_json(text)
    with pytest.raises(ConversionError):
        plain_item({"n": {"N": text}})


@settings(max_examples=500)
@given(junk)
@example({"M": {"'": None}})  # a member name with a quote: its path is shown in double quotes
def test_any_value_converts_or_raises_conversion_error(value: Any) -> None:
    # GIVEN any value under attribute "a" WHEN the item is converted
    # THEN it converts, or the ConversionError names the path to the bad value inside "a"
    error: ConversionError | None = None
    try:
        plain_item({"a": value})
    except ConversionError as exc:
        error = exc
    if error is not None:
        assert error.path == "a" or error.path.startswith(("a.", "a["))
        assert f"attribute {error.path!r}: " in str(error)


@settings(max_examples=300)
@given(junk, st.sampled_from(COLUMN_TYPES))
def test_any_value_in_any_column_is_a_value_a_conflict_or_conversion_error(
    value: Any, column_type: str
) -> None:
    with contextlib.suppress(ConversionError):
        column_value(value, column_type)


@settings(max_examples=300)
@given(junk, junk, st.booleans(), st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
def test_a_change_with_poison_in_keys_or_images_is_built_or_refused_cleanly(
    key: Any, value: Any, soft: bool, op: str
) -> None:
    layout = build_layout(
        [("pk", "S")], promoted={"v": "NUMERIC", "tags": "ARRAY<STRING>"}, soft_deletes=soft
    )
    image = {"pk": {"S": "a"}, "v": value, "tags": value}
    change = Change(op, {"pk": key}, image, image, make_seq(0, 1), 0, "e1")  # type: ignore[arg-type]
    with contextlib.suppress(ConversionError):
        RowBuilder(layout).build(change)


@settings(max_examples=300)
@given(
    junk,
    junk,
    st.sampled_from(["lambda", "getrecords", "kinesis", "export", "scan"]),
)
def test_any_record_parses_or_is_refused_by_a_check_naming_it(
    dynamodb: Any, item: Any, source: str
) -> None:
    # GIVEN junk where a record's parts go (a stream record's body, an export line, an item)
    unit: Any = {
        "lambda": {"eventID": "e", "eventName": "INSERT", "dynamodb": dynamodb},
        "getrecords": {"eventID": "e", "eventName": "MODIFY", "dynamodb": dynamodb},
        "kinesis": {"eventSource": "aws:kinesis", "kinesis": dynamodb},
        "export": repr(item),
        "scan": item,
    }[source]
    # WHEN parsed as record 4  THEN a Change, or a RecordError naming record 4 from a check
    try:
        parse_one(unit, source, index=4, key_names=["pk"])
    except RecordError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("record 4")
    assert UNCHECKED not in message
