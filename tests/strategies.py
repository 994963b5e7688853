"""Hypothesis strategies for DynamoDB items over the whole domain DynamoDB allows.

Items come in boto3's low-level client form (``bytes`` for B and BS), as ``get_records`` and
``scan`` return them; :func:`to_event_json` gives the Lambda-event form (base64 text).
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

MAX_DIGITS = 38
MIN_ADJUSTED, MAX_ADJUSTED = -130, 125
EXTREME_NUMBERS = [
    "1E-130",
    "-1E-130",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1234567895171680000000000000000000000000",
    "0.12345678901234567890123456789012345678",
    "12345678901234567890123456789012345678",
]
"""The ends of DynamoDB's number domain, and numbers no float holds."""


@st.composite
def number_text(draw: st.DrawFn) -> str:
    """DynamoDB number text: up to 38 significant digits, 1E-130 .. 9.99..E+125, either sign,
    in the spellings clients send (plain, exponent, trailing zeros, -0)."""
    kind = draw(st.sampled_from(["small", "int", "decimal", "extreme", "zero"]))
    if kind == "small":
        return str(draw(st.integers(-(10**15), 10**15)))
    if kind == "zero":
        return draw(st.sampled_from(["0", "-0", "0.0", "0E+5", "-0.000"]))
    digits = draw(
        st.text("0123456789", min_size=1, max_size=MAX_DIGITS).filter(lambda d: d[0] != "0")
    )
    sign = draw(st.sampled_from(["", "-"]))
    if kind == "int":
        return sign + digits
    low = MIN_ADJUSTED - (len(digits) - 1)
    high = MAX_ADJUSTED - (len(digits) - 1)
    if kind == "decimal":
        low, high = max(low, -40), min(high, 10)
    exponent = draw(st.integers(low, high))
    if draw(st.booleans()):
        return f"{sign}{digits}E{exponent:+d}"
    return sign + _positional(digits, exponent) + "0" * draw(st.integers(0, 2)) * (exponent < 0)


def _positional(digits: str, exponent: int) -> str:
    if exponent >= 0:
        return digits + "0" * exponent
    if -exponent >= len(digits):
        return "0." + "0" * (-exponent - len(digits)) + digits
    return digits[:exponent] + "." + digits[exponent:]


def _distinct_numbers(texts: list[str]) -> list[str]:
    seen: set[Decimal] = set()
    unique = []
    for text in texts:
        if Decimal(text) not in seen:
            seen.add(Decimal(text))
            unique.append(text)
    return unique


names = st.text(min_size=1, max_size=20)
strings = st.text(max_size=30)
binaries = st.binary(max_size=24)

scalars = st.one_of(
    strings.map(lambda s: {"S": s}),
    number_text().map(lambda n: {"N": n}),
    binaries.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(strings, min_size=1, max_size=5, unique=True).map(lambda v: {"SS": v}),
    st.lists(number_text(), min_size=1, max_size=5).map(_distinct_numbers).map(lambda v: {"NS": v}),
    st.lists(binaries, min_size=1, max_size=5, unique=True).map(lambda v: {"BS": v}),
)

attribute_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(names, children, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=12,
)


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    """An item with a string hash key ``pk`` and a number range key ``sk``."""
    item = draw(
        st.dictionaries(names.filter(lambda n: n not in ("pk", "sk")), attribute_values, max_size=8)
    )
    item["pk"] = {"S": draw(st.text(min_size=1, max_size=10))}
    item["sk"] = {"N": str(draw(st.integers(-(10**18), 10**18)))}
    return item


def to_event_json(value: Any) -> Any:
    """The Lambda-event JSON form of a boto3 item: ``bytes`` as base64 text."""
    if isinstance(value, dict):
        return {k: to_event_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_event_json(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def from_event_json(value: Any, tag: str | None = None) -> Any:
    """The inverse of :func:`to_event_json`: base64 text back to ``bytes`` under B and BS."""
    if isinstance(value, dict):
        return {k: from_event_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [from_event_json(v, tag if tag in ("BS",) else None) for v in value]
    if tag in ("B", "BS") and isinstance(value, str):
        return base64.b64decode(value)
    return value
