"""A canonical, typed form of DynamoDB items, and the hashes verify compares.

Two items are equal when DynamoDB would call them equal, and only then:

==========  ==================================================================================
S           the text
N           the exact decimal value: ``1.50`` = ``1.5`` = ``15E-1``, ``-0`` = ``0``; no rounding,
            all 38 digits count (``decimal`` parses text exactly, without a context)
B           the bytes: ``bytes`` from boto3 and base64 text from the changelog are the same value
BOOL/NULL   the value
SS/NS/BS    the set of their members, each canonical (order and duplicates do not count)
L           the members in order
M           the members by name (order does not count)
==========  ==================================================================================

The canonical form (:func:`canonical`) is DynamoDB JSON itself with every value in one spelling:
numbers as :func:`number_text`, binary as standard base64 of the bytes, set members unique and
sorted. Each value keeps its type tag, so the number 1, the string "1", the number set {1} and
the list [1] all differ. Its JSON text with sorted keys (orjson, in C) is the encoding;
:func:`item_digest` and :func:`key_digest` are BLAKE2b hashes of it (128 bits: a collision among
a billion items has a chance of about 1e-21). A value that is not valid DynamoDB JSON (a
malformed image) makes the item's digest one that no valid item has, rather than an error: it is
a difference to report, not a reason to stop.

>>> item_digest({"n": {"N": "1.50"}}) == item_digest({"n": {"N": "15E-1"}})
True
>>> len({item_digest({"v": v}) for v in ({"N": "1"}, {"S": "1"}, {"NS": ["1"]}, {"L": [{"N": "1"}]})})
4
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

from ddb2bq.records import encode_binary

DIGEST_SIZE = 16
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_SORTED = orjson.OPT_SORT_KEYS
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, orjson.JSONEncodeError)


class MalformedValueError(ValueError):
    """A value that is not DynamoDB JSON (an unknown type, a member of the wrong kind)."""


def item_digest(item: Mapping[str, Any]) -> bytes:
    """The 16-byte hash of an item's canonical form (boto3 or event JSON form alike).

    >>> item_digest({"b": {"B": b"\\x00"}}) == item_digest({"b": {"B": "AA=="}})
    True
    """
    return _digest(b"I", item)


def key_digest(key: Mapping[str, Any]) -> bytes:
    """The 16-byte hash of a key (the key attributes only); it names the key in the buckets."""
    return _digest(b"K", key)


def canonical(value: Any) -> Any:
    """One attribute value in its canonical form; raises MalformedValueError on a value that
    is not DynamoDB JSON.

    >>> canonical({"N": "-1.50E+2"}), canonical({"N": "-0.0"}), canonical({"SS": ["b", "a", "b"]})
    ({'N': '-15E+1'}, {'N': '0'}, {'SS': ['a', 'b']})
    """
    try:
        ((tag, raw),) = value.items()
        return _CANONICAL[tag](value, raw)
    except _MALFORMED as exc:
        raise MalformedValueError(f"{_short(value)} is not a DynamoDB attribute value") from exc


def canonical_map(members: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical form of a map's members (an item is the map of its attributes)."""
    return {name: canonical(value) for name, value in members.items()}


def key_of(item: Mapping[str, Any], key_names: Sequence[str]) -> dict[str, Any]:
    """The key attributes of ``item``, hash key first; raises KeyError when one is absent."""
    return {name: item[name] for name in key_names}


def key_text(key: Mapping[str, Any]) -> str:
    """A key as DynamoDB JSON text, binary as base64, in the key's order: how verify prints it.

    >>> key_text({"pk": {"S": "a"}, "id": {"B": b"\\x01"}})
    '{"pk":{"S":"a"},"id":{"B":"AQ=="}}'
    """
    return orjson.dumps(encode_binary(dict(key))).decode()


def key_from_text(text: str) -> dict[str, Any]:
    """The inverse of :func:`key_text`, in boto3's form (B as ``bytes``) for GetItem.

    >>> key_from_text('{"pk":{"S":"a"},"id":{"B":"AQ=="}}')
    {'pk': {'S': 'a'}, 'id': {'B': b'\\x01'}}
    """
    key: dict[str, Any] = orjson.loads(text)
    for value in key.values():
        if "B" in value:
            value["B"] = base64.b64decode(value["B"])
    return key


def number_text(text: Any) -> str | None:
    """The canonical text of a DynamoDB number: digits without leading or trailing zeros and an
    exponent (``E`` and a sign when it is not zero); None for text that is not a number.

    >>> [number_text(t) for t in ("1.50", "150", "0.015E+2", "-0", "1E-130", "x")]
    ['15E-1', '15E+1', '15E-1', '0', '1E-130', None]
    """
    if type(text) is not str:
        return None
    if text.isascii() and text.isdigit() and text[0] != "0":
        digits = text.rstrip("0")
        zeros = len(text) - len(digits)
        return f"{digits}E+{zeros}" if zeros else digits
    if _NUMBER.fullmatch(text) is None:
        return None
    sign, digit_tuple, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)  # a finite number: the pattern admits nothing else
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0"
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    return ("-" if sign else "") + stripped + (f"E{exponent:+d}" if exponent else "")


def _digest(kind: bytes, members: Mapping[str, Any]) -> bytes:
    try:
        text = kind + orjson.dumps(canonical_map(members), option=_SORTED)
    except (MalformedValueError, *_MALFORMED):
        text = b"?" + repr(members).encode("utf-8", "backslashreplace")  # no valid text starts so
    return hashlib.blake2b(text, digest_size=DIGEST_SIZE).digest()


def _same(value: Any, raw: Any) -> Any:
    if type(raw) is not _TYPES[next(iter(value))]:
        raise MalformedValueError("a member of the wrong kind")
    return value


def _number(value: Any, raw: Any) -> Any:
    return {"N": _number_member(raw)}


def _binary(value: Any, raw: Any) -> Any:
    return {"B": base64.b64encode(_bytes(raw)).decode("ascii")}


def _null(value: Any, raw: Any) -> Any:
    if raw is not True:
        raise MalformedValueError("NULL is always true")
    return value


def _string_set(value: Any, raw: Any) -> Any:
    if not all(type(member) is str for member in raw):
        raise MalformedValueError("a string set holds strings")
    return {"SS": sorted(set(raw))}


def _number_set(value: Any, raw: Any) -> Any:
    return {"NS": sorted({_number_member(member) for member in raw})}


def _binary_set(value: Any, raw: Any) -> Any:
    members = sorted({_bytes(member) for member in raw})
    return {"BS": [base64.b64encode(member).decode("ascii") for member in members]}


def _list(value: Any, raw: Any) -> Any:
    if type(raw) is not list:
        raise MalformedValueError("L holds a list")
    return {"L": [canonical(member) for member in raw]}


def _map(value: Any, raw: Any) -> Any:
    return {"M": canonical_map(raw)}


def _number_member(raw: Any) -> str:
    text = number_text(raw)
    if text is None:
        raise MalformedValueError("not a number")
    return text


def _bytes(raw: Any) -> bytes:
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    if type(raw) is str:
        return base64.b64decode(raw, validate=True)
    raise MalformedValueError("binary is bytes or base64 text")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPES = {"S": str, "BOOL": bool}
_CANONICAL: dict[str, Callable[[Any, Any], Any]] = {
    "S": _same,
    "N": _number,
    "B": _binary,
    "BOOL": _same,
    "NULL": _null,
    "SS": _string_set,
    "NS": _number_set,
    "BS": _binary_set,
    "L": _list,
    "M": _map,
}


def first_difference(a: Mapping[str, Any], b: Mapping[str, Any], path: str = "") -> str:
    """The path of the first attribute (in name order) where two unequal items differ, as
    ``address.lines[1]``; the deepest path that still tells them apart. Names only: verify
    prints where items differ, never what they hold (items are user data).

    >>> first_difference({"m": {"M": {"a": {"L": [{"N": "1"}, {"N": "2"}]}}}},
    ...                  {"m": {"M": {"a": {"L": [{"N": "1"}, {"S": "2"}]}}}})
    'm.a[1]'
    """
    for name in sorted(set(a) | set(b)):
        here = f"{path}.{name}" if path else name
        if name not in a or name not in b:
            return here
        if _canonical_or_none(a[name]) != _canonical_or_none(b[name]):
            return _value_difference(a[name], b[name], here)
    return ""


def _value_difference(a: Any, b: Any, path: str) -> str:
    if _is(a, "M") and _is(b, "M"):
        return first_difference(a["M"], b["M"], path) or path
    if _is(a, "L") and _is(b, "L") and len(a["L"]) == len(b["L"]):
        for index, (x, y) in enumerate(zip(a["L"], b["L"], strict=True)):
            if _canonical_or_none(x) != _canonical_or_none(y):
                return _value_difference(x, y, f"{path}[{index}]")
    return path


def _is(value: Any, tag: str) -> bool:
    return (
        type(value) is dict
        and len(value) == 1
        and tag in value
        and isinstance(value[tag], dict if tag == "M" else list)
    )


def _canonical_or_none(value: Any) -> Any:
    try:
        return canonical(value)
    except MalformedValueError:
        return None
