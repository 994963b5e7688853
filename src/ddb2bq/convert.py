"""DynamoDB attribute values -> BigQuery values, exactly.

==========  ==============================================  =====================================
DynamoDB    promoted column (:func:`column_value`)          in ``item``, plain JSON (:func:`plain`)
==========  ==============================================  =====================================
S           STRING                                          string
N           INT64 if an integer in range; NUMERIC if it     number when the float64 round trip is
            fits (38 digits, scale 9); BIGNUMERIC if it     exact, else a string with the exact
            fits (scale 38); else STRING, the exact decimal decimal
B           BYTES                                           base64 string
BOOL        BOOL                                            true / false
NULL        NULL                                            null
SS, NS, BS  ARRAY of the element type, sorted               array, sorted
M           JSON                                            object
L           JSON                                            array
==========  ==============================================  =====================================

Numbers (:mod:`ddb2bq.numeric`) are DynamoDB's decimal text, converted exactly: never through
a float unless the float gives back the same value, never through a ``decimal`` context (which
rounds to 28 digits); boto3's ``TypeDeserializer`` is not used (it raises on valid numbers such
as ``1234567895171680000000000000000000000000``). Text outside DynamoDB's domain (``1e999``, 39
significant digits) is a ConversionError. Maps and lists nest at most 32 levels deep, as in
DynamoDB; deeper values are refused too. ``-0`` is the number 0 (DynamoDB numbers have no
negative zero); trailing zeros do not change a number's value, so ``1.50`` is the number 1.5 in
``item``.

The changelog stores an image as its plain ``item`` and the type sidecar of
:func:`lean_item`: together they are the image exactly (:mod:`ddb2bq.images` rebuilds it).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import orjson

from ddb2bq.exceptions import ConversionError
from ddb2bq.numeric import (
    SIMPLE_MAX,
    BadValueError,
    decimal_of,
    decimal_text,
    json_number,
    long_json_number,
    number_json,
    number_kind,
    parse_number,
    short_fraction,
    short_number,
    simple_decimal,
    widen,
)
from ddb2bq.records import AttributeValue, quote_value

__all__ = [
    "Conflict",
    "column_converter",
    "column_value",
    "decimal_text",
    "lean_item",
    "number_json",
    "number_kind",
    "parse_number",
    "plain",
    "plain_item",
    "widen",
]

JsonValue = Any
JsonObject = dict[str, JsonValue]
Types = dict[str, Any] | None
"""A type sidecar (see :func:`lean_item`): member -> tag, or member -> the sidecar inside it."""
Input = Any
"""A value straight from input, of any shape (an item, an attribute value): the public functions
take it so, and check it themselves. The compiled build (mypyc, see ``setup.py``) checks each
declared type at run time, so a narrower one would be a ``TypeError`` there, not a named
``ConversionError``."""
MAX_NESTING = 32  # DynamoDB nests maps and lists at most 32 levels deep
COMPILED = not __file__.endswith(".py")
"""Whether this module is the compiled build (mypyc, see ``setup.py``) or the Python source."""


class Conflict:
    """The value does not fit the column's type: the column is NULL, the value stays in ``item``."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Conflict({self.reason!r})"


def plain_item(item: Input) -> JsonObject:
    """Convert a whole item to plain JSON values.

    >>> plain_item({"id": {"S": "a"}, "n": {"N": "1.50"}, "tags": {"SS": ["b", "a"]}})
    {'id': 'a', 'n': 1.5, 'tags': ['a', 'b']}
    """
    return lean_item(item)[0]


def lean_item(item: Input) -> tuple[JsonObject, Types]:
    """A whole item as plain JSON values and its type sidecar, in one pass: the changelog's
    lossless form of an image (:func:`ddb2bq.images.dynamodb_item` is the way back).

    The sidecar tags exactly the values whose plain JSON does not say their DynamoDB type:
    sets (``SS``, ``NS``, ``BS``: arrays in ``item``), binary (``B``: base64 text) and numbers
    kept as text (``N``: the exact decimal, when no JSON number holds it). Inside a map its
    members are tagged by name, inside a list by index (as text); None when nothing needs a tag.

    >>> lean_item({"id": {"S": "a"}, "tags": {"SS": ["b", "a"]}, "m": {"M": {"big": {"N": "1" * 20}}},
    ...            "l": {"L": [{"S": "x"}, {"B": "AA=="}]}})
    ({'id': 'a', 'tags': ['a', 'b'], 'm': {'big': '11111111111111111111'}, 'l': ['x', 'AA==']}, \
{'tags': 'SS', 'm': {'big': 'N'}, 'l': {'1': 'B'}})
    >>> lean_item({"id": {"S": "a"}, "n": {"N": "1.5"}})
    ({'id': 'a', 'n': 1.5}, None)

    This is the one function a compiled implementation would replace: image in, ``item`` and
    sidecar out, ConversionError naming the attribute path on a value DynamoDB cannot hold.
    """
    if type(item) is not dict and not isinstance(item, Mapping):
        raise ConversionError(f"an item is an object of attributes, not {quote_value(item)}")
    try:
        return _lean_members(item)
    except BadValueError as exc:
        raise ConversionError(exc.message, path=exc.path) from None


def plain(value: Input) -> JsonValue:
    """Convert one attribute value to its plain JSON value (see the table above)."""
    try:
        return _PLAIN[_tag(value)](value)
    except BadValueError as exc:
        raise ConversionError(exc.message, path=exc.path) from None


def column_value(value: Input, column_type: str) -> JsonValue | Conflict:
    """The value of a promoted column of ``column_type`` (``STRING``, ``ARRAY<NUMERIC>``, ...).

    Returns a :class:`Conflict` when the value does not fit; the caller leaves the column NULL.
    Numbers are exact decimal text, as BigQuery accepts for INT64, NUMERIC and BIGNUMERIC.

    >>> column_value({"N": "1.50"}, "NUMERIC"), column_value({"S": "x"}, "INT64")
    ('1.5', Conflict('a S value does not fit a INT64 column'))
    """
    try:
        return _column_value(value, column_type)
    except BadValueError as exc:
        raise ConversionError(exc.message, path=exc.path) from None


def _column_value(value: Input, column_type: str) -> JsonValue | Conflict:
    tag = _tag(value)
    if tag == "NULL":
        return None
    if column_type == "JSON":
        return _json_text(_PLAIN[tag](value))
    if column_type.startswith("ARRAY<"):
        element = column_type[6:-1]
        element_tag = _SET_ELEMENT.get(tag)
        if element_tag is None:
            return Conflict(f"a {tag} value does not fit a {column_type} column")
        results = [_column_value({element_tag: v}, element) for v in _sorted_set(tag, value[tag])]
        return next((r for r in results if isinstance(r, Conflict)), results)
    return _scalar_column_value(tag, value, column_type)


def column_converter(column_type: str) -> Callable[[Input], JsonValue | Conflict]:
    """``column_value`` for one column type, as a function: the same results, faster for values
    of the column's own kind (S in STRING, positional N in INT64/NUMERIC/BIGNUMERIC).

    >>> to_numeric = column_converter("NUMERIC")
    >>> to_numeric({"N": "1.50"}), to_numeric({"N": "1E-30"}), to_numeric({"S": "x"})
    ('1.5', Conflict('1E-30 does not fit a NUMERIC column'), Conflict('a S value does not fit a NUMERIC column'))
    """
    if column_type == "STRING":
        return _string_column
    if column_type in ("INT64", "NUMERIC", "BIGNUMERIC"):
        fits = _INT64_TEXT if column_type == "INT64" else _NUMERIC_TEXT

        def number_column(value: Input) -> JsonValue | Conflict:
            # canonical positional text (as DynamoDB returns numbers) is its own exact decimal
            # text: taken as it is when it fits the column, anything else the general way
            raw = value.get("N") if type(value) is dict and len(value) == 1 else None
            if type(raw) is str and fits(raw) is not None:
                return raw
            return column_value(value, column_type)

        return number_column
    return lambda value: column_value(value, column_type)


def _string_column(value: Input) -> JsonValue | Conflict:
    raw = value.get("S") if type(value) is dict else None
    if type(raw) is str and len(value) == 1:
        return raw
    return column_value(value, "STRING")


def _json_text(value: JsonValue) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:  # e.g. text with a lone surrogate, which JSON input can spell
        raise BadValueError(f"the value cannot be written as JSON: {exc}") from exc


def _scalar_column_value(tag: str, value: AttributeValue, column_type: str) -> JsonValue | Conflict:
    raw = value[tag]
    if tag == "N" and column_type in ("INT64", "NUMERIC", "BIGNUMERIC", "STRING"):
        if type(raw) is str and raw.isascii() and len(raw) <= SIMPLE_MAX:
            simple = simple_decimal(raw)
            if simple is not None:
                text, kind = simple
                if column_type == "STRING" or widen(kind, column_type) == column_type:
                    return text
                return Conflict(f"{raw} does not fit a {column_type} column")
        number = decimal_of(raw)
        if column_type == "STRING" or widen(number_kind(number), column_type) == column_type:
            return decimal_text(number)
        return Conflict(f"{raw} does not fit a {column_type} column")
    if (tag, column_type) in _SCALAR_FITS:
        return _PLAIN[tag](value)  # the value, once its contents are checked
    return Conflict(f"a {tag} value does not fit a {column_type} column")


_SCALAR_FITS = frozenset({("S", "STRING"), ("B", "BYTES"), ("BOOL", "BOOL")})
# Canonical number text (no leading zero, no trailing zero after a point, not -0) that an INT64
# holds (at most 18 digits), and that a NUMERIC holds (at most 29 digits before the point and 9
# after it): the column's exact decimal text as it is.
_INT64_TEXT = re.compile(r"0|-?[1-9][0-9]{0,17}").fullmatch
_NUMERIC_TEXT = re.compile(
    r"0|-?[1-9][0-9]{0,28}|-?(?:0|[1-9][0-9]{0,28})\.[0-9]{0,8}[1-9]"
).fullmatch
_SET_ELEMENT = {"SS": "S", "NS": "N", "BS": "B"}


def _join(name: str, inner: str) -> str:
    if not inner:
        return name
    return f"{name}{inner}" if inner.startswith("[") else f"{name}.{inner}"


def _tag(value: Any) -> str:
    if type(value) is dict and len(value) == 1:
        for tag in value:
            if tag in _PLAIN:
                return str(tag)
    raise BadValueError(
        f"{quote_value(value)} is not a DynamoDB attribute value (one of {', '.join(_PLAIN)})"
    )


def _string(value: AttributeValue) -> JsonValue:
    text = value["S"]
    if type(text) is not str:
        raise BadValueError(f"S value {quote_value(text)} is not a string")
    return text


def _number(value: AttributeValue) -> JsonValue:
    return json_number(value["N"])


def _binary(value: AttributeValue) -> JsonValue:
    return _check_base64(value["B"])


def _check_base64(text: Any) -> str:
    if type(text) is not str:
        raise BadValueError(f"B value {quote_value(text)} is not base64 text")
    try:  # strict: only the alphabet, padding only at the end (base64.b64decode's validate=True)
        binascii.a2b_base64(text, strict_mode=True)
    except ValueError as exc:
        raise BadValueError(f"B value {quote_value(text)} is not valid base64") from exc
    return text


def _bool(value: AttributeValue) -> JsonValue:
    flag = value["BOOL"]
    if type(flag) is not bool:
        raise BadValueError(f"BOOL value {quote_value(flag)} is not true or false")
    return flag


def _null(value: AttributeValue) -> JsonValue:
    return None


def _sorted_set(tag: str, members: Any) -> list[Any]:
    if type(members) is not list:
        raise BadValueError(f"{tag} value {quote_value(members)} is not a list")
    if tag == "NS":
        return sorted(members, key=decimal_of)
    if tag == "BS":
        return sorted(members, key=lambda m: base64.b64decode(_check_base64(m)))
    for member in members:
        if type(member) is not str:
            raise BadValueError(f"SS member {quote_value(member)} is not a string")
    return sorted(members)


def _string_set(value: AttributeValue) -> JsonValue:
    return _sorted_set("SS", value["SS"])


def _number_set(value: AttributeValue) -> JsonValue:
    return _number_members(value["NS"])


def _number_members(members: Any) -> JsonValue:
    if type(members) is list:
        numbers: list[int | float] = []
        for member in members:
            if type(member) is str and len(member) <= 16:
                if len(member) < 16 and member.isascii() and member.isdigit():
                    numbers.append(int(member))  # as in the loops below: most members
                    continue
                short = short_number(member)
                if short is not None:
                    numbers.append(int(member) if short[1] is not None else float(member))
                    continue
            number = json_number(member) if type(member) is str else None
            if type(number) is not int and type(number) is not float:
                break
            numbers.append(number)
        else:
            # exact int/float values sort as their decimals do; equal ones convert alike
            return sorted(numbers)
    return [json_number(m) for m in _sorted_set("NS", members)]


def _binary_set(value: AttributeValue) -> JsonValue:
    return _sorted_set("BS", value["BS"])


# ``_map`` and ``_list`` convert a value at the top of an attribute (one level deep); the loops
# below convert the maps and lists nested in it themselves, counting the levels.
def _map(value: AttributeValue) -> JsonValue:
    members = value["M"]
    if type(members) is not dict:
        raise BadValueError(f"M value {quote_value(members)} is not an object")
    return _lean_members(members, 1)[0]


def _list(value: AttributeValue) -> JsonValue:
    members = value["L"]
    if type(members) is not list:
        raise BadValueError(f"L value {quote_value(members)} is not a list")
    return _lean_list(members, 1)[0]


def _too_deep() -> BadValueError:
    return BadValueError(
        f"the value is nested more than {MAX_NESTING} levels deep, which DynamoDB does not allow"
    )


# The two loops below are the hot path (most of the time of a batch): the common tags (S, N,
# M, L, BOOL, NULL) with well-typed contents are converted inline, without a call per value;
# anything else goes through the dispatch table ``_PLAIN``, which also raises every error. Each
# also returns the value's type sidecar (see :func:`lean_item`), None when nothing needs a tag,
# built only when something does.
def _lean_members(  # noqa: PLR0915 (the hot path: inlined, a call per value costs more)
    members: Mapping[str, Any], depth: int = 0
) -> tuple[JsonObject, Types]:
    if depth > MAX_NESTING:
        raise _too_deep()
    out: JsonObject = {}
    types: dict[str, Any] | None = None
    name = ""
    try:
        for name, value in members.items():
            if len(value) == 1:  # anything but a one-entry object fails here or below
                # S and N first, by membership (cheaper than unpacking the pair): most values
                if "S" in value:
                    raw = value["S"]
                    if type(raw) is str:
                        out[name] = raw
                        continue
                elif "N" in value:
                    raw = value["N"]
                    if type(raw) is str:
                        if len(raw) < 16 and raw.isascii() and raw.isdigit():
                            out[name] = int(raw)
                        elif len(raw) <= 16 and short_fraction(raw) is not None:
                            out[name] = float(raw)
                        else:
                            number = out[name] = (
                                json_number(raw) if len(raw) <= 16 else long_json_number(raw)
                            )
                            if type(number) is str:
                                types = _tagged(types, name, "N")
                        continue
                else:
                    ((tag, raw),) = value.items()
                    if tag == "M":
                        if type(raw) is dict:
                            out[name], inner = _lean_members(raw, depth + 1)
                            if inner is not None:
                                types = _tagged(types, name, inner)
                            continue
                    elif tag == "L":
                        if type(raw) is list:
                            out[name], inner = _lean_list(raw, depth + 1)
                            if inner is not None:
                                types = _tagged(types, name, inner)
                            continue
                    elif tag == "BOOL":
                        if type(raw) is bool:
                            out[name] = raw
                            continue
                    elif tag == "NULL":
                        out[name] = None
                        continue
                    elif tag in _TAGGED:
                        out[name] = _TAGGED[tag](raw)
                        if types is None:
                            types = {name: tag}
                        else:
                            types[name] = tag
                        continue
            out[name] = _PLAIN[_tag(value)](value)  # raises: no well-formed value is left
    except BadValueError as exc:
        raise BadValueError(exc.message, _join(name, exc.path)) from None
    except _NOT_AN_OBJECT:
        _refuse(value, name)
        raise  # a well-formed value: not bad input
    return out, types


def _lean_list(  # noqa: PLR0915 (the hot path, as _lean_members)
    members: list[Any], depth: int
) -> tuple[list[JsonValue], Types]:
    if depth > MAX_NESTING:
        raise _too_deep()
    out: list[JsonValue] = []
    types: dict[str, Any] | None = None
    try:
        for value in members:
            if len(value) == 1:  # anything but a one-entry object fails here or below
                if "S" in value:
                    raw = value["S"]
                    if type(raw) is str:
                        out.append(raw)
                        continue
                elif "N" in value:
                    raw = value["N"]
                    if type(raw) is str:
                        if len(raw) < 16 and raw.isascii() and raw.isdigit():
                            out.append(int(raw))
                        elif len(raw) <= 16 and short_fraction(raw) is not None:
                            out.append(float(raw))
                        else:
                            out.append(
                                number := json_number(raw)
                                if len(raw) <= 16
                                else long_json_number(raw)
                            )
                            if type(number) is str:
                                types = _tagged(types, str(len(out) - 1), "N")
                        continue
                else:
                    ((tag, raw),) = value.items()
                    if tag == "M":
                        if type(raw) is dict:
                            member, inner = _lean_members(raw, depth + 1)
                            if inner is not None:
                                types = _tagged(types, str(len(out)), inner)
                            out.append(member)
                            continue
                    elif tag == "L":
                        if type(raw) is list:
                            listed, inner = _lean_list(raw, depth + 1)
                            if inner is not None:
                                types = _tagged(types, str(len(out)), inner)
                            out.append(listed)
                            continue
                    elif tag == "NULL":
                        out.append(None)
                        continue
                    elif tag in _TAGGED:
                        converted = _TAGGED[tag](raw)
                        types = _tagged(types, str(len(out)), tag)
                        out.append(converted)
                        continue
            out.append(_PLAIN[_tag(value)](value))
    except BadValueError as exc:
        # ``out`` holds exactly the members before the one that failed
        raise BadValueError(exc.message, _join(f"[{len(out)}]", exc.path)) from None
    except _NOT_AN_OBJECT:
        _refuse(value, f"[{len(out)}]")
        raise  # a well-formed value: not bad input
    return out, types


# What the loops above raise for a value that is no JSON object (a string, a number, a list):
# they take one for an object without checking its type first (a check per value).
_NOT_AN_OBJECT = (AttributeError, TypeError)


def _refuse(value: Any, where: str) -> None:
    """Raise the error of a value the loops could not take (:func:`_tag` says what is wrong)."""
    try:
        _tag(value)
    except BadValueError as exc:
        raise BadValueError(exc.message, _join(where, exc.path)) from None


def _tagged(types: dict[str, Any] | None, member: str, tag: Any) -> dict[str, Any]:
    """``types`` with ``member`` (a name, or a list index as text) tagged ``tag``."""
    if types is None:
        return {member: tag}
    types[member] = tag
    return types


# The values whose plain JSON does not tell their type, each converted from its contents alone
# (the loops above call these without the dispatch through ``_PLAIN``).
_TAGGED: dict[str, Callable[[Any], JsonValue]] = {
    "B": _check_base64,
    "SS": partial(_sorted_set, "SS"),
    "NS": _number_members,
    "BS": partial(_sorted_set, "BS"),
}

_PLAIN: dict[str, Callable[[AttributeValue], JsonValue]] = {
    "S": _string,
    "N": _number,
    "B": _binary,
    "BOOL": _bool,
    "NULL": _null,
    "SS": _string_set,
    "NS": _number_set,
    "BS": _binary_set,
    "M": _map,
    "L": _list,
}
