"""DynamoDB numbers: exact parsing, their domain, and their JSON and BigQuery forms.

Numbers are DynamoDB's decimal text (up to 38 significant digits, 1E-130 to 9.99...E+125, either
sign, and zero). They are never passed through a float unless the float gives back the same
value, and never through a ``decimal`` context (which rounds to 28 digits). Text outside that
domain (``1e999``, 39 significant digits) is refused from its digits and exponent alone, before
anything expands it (``1e400000000`` would be 400 MB of zeros).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from ddb2bq.exceptions import ConversionError
from ddb2bq.records import quote_value

# sign, whole digits, fraction digits, exponent; possessive (no backtracking: linear on any text)
_NUMBER = re.compile(r"(-?)([0-9]*+)(?:\.([0-9]*+))?+(?:[eE]([+-]?[0-9]++))?+")
MAX_DIGITS = 38  # DynamoDB numbers: up to 38 significant digits, and
MIN_ADJUSTED, MAX_ADJUSTED = -130, 125  # magnitudes from 1E-130 to 9.99...E+125 (or zero)
_DOMAIN = "38 significant digits, magnitudes 1E-130 to 9.99...E+125"
_SAFE_INTEGER = 2**53
SIMPLE_MAX = 64  # longest number text taken by the fast paths (values within 1E-63..1E+64)
# At most 15 digits and not an integer: its float is exact (see simple_number_json).
short_fraction = re.compile(r"-?[0-9]+\.[0-9]*[1-9]").fullmatch
# Text of at most 16 characters: an integer of at most 15 digits (group 1: an int, below 2**53)
# or a fraction ending in a non-zero digit (at most 15 digits: its float is exact).
short_number = re.compile(r"(-?[0-9]{1,15})|-?[0-9]+\.[0-9]*[1-9]").fullmatch
# The canonical positional text DynamoDB returns: no leading zero, no trailing zero after a point.
canonical_number = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?").fullmatch
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUMERIC_INTEGER_DIGITS, NUMERIC_SCALE = 29, 9
BIGNUMERIC_SCALE = 38
# BIGNUMERIC holds values in [-2**255 / 10**38, (2**255 - 1) / 10**38].
_BIGNUMERIC_MAX_SCALED = 2**255 - 1


class BadValueError(Exception):
    """A value error inside the recursive conversion; ``path`` grows as it unwinds."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def number_json(text: Any) -> int | float | str:
    """A DynamoDB number as a JSON value: an int or float when exact, else the decimal text.

    >>> number_json("12"), number_json("0.1"), number_json("1E+125"), number_json("0.1000000000000000000001")
    (12, 0.1, 1e+125, '0.1000000000000000000001')
    """
    try:
        return json_number(text)
    except BadValueError as exc:
        raise ConversionError(exc.message) from None


def json_number(text: Any) -> int | float | str:
    """:func:`number_json`, raising :class:`BadValueError` (the hot path's form)."""
    if type(text) is str and len(text) <= SIMPLE_MAX and text.isascii():
        if len(text) <= 16:
            short = short_number(text)
            if short is not None:
                return int(text) if short[1] is not None else float(text)
        if canonical_number(text) is not None:
            found = _canonical_json(text)
            if found is not None:
                return found
        simple = simple_number_json(text)
        if simple is not None:
            return simple
    elif type(text) is not str or not text.isascii():
        raise BadValueError(f"{_short(text)} is not a DynamoDB number")
    return _exact_number_json(text)


def long_json_number(text: str) -> int | float | str:
    """:func:`json_number` of text longer than 16 characters (the hot path's form, which has
    tried the short ones first): canonical positional text straight to its value."""
    if len(text) <= SIMPLE_MAX and text.isascii() and canonical_number(text) is not None:
        found = _canonical_json(text)
        if found is not None:
            return found
    return json_number(text)


def _canonical_json(text: str) -> int | float | str | None:
    """:func:`json_number` of canonical positional text (``canonical_number``), or None when
    only the exact check can tell (a 16- or 17-digit integer, a 16- or 17-digit fraction whose
    float prints in exponent form, more than 38 digits).

    Sound for the reasons :func:`simple_number_json` gives; canonical text (no leading zero,
    no trailing zero after the point) counts its significant digits from its length, and is
    the same value as another canonical positional text only when it is the same text.
    """
    negative = text[0] == "-"
    point = text.find(".")
    if point < 0:  # an integer of 16 digits or more: shorter ones are short numbers
        if len(text) - negative == 16:
            whole = int(text)
            if -_SAFE_INTEGER <= whole <= _SAFE_INTEGER:
                return whole
        significant = len(text.rstrip("0")) - negative
    elif text[negative] == "0":  # 0.000ddd: the digits after the zeros
        significant = len(text[point + 1 :].lstrip("0"))
    else:
        significant = len(text) - negative - 1
    if significant <= 15:
        return float(text)
    if significant > 17:
        return text if significant <= MAX_DIGITS else None
    if point < 0:
        return None
    as_float = float(text)
    shortest = repr(as_float)
    if shortest == text:
        return as_float
    return text if "e" not in shortest else None


def simple_number_json(text: str) -> int | float | str | None:
    """:func:`json_number` of ASCII positional text (``-?D+(.D+)?``) without ``decimal``;
    None for any other shape, or when only the exact check can tell.

    Sound because: a decimal of at most 15 significant digits survives the float64 round
    trip (DBL_DIG), and none of more than 17 does (``repr`` of a float has at most 17).
    ``SIMPLE_MAX`` keeps values far inside float64's normal range.
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
            raise BadValueError(_too_many_digits(text, significant))
        return text
    if not fraction.rstrip("0"):
        return None
    as_float = float(text)
    shortest = repr(as_float)
    if shortest == text:  # the same text is the same value
        return as_float
    canonical = (whole == "0" or whole[:1] != "0") and fraction[-1:] != "0"
    if canonical and "e" not in shortest:
        return text  # two canonical positional spellings: different texts, different values
    # else only the exact comparison can tell
    return as_float if Decimal(shortest) == Decimal(text) else text


def _exact_number_json(text: str) -> int | float | str:
    value = decimal_of(text)
    if value.adjusted() < 17 and value == value.to_integral_value():
        whole = int(value)
        if -_SAFE_INTEGER <= whole <= _SAFE_INTEGER:
            return whole
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        return as_float
    return text


def parse_number(text: Any) -> Decimal:
    """Parse DynamoDB number text exactly; raise ConversionError on text that is not a number."""
    try:
        return decimal_of(text)
    except BadValueError as exc:
        raise ConversionError(exc.message) from None


def decimal_of(text: Any) -> Decimal:
    parts = _NUMBER.fullmatch(text) if type(text) is str else None
    if parts is None or not (parts[2] or parts[3]):
        raise BadValueError(f"{_short(text)} is not a DynamoDB number")
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
        raise BadValueError(_too_many_digits(text, significant))
    adjusted = int(exponent or 0) + len(whole) - leading - 1  # the first digit's power of ten
    if not MIN_ADJUSTED <= adjusted <= MAX_ADJUSTED:
        raise _out_of_range(text)


def _out_of_range(text: str) -> BadValueError:
    return BadValueError(f"{_short(text)} is outside DynamoDB's number range ({_DOMAIN})")


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


def simple_decimal(raw: str) -> tuple[str, str] | None:
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


def _short(value: Any) -> str:
    return quote_value(value)
