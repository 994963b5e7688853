"""The dead-letter format: one JSON object per letter, lossless, and the store contract.

A dead letter (one line of a ``.jsonl`` file or S3 object, or one SQS message body)::

    {"table": "orders", "error": "BigQuery rejected the row of event e1 (key Id='7') ...",
     "failed_at": "2024-05-01T12:00:00.000000Z", "failed_at_us": 1714564800000000,
     "source": "lambda", "event_id": "e1", "keys": {"Id": {"N": "7"}},
     "record": {... the original input record, as it came ...}}

``source`` names the record's format (``lambda``, ``kinesis``, ``getrecords``, ``export``,
``scan``) so a replay can parse it again. :func:`to_json` keeps every record JSON-able without
loss: ``bytes`` become base64 text, ``datetime`` ISO 8601 text, ``Decimal`` its exact text,
sets sorted lists.
"""

from __future__ import annotations

import base64
import json
import json.scanner
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import orjson

from ddb2bq.classes import data_class
from ddb2bq.contract import DeadLetter
from ddb2bq.exceptions import RecordError
from ddb2bq.rows import timestamp_text

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def to_json(value: Any) -> Any:
    """``value`` with every part JSON can hold, without loss.

    >>> to_json({"B": b"\\x00\\xff", "at": datetime(2024, 5, 1, tzinfo=UTC), "n": Decimal("1.50")})
    {'B': 'AP8=', 'at': '2024-05-01T00:00:00+00:00', 'n': '1.50'}
    """
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_json(v) for v in value), key=orjson.dumps)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return {"__repr__": repr(value), "__type__": type(value).__qualname__}


def encode_letter(letter: DeadLetter) -> bytes:
    """One dead letter as a JSON object (no newline), however deeply its record is nested."""
    with _deep_recursion():
        return _dumps(
            {
                "table": letter.table,
                "error": letter.error,
                "failed_at": timestamp_text(letter.failed_at_us),
                "failed_at_us": letter.failed_at_us,
                "source": letter.source,
                "event_id": letter.event_id,
                "keys": to_json(letter.keys),
                "seq": letter.seq,
                "record": to_json(letter.record),
            }
        )


_DEEP = 5_000
"""Levels of nesting a letter's record may have. orjson stops at 255 (writing) and 1,024
(reading); a record refused for its depth is exactly the one that must still be kept, so the
standard library's codec takes over past those. Lambda's own event parser stops near 1,000."""


@contextmanager
def _deep_recursion() -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, _DEEP + 500))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _dumps(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:  # nested past 255 levels, or an integer past 64 bits
        encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
        try:
            return encoder.encode(document).encode()
        except RecursionError:  # Python 3.12's C encoder stops at a fixed depth (about 1,000)
            return "".join(encoder.iterencode(document)).encode()  # the Python one: same text


def _loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth limit" not in str(exc):
            raise
        with _deep_recursion():
            try:
                return json.loads(text)  # a letter nested past orjson's 1,024 levels
            except RecursionError:  # Python 3.12's C scanner stops at a fixed depth: the Python one
                decoder = json.JSONDecoder()
                # (typeshed lists neither: both are the standard library's, since Python 3.0)
                decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
                return decoder.decode(text if isinstance(text, str) else text.decode())


def decode_letter(text: str | bytes, where: str = "") -> DeadLetter:
    """The dead letter in ``text`` (as :func:`encode_letter` wrote it)."""
    try:
        data = _loads(text)
        return DeadLetter(
            table=str(data["table"]),
            error=str(data["error"]),
            failed_at_us=int(data["failed_at_us"]),
            source=str(data["source"]),
            record=data["record"],
            event_id=str(data.get("event_id") or ""),
            keys=data.get("keys"),
            seq=str(data.get("seq") or ""),
        )
    except (RecursionError, KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"not a dead letter: {exc}", record=where) from exc


def read_lines(data: bytes, where: str, kept_at: str) -> tuple[list[DeadLetter], list[Unreadable]]:
    """The letters in ``data`` (JSON lines), and the lines that are not letters: one bad line
    never hides the others. ``where`` names the file or object, ``kept_at`` where its
    unreadable lines go.

    >>> letters, bad = read_lines(b'{"table": "t", "err', "t/a.jsonl", "t/a.jsonl.unreadable")
    >>> (letters, bad[0].where)
    ([], 't/a.jsonl:1')
    """
    letters: list[DeadLetter] = []
    unreadable: list[Unreadable] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            letters.append(decode_letter(line))
        except RecordError as exc:
            why = str(exc.__cause__ or exc)
            unreadable.append(Unreadable(f"{where}:{number}", why, kept_at, line))
    return letters, unreadable


def day(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%d")


def safe_name(table: str) -> str:
    name = _UNSAFE.sub("_", table) or "_"
    return "_" + name if name.startswith(".") else name


@data_class(frozen=True)
class Unreadable:
    """A stored line that is not a whole dead letter (cut off by a crash or a full disk, or
    edited by hand). A replay never parses it again nor deletes it: settling its claim moves it,
    byte for byte, to ``kept_at``.

    ``where`` names the file (or object) and line, ``reason`` why it cannot be read.
    """

    where: str
    reason: str
    kept_at: str
    line: bytes = field(repr=False)


@data_class(frozen=True)
class Claim:
    """Letters taken from a store for a replay, and what the store needs to settle them.

    ``unreadable`` holds the lines of the claimed file or object that are not letters: the
    store moves them aside when it settles the claim.
    """

    letters: tuple[DeadLetter, ...]
    handle: Any
    unreadable: tuple[Unreadable, ...] = ()


class DeadLetterStore(Protocol):
    """Dead letters read back: listed, claimed for a replay, and settled after it."""

    @property
    def where(self) -> str:
        """Where the letters are (a folder, an S3 prefix, a queue URL), for messages."""
        ...

    def read(self, table: str | None = None) -> Iterator[DeadLetter]:
        """Every stored letter (of ``table``), without changing anything."""
        ...

    def claim(self, table: str) -> list[Claim]:
        """Take the letters of ``table`` for a replay."""
        ...

    def settle(self, claim: Claim, remaining: Sequence[DeadLetter]) -> None:
        """Remove ``claim``'s letters, keeping ``remaining`` (with their new errors) and its
        unreadable lines; raise RetryableError, and change nothing, when they cannot be kept."""
        ...


def with_error(letter: DeadLetter, error: str, failed_at_us: int) -> DeadLetter:
    """``letter`` failed again: the new error and time, the same record."""
    return replace(letter, error=error, failed_at_us=failed_at_us)
