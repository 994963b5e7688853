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

Numbers are DynamoDB's decimal text (up to 38 significant digits, 1E-130 to 9.99...E+125, either
sign, and zero). They are never passed through a float unless the float gives back the same
value, and never through a ``decimal`` context (which rounds to 28 digits); boto3's
``TypeDeserializer`` is not used (it raises on valid numbers such as
``1234567895171680000000000000000000000000``). Text outside that domain (``1e999``, 39
significant digits) is refused as a ConversionError from its digits and exponent alone, before
anything expands it (``1e400000000`` would be 400 MB of zeros). Maps and lists nest at most 32
levels deep, as in DynamoDB; deeper values are refused too.
``-0`` is the number 0 (DynamoDB numbers have no negative zero); trailing zeros do not change a
number's value, so ``1.50`` is the number 1.5 in ``item``. The changelog keeps the text as it came.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson

from ddb2bq.exceptions import ConversionError
from ddb2bq.records import AttributeValue, Item, quote_value

JsonValue = Any
# sign, whole digits, fraction digits, exponent; possessive (no backtracking: linear on any text)
_NUMBER = re.compile(r"(-?)([0-9]*+)(?:\.([0-9]*+))?+(?:[eE]([+-]?[0-9]++))?+")
MAX_DIGITS = 38  # DynamoDB numbers: up to 38 significant digits, and
MIN_ADJUSTED, MAX_ADJUSTED = -130, 125  # magnitudes from 1E-130 to 9.99...E+125 (or zero)
MAX_NESTING = 32  # DynamoDB nests maps and lists at most 32 levels deep
_DOMAIN = "38 significant digits, magnitudes 1E-130 to 9.99...E+125"
_SAFE_INTEGER = 2**53
_SIMPLE_MAX = 64  # longest number text taken by the fast paths (values within 1E-63..1E+64)
# At most 15 digits and not an integer: its float is exact (see _simple_number_json).
_short_fraction = re.compile(r"-?[0-9]+\.[0-9]*[1-9]").fullmatch
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUMERIC_INTEGER_DIGITS, NUMERIC_SCALE = 29, 9
BIGNUMERIC_SCALE = 38
# BIGNUMERIC holds values in [-2**255 / 10**38, (2**255 - 1) / 10**38].
_BIGNUMERIC_MAX_SCALED = 2**255 - 1


class Conflict:
    """The value does not fit the column's type: the column is NULL, the value stays in ``item``."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Conflict({self.reason!r})"


def plain_item(item: Item) -> dict[str, JsonValue]:
    """Convert a whole item to plain JSON values.

    >>> plain_item({"id": {"S": "a"}, "n": {"N": "1.50"}, "tags": {"SS": ["b", "a"]}})
    {'id': 'a', 'n': 1.5, 'tags': ['a', 'b']}
    """
    try:
        return _plain_members(item)
    except _BadValueError as exc:
        raise ConversionError(exc.message, path=exc.path) from None


def plain(value: AttributeValue) -> JsonValue:
    """Convert one attribute value to its plain JSON value (see the table above)."""
    try:
        return _PLAIN[_tag(value)](value)
    except _BadValueError as exc:
        raise ConversionError(exc.message, path=exc.path) from None


def number_json(text: str) -> int | float | str:
    """A DynamoDB number as a JSON value: an int or float when exact, else the decimal text.

    >>> number_json("12"), number_json("0.1"), number_json("1E+125"), number_json("0.1000000000000000000001")
    (12, 0.1, 1e+125, '0.1000000000000000000001')
    """
    try:
        return _number_json(text)
    except _BadValueError as exc:
        raise ConversionError(exc.message) from None


def _number_json(text: str) -> int | float | str:
    if type(text) is not str or not text.isascii():
        raise _BadValueError(f"{_short(text)} is not a DynamoDB number")
    if len(text) < 16 and (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
        return int(text)
    if type(text) is str and len(text) <= _SIMPLE_MAX and text.isascii():
        if len(text) <= 16 and _short_fraction(text) is not None:
            return float(text)
        simple = _simple_number_json(text)
        if simple is not None:
            return simple
    return _exact_number_json(text)


def _simple_number_json(text: str) -> int | float | str | None:
    """:func:`_number_json` of ASCII positional text (``-?D+(.D+)?``) without ``decimal``;
    None for any other shape, or when only the exact check can tell.

    Sound because: a decimal of at most 15 significant digits survives the float64 round
    trip (DBL_DIG), and none of more than 17 does (``repr`` of a float has at most 17).
    ``_SIMPLE_MAX`` keeps values far inside float64's normal range.
    """
    negative = text[:1] == "-"
    whole, dot, fraction = (text[1:] if negative else text).partition(".")
    if not whole.isdigit() or (dot and not fraction.isdigit()):
        return None
    if not fraction.rstrip("0"):
        whole_number = int(whole)
        if whole_number <= _SAFE_INTEGER:
            return -whole_number if negative else whole_number
        significant = len(whole.strip("0"))
    else:
        significant = len((whole + fraction).strip("0"))
    if significant <= 15:
        return float(text)
    if significant > 17:
        if significant > MAX_DIGITS:
            raise _BadValueError(_too_many_digits(text, significant))
        return text
    if not fraction.rstrip("0"):
        return None
    as_float = float(text)
    # the same text is the same value; else only the exact comparison can tell
    if repr(as_float) == text or Decimal(repr(as_float)) == Decimal(text):
        return as_float
    return text


def _exact_number_json(text: str) -> int | float | str:
    value = _parse_number(text)
    if value.adjusted() < 17 and value == value.to_integral_value():
        whole = int(value)
        if -_SAFE_INTEGER <= whole <= _SAFE_INTEGER:
            return whole
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        return as_float
    return text


def parse_number(text: str) -> Decimal:
    """Parse DynamoDB number text exactly; raise ConversionError on text that is not a number."""
    try:
        return _parse_number(text)
    except _BadValueError as exc:
        raise ConversionError(exc.message) from None


def _parse_number(text: Any) -> Decimal:
    parts = _NUMBER.fullmatch(text) if type(text) is str else None
    if parts is None or not (parts[2] or parts[3]):
        raise _BadValueError(f"{_short(text)} is not a DynamoDB number")
    _check_domain(text, parts[2], parts[3] or "", parts[4])
    return Decimal(text)


def _check_domain(text: str, whole: str, fraction: str, exponent: str | None) -> None:
    """Refuse number text outside DynamoDB's domain, from its digits and exponent alone."""
    if exponent is not None and len(exponent.lstrip("+-").lstrip("0")) > 9:
        raise _out_of_range(text)  # far beyond the range (and int() may refuse it)
    digits = whole + fraction
    leading = len(digits) - len(digits.lstrip("0"))
    if leading == len(digits):
        return  # zero, whatever its exponent
    significant = len(digits.strip("0"))
    if significant > MAX_DIGITS:
        raise _BadValueError(_too_many_digits(text, significant))
    adjusted = int(exponent or 0) + len(whole) - leading - 1  # the first digit's power of ten
    if not MIN_ADJUSTED <= adjusted <= MAX_ADJUSTED:
        raise _out_of_range(text)


def _out_of_range(text: str) -> _BadValueError:
    return _BadValueError(f"{_short(text)} is outside DynamoDB's number range ({_DOMAIN})")


def _too_many_digits(text: str, significant: int) -> str:
    return (
        f"{_short(text)} has {significant} significant digits; "
        f"DynamoDB numbers have at most {MAX_DIGITS}"
    )


def _significant(value: Decimal) -> tuple[int, str, int]:
    """``(sign, digits, exponent)`` with no leading zeros and no trailing zeros after the point."""
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return 0, "", 0
    stripped = digits.rstrip("0")
    removable = min(len(digits) - len(stripped), max(0, -exponent))
    return sign, digits[: len(digits) - removable], exponent + removable


def decimal_text(value: Decimal) -> str:
    """The exact positional decimal text of ``value``, without exponent or trailing zeros.

    >>> decimal_text(Decimal("1.500")), decimal_text(Decimal("1E+3")), decimal_text(Decimal("-0"))
    ('1.5', '1000', '0')
    """
    sign, digits, exponent = _significant(value)
    if not digits:
        return "0"
    if exponent >= 0:
        body = digits + "0" * exponent
    elif -exponent >= len(digits):
        body = "0." + "0" * (-exponent - len(digits)) + digits
    else:
        body = digits[:exponent] + "." + digits[exponent:]
    return ("-" if sign else "") + body


def number_kind(value: Decimal) -> str:
    """The narrowest BigQuery type holding ``value`` exactly: INT64, NUMERIC, BIGNUMERIC or STRING.

    >>> [number_kind(Decimal(t)) for t in ("-9223372036854775808", "0.5", "1E-30", "1E+125")]
    ['INT64', 'NUMERIC', 'BIGNUMERIC', 'STRING']
    """
    sign, digits, exponent = _significant(value)
    if not digits:
        return "INT64"
    scale = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    if scale == 0 and integer_digits <= 19:
        whole = int(digits) * 10**exponent
        if INT64_MIN <= (-whole if sign else whole) <= INT64_MAX:
            return "INT64"
    if scale <= NUMERIC_SCALE and integer_digits <= NUMERIC_INTEGER_DIGITS:
        return "NUMERIC"
    if scale <= BIGNUMERIC_SCALE and integer_digits <= 39:
        scaled = int(digits) * 10 ** (BIGNUMERIC_SCALE + exponent)
        if scaled <= _BIGNUMERIC_MAX_SCALED + sign:
            return "BIGNUMERIC"
    return "STRING"


_NUMERIC_ORDER = {"INT64": 0, "NUMERIC": 1, "BIGNUMERIC": 2, "STRING": 3}


def widen(current: str | None, kind: str) -> str:
    """The wider of two numeric column types (INT64 -> NUMERIC -> BIGNUMERIC -> STRING)."""
    if current is None:
        return kind
    return current if _NUMERIC_ORDER[current] >= _NUMERIC_ORDER[kind] else kind


def column_value(value: AttributeValue, column_type: str) -> JsonValue | Conflict:
    """The value of a promoted column of ``column_type`` (``STRING``, ``ARRAY<NUMERIC>``, ...).

    Returns a :class:`Conflict` when the value does not fit; the caller leaves the column NULL.
    Numbers are exact decimal text, as BigQuery accepts for INT64, NUMERIC and BIGNUMERIC.

    >>> column_value({"N": "1.50"}, "NUMERIC"), column_value({"S": "x"}, "INT64")
    ('1.5', Conflict('a S value does not fit a INT64 column'))
    """
    try:
        return _column_value(value, column_type)
    except _BadValueError as exc:
        raise ConversionError(exc.message, path=exc.path) from None


def _column_value(value: AttributeValue, column_type: str) -> JsonValue | Conflict:
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


def column_converter(column_type: str) -> Callable[[AttributeValue], JsonValue | Conflict]:
    """``column_value`` for one column type, as a function: the same results, faster for values
    of the column's own kind (S in STRING, positional N in INT64/NUMERIC/BIGNUMERIC).

    >>> to_numeric = column_converter("NUMERIC")
    >>> to_numeric({"N": "1.50"}), to_numeric({"N": "1E-30"}), to_numeric({"S": "x"})
    ('1.5', Conflict('1E-30 does not fit a NUMERIC column'), Conflict('a S value does not fit a NUMERIC column'))
    """
    if column_type == "STRING":
        return _string_column
    if column_type in ("INT64", "NUMERIC", "BIGNUMERIC"):
        fits = {kind for kind in ("INT64", "NUMERIC") if widen(kind, column_type) == column_type}

        def number_column(value: AttributeValue) -> JsonValue | Conflict:
            if type(value) is dict and len(value) == 1 and "N" in value:
                raw = value["N"]
                if type(raw) is str and len(raw) <= _SIMPLE_MAX and raw.isascii():
                    simple = _simple_decimal(raw)
                    if simple is not None:
                        if simple[1] in fits:
                            return simple[0]
                        return Conflict(f"{raw} does not fit a {column_type} column")
            return column_value(value, column_type)

        return number_column
    return lambda value: column_value(value, column_type)


def _string_column(value: AttributeValue) -> JsonValue | Conflict:
    if type(value) is dict and len(value) == 1 and type(value.get("S")) is str:
        return value["S"]
    return column_value(value, "STRING")


def _json_text(value: JsonValue) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:  # e.g. text with a lone surrogate, which JSON input can spell
        raise _BadValueError(f"the value cannot be written as JSON: {exc}") from exc


def _scalar_column_value(tag: str, value: AttributeValue, column_type: str) -> JsonValue | Conflict:
    raw = value[tag]
    if tag == "N" and column_type in ("INT64", "NUMERIC", "BIGNUMERIC", "STRING"):
        if type(raw) is str and raw.isascii() and len(raw) <= _SIMPLE_MAX:
            simple = _simple_decimal(raw)
            if simple is not None:
                text, kind = simple
                if column_type == "STRING" or widen(kind, column_type) == column_type:
                    return text
                return Conflict(f"{raw} does not fit a {column_type} column")
        number = _parse_number(raw)
        if column_type == "STRING" or widen(number_kind(number), column_type) == column_type:
            return decimal_text(number)
        return Conflict(f"{raw} does not fit a {column_type} column")
    if (tag, column_type) in _SCALAR_FITS:
        return _PLAIN[tag](value)  # the value, once its contents are checked
    return Conflict(f"a {tag} value does not fit a {column_type} column")


def _simple_decimal(raw: str) -> tuple[str, str] | None:
    """``(decimal_text, number_kind)`` of ASCII positional text (``-?D+(.D+)?``) that is an
    INT64 or a NUMERIC, without ``decimal``; None for anything else."""
    negative = raw[:1] == "-"
    whole, dot, fraction = (raw[1:] if negative else raw).partition(".")
    if not whole.isdigit() or (dot and not fraction.isdigit()):
        return None
    whole, fraction = whole.lstrip("0"), fraction.rstrip("0")
    if not whole and not fraction:
        return "0", "INT64"
    text = f"{whole or '0'}.{fraction}" if fraction else whole
    if negative:
        text = "-" + text
    if not fraction and len(whole) <= 19 and int(whole) <= (-INT64_MIN if negative else INT64_MAX):
        return text, "INT64"
    if len(fraction) <= NUMERIC_SCALE and len(whole) <= NUMERIC_INTEGER_DIGITS:
        return text, "NUMERIC"
    return None


_SCALAR_FITS = frozenset({("S", "STRING"), ("B", "BYTES"), ("BOOL", "BOOL")})
_SET_ELEMENT = {"SS": "S", "NS": "N", "BS": "B"}


class _BadValueError(Exception):
    """A value error inside the recursive conversion; ``path`` grows as it unwinds."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _join(name: str, inner: str) -> str:
    if not inner:
        return name
    return f"{name}{inner}" if inner.startswith("[") else f"{name}.{inner}"


def _tag(value: Any) -> str:
    if type(value) is dict and len(value) == 1:
        for tag in value:
            if tag in _PLAIN:
                return str(tag)
    raise _BadValueError(
        f"{_short(value)} is not a DynamoDB attribute value (one of {', '.join(_PLAIN)})"
    )


def _short(value: Any) -> str:
    return quote_value(value)


def _string(value: AttributeValue) -> JsonValue:
    text = value["S"]
    if type(text) is not str:
        raise _BadValueError(f"S value {_short(text)} is not a string")
    return text


def _number(value: AttributeValue) -> JsonValue:
    return _number_json(value["N"])


def _binary(value: AttributeValue) -> JsonValue:
    return _check_base64(value["B"])


def _check_base64(text: Any) -> str:
    if type(text) is not str:
        raise _BadValueError(f"B value {_short(text)} is not base64 text")
    try:
        base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise _BadValueError(f"B value {_short(text)} is not valid base64") from exc
    return text


def _bool(value: AttributeValue) -> JsonValue:
    flag = value["BOOL"]
    if type(flag) is not bool:
        raise _BadValueError(f"BOOL value {_short(flag)} is not true or false")
    return flag


def _null(value: AttributeValue) -> JsonValue:
    return None


def _sorted_set(tag: str, members: Any) -> list[Any]:
    if type(members) is not list:
        raise _BadValueError(f"{tag} value {_short(members)} is not a list")
    if tag == "NS":
        return sorted(members, key=_parse_number)
    if tag == "BS":
        return sorted(members, key=lambda m: base64.b64decode(_check_base64(m)))
    for member in members:
        if type(member) is not str:
            raise _BadValueError(f"SS member {_short(member)} is not a string")
    return sorted(members)


def _string_set(value: AttributeValue) -> JsonValue:
    return _sorted_set("SS", value["SS"])


def _number_set(value: AttributeValue) -> JsonValue:
    members = value["NS"]
    if type(members) is list:
        simple = [
            _simple_number_json(m)
            if type(m) is str and m.isascii() and len(m) <= _SIMPLE_MAX
            else None
            for m in members
        ]
        # exact int/float values sort as their decimals do; equal ones convert alike
        if all(type(v) is int or type(v) is float for v in simple):
            return sorted(simple)
    return [_number_json(m) for m in _sorted_set("NS", members)]


def _binary_set(value: AttributeValue) -> JsonValue:
    return _sorted_set("BS", value["BS"])


# ``_map`` and ``_list`` convert a value at the top of an attribute (one level deep); the loops
# below convert the maps and lists nested in it themselves, counting the levels.
def _map(value: AttributeValue) -> JsonValue:
    members = value["M"]
    if type(members) is not dict:
        raise _BadValueError(f"M value {_short(members)} is not an object")
    return _plain_members(members, 1)


def _list(value: AttributeValue) -> JsonValue:
    members = value["L"]
    if type(members) is not list:
        raise _BadValueError(f"L value {_short(members)} is not a list")
    return _plain_list(members, 1)


def _too_deep() -> _BadValueError:
    return _BadValueError(
        f"the value is nested more than {MAX_NESTING} levels deep, which DynamoDB does not allow"
    )


# The two loops below are the hot path (most of the time of a batch): the common tags (S, N,
# M, L, BOOL, NULL) with well-typed contents are converted inline, without a call per value;
# anything else goes through the dispatch table ``_PLAIN``, which also raises every error.
def _plain_members(members: Mapping[str, Any], depth: int = 0) -> dict[str, JsonValue]:
    if depth > MAX_NESTING:
        raise _too_deep()
    out: dict[str, JsonValue] = {}
    name = ""
    try:
        for name, value in members.items():
            if type(value) is dict and len(value) == 1:
                ((tag, raw),) = value.items()
                if tag == "S":
                    if type(raw) is str:
                        out[name] = raw
                        continue
                elif tag == "N":
                    if type(raw) is str:
                        if len(raw) < 16 and raw.isascii() and raw.isdigit():
                            out[name] = int(raw)
                        elif len(raw) <= 16 and _short_fraction(raw) is not None:
                            out[name] = float(raw)
                        else:
                            out[name] = _number_json(raw)
                        continue
                elif tag == "M":
                    if type(raw) is dict:
                        out[name] = _plain_members(raw, depth + 1)
                        continue
                elif tag == "L":
                    if type(raw) is list:
                        out[name] = _plain_list(raw, depth + 1)
                        continue
                elif tag == "BOOL":
                    if type(raw) is bool:
                        out[name] = raw
                        continue
                elif tag == "NULL":
                    out[name] = None
                    continue
            out[name] = _PLAIN[_tag(value)](value)
    except _BadValueError as exc:
        raise _BadValueError(exc.message, _join(name, exc.path)) from None
    return out


def _plain_list(members: list[Any], depth: int) -> list[JsonValue]:
    if depth > MAX_NESTING:
        raise _too_deep()
    out: list[JsonValue] = []
    try:
        for value in members:
            if type(value) is dict and len(value) == 1:
                ((tag, raw),) = value.items()
                if tag == "S":
                    if type(raw) is str:
                        out.append(raw)
                        continue
                elif tag == "N":
                    if type(raw) is str:
                        if len(raw) < 16 and raw.isascii() and raw.isdigit():
                            out.append(int(raw))
                        elif len(raw) <= 16 and _short_fraction(raw) is not None:
                            out.append(float(raw))
                        else:
                            out.append(_number_json(raw))
                        continue
                elif tag == "M":
                    if type(raw) is dict:
                        out.append(_plain_members(raw, depth + 1))
                        continue
                elif tag == "L" and type(raw) is list:
                    out.append(_plain_list(raw, depth + 1))
                    continue
            out.append(_PLAIN[_tag(value)](value))
    except _BadValueError as exc:
        # ``out`` holds exactly the members before the one that failed
        raise _BadValueError(exc.message, _join(f"[{len(out)}]", exc.path)) from None
    return out


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
