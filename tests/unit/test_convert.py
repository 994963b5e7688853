"""The value rules of DESIGN.md, exact over DynamoDB's whole domain."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb2bq import numeric
from ddb2bq.convert import (
    Conflict,
    column_converter,
    column_value,
    decimal_text,
    number_json,
    number_kind,
    parse_number,
    plain,
    plain_item,
)
from ddb2bq.exceptions import ConversionError
from tests.strategies import EXTREME_NUMBERS, attribute_values, number_text, to_event_json

EXTREMES = EXTREME_NUMBERS


@pytest.mark.parametrize("text", EXTREMES)
def test_extreme_numbers_keep_their_exact_value_in_item(text: str) -> None:
    # GIVEN a number at the edge of DynamoDB's domain
    # WHEN it is converted for the mirror's item JSON
    value = number_json(text)
    # THEN reading that JSON back gives exactly the source value
    assert _json_number_value(orjson.loads(orjson.dumps(value))) == Decimal(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("-0", 0),
        ("1.50", 1.5),
        ("100", 100),
        ("9007199254740992", 9007199254740992),
        ("9007199254740993", "9007199254740993"),
        ("0.1", 0.1),
        ("0.10000000000000001", "0.10000000000000001"),
        ("1E+125", 1e125),
    ],
)
def test_numbers_are_json_numbers_only_when_float64_gives_them_back(
    text: str, expected: Any
) -> None:
    # GIVEN DynamoDB number text  WHEN converted  THEN a number only if float64 round-trips it
    result = number_json(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("text", ["abc", "1_000", " 1", "NaN", "Infinity", "1e", "--1", ""])
def test_text_that_is_not_a_number_is_refused_with_the_value_named(text: str) -> None:
    with pytest.raises(ConversionError, match="is not a DynamoDB number"):
        number_json(text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("9223372036854775807", "INT64"),
        ("-9223372036854775808", "INT64"),
        ("9223372036854775808", "NUMERIC"),
        ("1.5", "NUMERIC"),
        ("99999999999999999999999999999.999999999", "NUMERIC"),
        ("100000000000000000000000000000", "BIGNUMERIC"),
        ("0.0000000001", "BIGNUMERIC"),
        ("1E-38", "BIGNUMERIC"),
        ("1E-39", "STRING"),
        ("578960446186580977117854925043439539266", "BIGNUMERIC"),
        ("1E+39", "STRING"),
        ("1E+125", "STRING"),
        ("1.000", "INT64"),
        ("-0", "INT64"),
    ],
)
def test_number_kind_is_the_narrowest_exact_bigquery_type(text: str, kind: str) -> None:
    assert number_kind(Decimal(text)) == kind


def test_decimal_text_is_positional_and_exact() -> None:
    assert decimal_text(Decimal("1E-130")) == "0." + "0" * 129 + "1"
    assert decimal_text(Decimal("-1.2300E+3")) == "-1230"
    assert decimal_text(Decimal("0.000")) == "0"


def test_item_of_every_type_converts_to_plain_json() -> None:
    # GIVEN an item holding all ten DynamoDB types, as in a Lambda event
    item = {
        "s": {"S": "héllo ✓"},
        "n": {"N": "-12.50"},
        "b": {"B": base64.b64encode(b"\x00\xff").decode()},
        "bool": {"BOOL": False},
        "null": {"NULL": True},
        "ss": {"SS": ["b", "a", "C"]},
        "ns": {"NS": ["10", "9", "-1E-130"]},
        "bs": {"BS": [base64.b64encode(b"\x02").decode(), base64.b64encode(b"\x01").decode()]},
        "m": {"M": {"deep": {"L": [{"N": "1"}, {"M": {}}, {"L": []}, {"S": ""}]}}},
        "l": {"L": [{"BOOL": True}, {"NULL": True}]},
    }
    # WHEN converted
    result = plain_item(item)
    # THEN every value is its plain JSON form, sets sorted
    assert result == {
        "s": "héllo ✓",
        "n": -12.5,
        "b": "AP8=",
        "bool": False,
        "null": None,
        "ss": ["C", "a", "b"],
        "ns": [-1e-130, 9, 10],
        "bs": ["AQ==", "Ag=="],
        "m": {"deep": [1, {}, [], ""]},
        "l": [True, None],
    }


def test_a_bad_value_deep_inside_names_its_path() -> None:
    item = {"order": {"M": {"lines": {"L": [{"N": "1"}, {"M": {"price": {"N": "1,5"}}}]}}}}
    with pytest.raises(ConversionError, match=r"attribute 'order\.lines\[1\]\.price'"):
        plain_item(item)


def test_an_unknown_type_tag_is_refused() -> None:
    with pytest.raises(ConversionError, match=r"attribute 'x'.*not a DynamoDB attribute value"):
        plain_item({"x": {"Q": "1"}})


@pytest.mark.parametrize(
    ("value", "column_type", "expected"),
    [
        ({"N": "1.50"}, "NUMERIC", "1.5"),
        ({"N": "42"}, "INT64", "42"),
        ({"N": "1E+125"}, "STRING", "1" + "0" * 125),
        ({"S": "x"}, "STRING", "x"),
        ({"BOOL": True}, "BOOL", True),
        ({"NULL": True}, "INT64", None),
        ({"NS": ["3", "1.5"]}, "ARRAY<NUMERIC>", ["1.5", "3"]),
        ({"M": {"a": {"N": "1"}}}, "JSON", '{"a":1}'),
    ],
)
def test_promoted_column_values(value: dict[str, Any], column_type: str, expected: Any) -> None:
    assert column_value(value, column_type) == expected


@pytest.mark.parametrize(
    ("value", "column_type"),
    [
        ({"S": "x"}, "INT64"),
        ({"N": "1.5"}, "INT64"),
        ({"N": "1E-10"}, "NUMERIC"),
        ({"B": "AA=="}, "STRING"),
    ],
)
def test_values_that_do_not_fit_their_column_are_conflicts(
    value: dict[str, Any], column_type: str
) -> None:
    assert isinstance(column_value(value, column_type), Conflict)


@settings(max_examples=400)
@given(number_text())
def test_every_number_in_the_domain_is_exact_in_item_and_in_a_column(text: str) -> None:
    # GIVEN any DynamoDB number
    exact = Decimal(text)
    # WHEN converted for item and for the column type inferred for it
    in_item = orjson.loads(orjson.dumps(number_json(text)))
    kind = number_kind(exact)
    in_column = column_value({"N": text}, kind)
    # THEN both hold exactly the source value
    assert _json_number_value(in_item) == exact
    assert isinstance(in_column, str)
    assert Decimal(in_column) == exact
    # AND a JSON number is used exactly when float64 gives the value back
    assert isinstance(in_item, str) == (Decimal(repr(float(exact))) != exact)


@settings(max_examples=300)
@given(attribute_values)
def test_plain_json_holds_exactly_the_source_value(value: dict[str, Any]) -> None:
    # GIVEN any attribute value in event JSON form
    event_value = to_event_json(value)
    # WHEN converted and serialised as the mirror's item JSON
    decoded = orjson.loads(orjson.dumps(plain(event_value)))
    # THEN it matches the source under the DESIGN.md rules
    _assert_same(value, decoded)


@given(st.lists(number_text(), min_size=1, max_size=6))
def test_number_sets_are_sorted_by_value(texts: list[str]) -> None:
    unique = list({Decimal(t): t for t in texts}.values())
    result = plain({"NS": unique})
    values = [_json_number_value(v) for v in result]
    assert values == sorted(Decimal(t) for t in unique)


def _json_number_value(value: Any) -> Decimal:
    if isinstance(value, str):
        return Decimal(value)
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _assert_same(source: dict[str, Any], converted: Any) -> None:
    ((tag, raw),) = source.items()
    if tag == "S" or tag == "BOOL":
        assert converted == raw
    elif tag == "NULL":
        assert converted is None
    elif tag == "N":
        assert _json_number_value(converted) == Decimal(raw)
    elif tag == "B":
        assert base64.b64decode(converted) == raw
    elif tag == "SS":
        assert converted == sorted(raw)
    elif tag == "NS":
        assert [_json_number_value(v) for v in converted] == sorted(Decimal(v) for v in raw)
    elif tag == "BS":
        assert [base64.b64decode(v) for v in converted] == sorted(raw)
    elif tag == "M":
        assert converted.keys() == raw.keys()
        for name, member in raw.items():
            _assert_same(member, converted[name])
    elif tag == "L":
        assert len(converted) == len(raw)
        for member, out in zip(raw, converted, strict=True):
            _assert_same(member, out)
    else:  # pragma: no cover
        raise AssertionError(tag)


def test_nesting_as_deep_as_dynamodb_allows_converts() -> None:
    # GIVEN a value nested 32 levels deep (DynamoDB's limit), maps and lists alternating
    value: dict[str, Any] = {"N": "1E-130"}
    for depth in range(32):
        value = {"M": {"x": value}} if depth % 2 else {"L": [value]}
    # WHEN converted  THEN the innermost number arrives exact, at the same depth
    result = plain(value)
    for depth in reversed(range(32)):
        result = result["x"] if depth % 2 else result[0]
    assert result == 1e-130


# --- DynamoDB's number domain: 38 significant digits, 1E-130 to 9.99...E+125 -------------------

OUTSIDE_THE_DOMAIN = [
    "1e40000000",
    "1e400000000",
    "-1e400000000",
    "1e999",
    "1E126",
    "1E-131",
    "0.0000000001E-121",
    "10E+125",
    "1e" + "9" * 5000,
    "123456789012345678901234567890123456789",
    "-1.23456789012345678901234567890123456789",
    "1234567890123456789012345678901234567890000",
]
AT_THE_EDGES = [
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1E-130",
    "-1E-130",
    "0.0000000001E-120",
    "12345678901234567890123456789012345678",
    "-99999999999999999999999999999999999999",
    "1234567890123456789012345678901234567800000",
    "0E+999999999",
    "-0",
]


@pytest.mark.parametrize("text", OUTSIDE_THE_DOMAIN)
def test_numbers_outside_dynamodbs_domain_are_refused_without_expanding_them(text: str) -> None:
    # GIVEN number text DynamoDB would never store  WHEN converted in any place a number goes
    started = time.monotonic()
    for convert in [
        lambda: number_json(text),
        lambda: parse_number(text),
        lambda: plain_item({"n": {"N": text}}),
        lambda: plain_item({"ns": {"NS": ["1", text]}}),
        lambda: plain_item({"m": {"M": {"l": {"L": [{"N": text}]}}}}),
        lambda: column_value({"N": text}, "STRING"),
        lambda: column_value({"NS": [text]}, "ARRAY<BIGNUMERIC>"),
        lambda: column_converter("NUMERIC")({"N": text}),
        lambda: column_converter("JSON")({"M": {"x": {"N": text}}}),
    ]:
        # THEN each refuses it as a ConversionError, at once (never 400 MB of zeros)
        with pytest.raises(ConversionError, match=r"number range|at most 38"):
            convert()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("text", AT_THE_EDGES)
def test_numbers_at_the_edges_of_the_domain_are_exact(text: str) -> None:
    # GIVEN a number DynamoDB accepts, at its limits  WHEN converted
    in_item = orjson.loads(orjson.dumps(plain_item({"n": {"N": text}})))["n"]
    in_column = column_value({"N": text}, "STRING")
    # THEN item and column hold exactly its value
    assert _json_number_value(in_item) == Decimal(text)
    assert isinstance(in_column, str)
    assert Decimal(in_column) == Decimal(text)


def test_a_long_run_of_digits_that_is_not_a_number_is_refused_in_linear_time() -> None:
    # GIVEN 400 KB of digits ending in a letter (a backtracking pattern took minutes)
    text = "1" * 400_000 + "x"
    started = time.monotonic()
    # WHEN converted  THEN refused at once
    with pytest.raises(ConversionError, match="is not a DynamoDB number"):
        number_json(text)
    assert time.monotonic() - started < 1


def test_nesting_deeper_than_dynamodb_allows_is_refused_with_its_path() -> None:
    # GIVEN a value nested 33 levels deep (DynamoDB allows 32), maps and lists alternating
    value: dict[str, Any] = {"N": "1"}
    for depth in range(33):
        value = {"M": {"x": value}} if depth % 2 else {"L": [value]}
    # WHEN converted  THEN refused as a ConversionError naming the attribute's path
    with pytest.raises(ConversionError, match=r"attribute 'top\[0\]\.x\[0\].*more than 32 levels"):
        plain_item({"top": value})
    with pytest.raises(ConversionError, match="more than 32 levels"):
        column_value(value, "JSON")


def test_maps_nested_thousands_deep_are_refused_not_a_recursion_error() -> None:
    value: dict[str, Any] = {"N": "1"}
    for _ in range(5000):
        value = {"M": {"x": value}}
    with pytest.raises(ConversionError, match="more than 32 levels"):
        plain_item({"d": value})


@pytest.mark.parametrize(
    ("value", "column_type"),
    [
        ({"S": 5}, "STRING"),
        ({"B": "not base64!"}, "BYTES"),
        ({"BOOL": "yes"}, "BOOL"),
        ({"S": "a", "N": "1"}, "STRING"),
        ({"S": "\ud800"}, "JSON"),
    ],
)
def test_a_column_refuses_a_value_of_its_own_type_with_bad_contents(
    value: dict[str, Any], column_type: str
) -> None:
    # GIVEN a value whose tag fits the column but whose contents DynamoDB never holds
    # WHEN converted for the column (as a key column is)  THEN refused, not passed on
    with pytest.raises(ConversionError):
        column_converter(column_type)(value)


@st.composite
def canonical_number_text(draw: st.DrawFn) -> str:
    """Number text as DynamoDB returns it: positional, no leading zero, no trailing zero after a
    point; 1 to 40 digits, with the point anywhere (fast paths take most of these)."""
    digits = draw(st.text("0123456789", min_size=1, max_size=40))
    point = draw(st.integers(0, len(digits)))
    whole, fraction = digits[:point].lstrip("0") or "0", digits[point:].rstrip("0")
    sign = draw(st.sampled_from(["", "-"]))
    return sign + (f"{whole}.{fraction}" if fraction else whole)


@settings(max_examples=600)
@given(st.one_of(canonical_number_text(), number_text()))
def test_the_fast_number_paths_give_what_the_exact_comparison_gives(text: str) -> None:
    # GIVEN number text of any spelling, most of it canonical as DynamoDB returns it
    # WHEN converted for item by the fast paths, and by the exact decimal comparison alone
    try:
        exact = numeric._exact_number_json(text)
    except numeric.BadValueError:
        # THEN text the exact path refuses is refused by the fast ones too
        with pytest.raises(ConversionError):
            number_json(text)
        return
    fast = number_json(text)
    # THEN both give the same JSON value, of the same type (int, float or the decimal text)
    assert type(fast) is type(exact)
    assert fast == exact


@settings(max_examples=300)
@given(
    st.one_of(canonical_number_text(), number_text()),
    st.sampled_from(["INT64", "NUMERIC", "BIGNUMERIC"]),
)
def test_a_number_columns_fast_path_gives_what_the_general_one_gives(
    text: str, column_type: str
) -> None:
    # GIVEN a number (some canonical ones past DynamoDB's 38 digits) and a number column
    # WHEN converted by the column's own converter (its fast path takes canonical text that
    # fits) and by the general column_value
    fast = _outcome(lambda: column_converter(column_type)({"N": text}))
    general = _outcome(lambda: column_value({"N": text}, column_type))
    # THEN the same exact text, the same conflict, or the same error
    assert fast == general


def _outcome(convert: Callable[[], object]) -> str:
    try:
        return repr(convert())
    except ConversionError as exc:
        return f"ConversionError: {exc}"
