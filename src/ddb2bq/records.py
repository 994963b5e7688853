"""Inputs -> :class:`Change`: every source format parsed into one value.

===========================  ==============================  ==========================  ============
source                       time field                      binary (B, BS)              ordering
===========================  ==============================  ==========================  ============
Lambda DynamoDB Streams      ApproximateCreationDateTime s   base64 text                 SequenceNumber
boto3 ``get_records``        ApproximateCreationDateTime     ``bytes``                   SequenceNumber
                             (``datetime``)
Kinesis Data Streams for     ApproximateCreationDateTime ms  base64 text                 creation time
DynamoDB (Lambda event)      (or us) inside base64 JSON                                  + Kinesis seq.
S3 export line, Scan item    the export or scan time          base64 text / ``bytes``     generation only
===========================  ==============================  ==========================  ============

Images are kept in DynamoDB JSON with binary as base64 text, so the changelog can store them
as they came, losslessly. ``seq`` is the ordering token of DESIGN.md: four '/'-separated sections
of 16 lowercase hex digits, ``generation / 192-bit stream position``, whose string order is its
numeric order. Snapshot rows (export, Scan) take ``generation/0/0/0``, so any stream change of the
same generation wins over them.

Every error about one record names it the same way, in every format (:func:`record_name`)::

    record 2 (eventID 7f3a9c, key pk='a', sk='1')

``record N`` counts the records of one input from 0: the ``Records`` of a Lambda event or a
GetRecords response, the ``Items`` of a Scan page, the non-blank lines of an export file. What is
known of the record follows: its ``eventID`` (stream records), its key once parsed, and, when
rows are built, its table. A record that is not in its format's shape, or holds a value outside
DynamoDB's domain (nesting, numbers, times, sequence numbers), is refused with a RecordError for
that record alone; the other records of the input go on.
"""

from __future__ import annotations

import base64
import dataclasses
import reprlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import orjson

from ddb2bq.exceptions import RecordError

Op = Literal["INSERT", "MODIFY", "REMOVE", "SNAPSHOT"]
AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

TTL_PRINCIPAL = "dynamodb.amazonaws.com"
# a tuple, not a set: `in` of an unhashable eventName is False, not a TypeError
_OPS = ("INSERT", "MODIFY", "REMOVE")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_POSITION = 1 << 192
_MAX_POSITION_DIGITS = len(str(_MAX_POSITION))
_MAX_KINESIS_DIGITS = 129  # Kinesis: 0|([1-9]\d{0,128})
_LOW_128 = (1 << 128) - 1
_KEY_TAGS = frozenset(("S", "N", "B"))
# Change times: from the epoch (Kinesis orders changes by it) to the end of BigQuery's
# TIMESTAMP range, 9999-12-31T23:59:59.999999Z.
_MIN_US, _MAX_US = 0, 253402300799_999999
_MIN_S, _MAX_S = 0, 253402300799
# DynamoDB's 32 levels of nesting are about 70 levels of JSON; deeper input is refused before
# it can reach Python's recursion limit.
_MAX_JSON_DEPTH = 200
# Errors a malformed record can raise from code that does not check every shape first; at the
# per-record boundary they become that record's RecordError (chained), never a crash of the batch.
INPUT_ERRORS = (ValueError, OverflowError, TypeError, KeyError, RecursionError)
UNCHECKED = "an input shape ddb2bq does not check for"  # in the messages of such errors


@dataclass(slots=True)
class Change:
    """One change of one item, whatever format it arrived in: a value, never changed once made
    (``dataclasses.replace`` makes another). Not ``frozen``: a frozen dataclass's ``__init__``
    costs about 3 µs here, a tenth of converting a whole change.

    ``keys`` and the images are DynamoDB JSON with binary values as base64 text.
    ``changed_at_us`` is the approximate change time in microseconds since the epoch.
    ``record`` is the original record, kept whole for the dead letters; ``index`` its position
    in its input, as errors name it (:func:`record_name`).
    """

    op: Op
    keys: Item
    new_image: Item | None
    old_image: Item | None
    seq: str
    changed_at_us: int
    event_id: str
    is_ttl_delete: bool = False
    shard_id: str | None = None
    sequence_number: str | None = None
    table: str | None = None
    record: Any = None
    index: int | None = None


def make_seq(generation: int, position: int) -> str:
    """The ordering token for a stream ``position`` (a 192-bit number) in ``generation``.

    >>> make_seq(1, 300)
    '0000000000000001/0000000000000000/0000000000000000/000000000000012c'
    """
    if not 0 <= position < _MAX_POSITION:
        raise ValueError(f"stream position {position} does not fit in 192 bits")
    digits = f"{position:048x}"
    return f"{generation:016x}/{digits[:16]}/{digits[16:32]}/{digits[32:]}"


def snapshot_seq(generation: int) -> str:
    """The ordering token of a backfill row: older than every stream change of ``generation``."""
    return make_seq(generation, 0)


def from_lambda_event(event: Mapping[str, Any], *, generation: int = 0) -> list[Change]:
    """Parse a Lambda event from a DynamoDB stream or a Kinesis Data Stream for DynamoDB.

    >>> event = {"Records": [{"eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
    ...     "dynamodb": {"ApproximateCreationDateTime": 1479499740, "Keys": {"Id": {"N": "101"}},
    ...     "NewImage": {"Id": {"N": "101"}}, "SequenceNumber": "111"}}]}
    >>> from_lambda_event(event)[0].op
    'INSERT'
    """
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise RecordError("the event has no 'Records' list; is this a stream event?")
    return [_lambda_record(record, generation, index) for index, record in enumerate(records)]


def from_lambda_record(record: Any, *, generation: int = 0, index: int = 0) -> Change:
    """Parse one record of a Lambda event (DynamoDB Streams or Kinesis)."""
    return _lambda_record(record, generation, index)


def _lambda_record(record: Any, generation: int, index: int) -> Change:
    if type(record) is not dict and not isinstance(record, Mapping):
        raise RecordError("the record is not a JSON object", record=record_name(index))
    if _is_kinesis(record):
        return from_kinesis_record(record, generation=generation, index=index)
    try:
        return _stream_record(record, generation, index, _epoch_seconds_to_us)
    except INPUT_ERRORS as exc:
        raise _unexpected(exc, index, record) from exc


def _is_kinesis(record: Mapping[str, Any]) -> bool:
    return record.get("eventSource") == "aws:kinesis" or "kinesis" in record


def from_get_records(
    response: Mapping[str, Any], *, shard_id: str | None = None, generation: int = 0
) -> list[Change]:
    """Parse a boto3 ``dynamodbstreams.get_records`` response (``datetime`` times, ``bytes``)."""
    records = response.get("Records")
    if not isinstance(records, list):
        raise RecordError("the GetRecords response has no 'Records' list")
    return [
        from_get_records_record(record, shard_id=shard_id, generation=generation, index=index)
        for index, record in enumerate(records)
    ]


def from_get_records_record(
    record: Any, *, shard_id: str | None = None, generation: int = 0, index: int = 0
) -> Change:
    """Parse one GetRecords record: from boto3 (``datetime``, ``bytes``) or from the AWS CLI's
    JSON (epoch seconds or ISO 8601 text, base64 text)."""
    if not isinstance(record, Mapping):
        raise RecordError("the record is not an object", record=record_name(index))
    try:
        body = _encoded_body(record.get("dynamodb"), index, record.get("eventID"))
        change = _stream_record({**record, "dynamodb": body}, generation, index, _datetime_to_us)
    except INPUT_ERRORS as exc:
        raise _unexpected(exc, index, record) from exc
    return dataclasses.replace(change, shard_id=shard_id, record=record)


def from_kinesis_record(
    record: Mapping[str, Any], *, generation: int = 0, index: int = 0
) -> Change:
    """Parse a Kinesis Data Streams for DynamoDB record as Lambda delivers it.

    The payload is base64 JSON whose ``ApproximateCreationDateTime`` is in milliseconds (or
    microseconds, per ``ApproximateCreationDateTimePrecision``). Kinesis does not keep one
    item's changes in order, so the stream position in ``seq`` is the creation time in
    microseconds (high 64 bits) and the low 128 bits of the Kinesis sequence number.
    """
    if not isinstance(record, Mapping):
        raise RecordError("the record is not a JSON object", record=record_name(index))
    try:
        return _kinesis_record(record, generation, index)
    except INPUT_ERRORS as exc:
        raise _unexpected(exc, index, record) from exc


def _kinesis_record(record: Mapping[str, Any], generation: int, index: int) -> Change:
    lambda_event_id = record.get("eventID")
    if lambda_event_id is not None and type(lambda_event_id) is not str:
        raise RecordError(
            f"'eventID' is {quote_value(lambda_event_id)}, not text", record=record_name(index)
        )
    kinesis = record.get("kinesis")
    if not isinstance(kinesis, Mapping):
        raise RecordError(
            "the Kinesis record has no 'kinesis' object", record=_where(index, lambda_event_id)
        )
    try:
        payload = orjson.loads(base64.b64decode(kinesis["data"], validate=True))
    except (KeyError, ValueError, TypeError) as exc:
        where = _where(index, lambda_event_id)
        raise RecordError(f"'kinesis.data' is not base64 JSON: {exc}", record=where) from exc
    if not isinstance(payload, dict):
        raise RecordError(
            "the Kinesis payload is not a JSON object", record=_where(index, lambda_event_id)
        )
    ddb = payload.get("dynamodb")
    if not isinstance(ddb, Mapping):
        where = _where(index, payload.get("eventID") or lambda_event_id)
        raise RecordError("the Kinesis payload has no 'dynamodb' object", record=where)
    micros = ddb.get("ApproximateCreationDateTimePrecision") == "MICROSECOND"
    changed_at = ddb.get("ApproximateCreationDateTime")
    changed_at_us = _kinesis_time_us(changed_at, micros)
    if changed_at_us is None:
        raise RecordError(
            _kinesis_time_problem(changed_at, micros), record=_payload_name(index, payload)
        )
    sequence = kinesis.get("sequenceNumber")
    if (
        type(sequence) is str
        and len(sequence) <= _MAX_KINESIS_DIGITS
        and sequence.isdigit()
        and sequence.isascii()
    ):
        kinesis_seq = int(sequence)
    else:
        where = _payload_name(index, payload)
        kinesis_seq = _decimal_digits(
            sequence, where, "kinesis.sequenceNumber", _MAX_KINESIS_DIGITS
        )
    position = (changed_at_us << 128) | (kinesis_seq & _LOW_128)
    merged = {**payload, "dynamodb": {**ddb, "ApproximateCreationDateTime": changed_at_us}}
    change = _stream_record(merged, generation, index, _identity_us, position=position)
    shard = lambda_event_id.split(":", 1)[0] if lambda_event_id and ":" in lambda_event_id else None
    return dataclasses.replace(
        change,
        shard_id=shard,
        sequence_number=str(sequence),
        record=record,
    )


def _payload_name(index: int, payload: dict[str, Any]) -> str:
    """A Kinesis record named by its payload: the DynamoDB change's eventID and key."""
    keys = payload["dynamodb"].get("Keys")
    known = keys if type(keys) is dict and _key_problem(keys, "") is None else None
    return _where(index, payload.get("eventID"), known)


def from_export_line(
    line: str | bytes,
    *,
    key_names: Sequence[str],
    exported_at_us: int,
    generation: int = 0,
    table: str | None = None,
    index: int = 0,
) -> Change:
    """Parse one line of a DynamoDB S3 export in DYNAMODB_JSON format (``{"Item": {...}}``)."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"the line is not JSON: {exc}", record=record_name(index)) from exc
    if not isinstance(document, dict) or not isinstance(document.get("Item"), dict):
        raise RecordError(
            "the line is not an object with an 'Item' object", record=record_name(index)
        )
    return from_scan_item(
        document["Item"],
        key_names=key_names,
        scanned_at_us=exported_at_us,
        generation=generation,
        table=table,
        index=index,
        record=document,
    )


def from_scan_item(
    item: Mapping[str, Any],
    *,
    key_names: Sequence[str],
    scanned_at_us: int,
    generation: int = 0,
    table: str | None = None,
    index: int = 0,
    record: Any = None,
) -> Change:
    """Parse one item of a Scan page (boto3 client ``bytes`` or JSON base64) as a snapshot change."""
    if not isinstance(item, dict):
        raise RecordError("the item is not an object", record=record_name(index))
    try:
        image = _encoded_item(item, index, None, "the item")
        keys = _snapshot_keys(image, key_names, index)
        event_id = snapshot_event_id(generation, keys)
    except INPUT_ERRORS as exc:
        raise _unexpected(exc, index, None) from exc
    return Change(
        op="SNAPSHOT",
        keys=keys,
        new_image=image,
        old_image=None,
        seq=snapshot_seq(generation),
        changed_at_us=scanned_at_us,
        event_id=event_id,
        table=table,
        record=item if record is None else record,
        index=index,
    )


def _snapshot_keys(image: Item, key_names: Sequence[str], index: int) -> Item:
    keys = {}
    for name in key_names:
        if name not in image:
            raise RecordError(f"the item lacks key attribute {name!r}", record=record_name(index))
        keys[name] = image[name]
    problem = _key_problem(keys, "the item's key")
    if problem is not None:
        raise RecordError(problem, record=record_name(index))
    return keys


def snapshot_event_id(generation: int, keys: Item) -> str:
    """A stable event id for a snapshot row, so a repeated backfill writes the same id."""
    import hashlib  # noqa: PLC0415 (lazy: its OpenSSL library costs a cold start ~3 ms)

    digest = hashlib.sha256(orjson.dumps(keys, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f"snapshot-{generation}-{digest}"


def parse_one(
    unit: Any,
    source: str,
    *,
    index: int = 0,
    key_names: Sequence[str] = (),
    generation: int = 0,
    now_us: int = 0,
) -> Change:
    """Parse one record of the named ``source`` format (the command line's entry point).

    ``source`` is ``lambda`` or ``kinesis`` (a Lambda event record), ``getrecords`` (a boto3
    GetRecords record), ``export`` (a line of an S3 export) or ``scan`` (a Scan item);
    snapshot sources take ``key_names`` and the snapshot time ``now_us``.
    """
    if source in ("lambda", "kinesis"):
        return from_lambda_record(unit, generation=generation, index=index)
    if source == "getrecords":
        return from_get_records_record(unit, generation=generation, index=index)
    if source == "export":
        return from_export_line(
            unit, key_names=key_names, exported_at_us=now_us, generation=generation, index=index
        )
    if source == "scan":
        return from_scan_item(
            unit, key_names=key_names, scanned_at_us=now_us, generation=generation, index=index
        )
    raise ValueError(f"unknown source format {source!r}")


def now_micros() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def record_name(
    index: int | None, *, event_id: Any = None, keys: Any = None, table: str | None = None
) -> str:
    """How every message names a record (see the module docstring); safe for any input.

    >>> record_name(2, event_id="7f3a9c", keys={"pk": {"S": "a"}, "sk": {"N": "1"}})
    "record 2 (eventID 7f3a9c, key pk='a', sk='1')"
    >>> record_name(0), record_name(None, table="orders")
    ('record 0', "a change (table 'orders')")
    """
    details = []
    if table:
        details.append(f"table {quote_value(table)}")
    if event_id is not None and event_id != "":
        shown = event_id if type(event_id) is str and len(event_id) <= 100 else None
        details.append(f"eventID {shown or quote_value(event_id)}")
    if isinstance(keys, dict) and keys:
        shown_keys = [
            f"{_key_name(name)}={quote_value(_scalar(value))}"
            for name, value in list(keys.items())[:4]
        ]
        details.append("key " + ", ".join(shown_keys) + (", ..." if len(keys) > 4 else ""))
    head = "a change" if index is None else f"record {index}"
    return f"{head} ({', '.join(details)})" if details else head


def describe_change(change: Change) -> str:
    """How messages name a change: its record, table, event id and key (:func:`record_name`).

    Snapshot changes (export, Scan) are named by their key: their event id is made up.

    >>> describe_change(Change("INSERT", {"pk": {"S": "a"}}, None, None, "0/0/0/1", 0, "e1", index=2))
    "record 2 (eventID e1, key pk='a')"
    """
    event_id = None if change.op == "SNAPSHOT" else change.event_id
    keys = change.keys if type(change.keys) is dict else None
    return record_name(change.index, event_id=event_id, keys=keys, table=change.table)


def quote_value(value: Any) -> str:
    """``repr`` of an input value as messages quote it: short, whatever the value holds
    (deeply nested, huge, an integer too long for ``str``).

    >>> quote_value("x" * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'"
    """
    try:
        return _REPR.repr(value)
    except ValueError:  # an int too long for str()
        return f"<a {type(value).__name__} too long to show>"


def _key_name(name: Any) -> str:
    return (
        name if type(name) is str and name.isprintable() and len(name) <= 80 else quote_value(name)
    )


def _scalar(value: Any) -> Any:
    if type(value) is dict and len(value) == 1:
        return next(iter(value.values()))
    return value


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = 4
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlong = 40


def _unexpected(exc: BaseException, index: int, record: Any) -> RecordError:
    """The RecordError of an input error no check caught first (raised ``from`` it)."""
    event_id = record.get("eventID") if isinstance(record, Mapping) else None
    return RecordError(
        f"{type(exc).__name__} while parsing it ({UNCHECKED}): {exc}",
        record=record_name(index, event_id=event_id),
    )


def _stream_record(
    record: Mapping[str, Any],
    generation: int,
    index: int,
    to_us: Any,
    *,
    position: int | None = None,
) -> Change:
    event_id = record.get("eventID")
    if event_id is not None and type(event_id) is not str:
        raise RecordError(
            f"'eventID' is {quote_value(event_id)}, not text", record=record_name(index)
        )
    op = record.get("eventName")
    if op not in _OPS:
        raise RecordError(
            f"'eventName' is {quote_value(op)}, not INSERT, MODIFY or REMOVE",
            record=_where(index, event_id),
        )
    ddb = record.get("dynamodb")
    if type(ddb) is not dict and not isinstance(ddb, Mapping):
        raise RecordError("the record has no 'dynamodb' object", record=_where(index, event_id))
    keys = ddb.get("Keys")
    if type(keys) is not dict:
        keys = _require_item(keys, _where(index, event_id), "dynamodb.Keys")
    problem = _key_problem(keys, "'dynamodb.Keys'")
    if problem is not None:
        raise RecordError(problem, record=_where(index, event_id))
    new_image = ddb.get("NewImage")
    if new_image is not None and type(new_image) is not dict:
        new_image = _optional_item(new_image, _where(index, event_id, keys), "dynamodb.NewImage")
    old_image = ddb.get("OldImage")
    if old_image is not None and type(old_image) is not dict:
        old_image = _optional_item(old_image, _where(index, event_id, keys), "dynamodb.OldImage")
    sequence_number = ddb.get("SequenceNumber")
    if position is None:
        position = _stream_position(sequence_number, index, event_id, keys)
    identity = record.get("userIdentity")
    seq = make_seq(generation, position)
    changed_at = ddb.get("ApproximateCreationDateTime")
    if to_us is _epoch_seconds_to_us and type(changed_at) is int and _MIN_S <= changed_at <= _MAX_S:
        changed_at_us = changed_at * 1_000_000
    elif (
        to_us is _epoch_seconds_to_us
        and type(changed_at) is float
        and _MIN_S <= changed_at <= _MAX_S
    ):
        changed_at_us = round(changed_at * 1_000_000)
    else:
        changed_at_us = to_us(
            changed_at, _where(index, event_id, keys), "ApproximateCreationDateTime"
        )
    return Change(  # by position, once per change: keywords cost a third of a microsecond more
        op,
        keys,
        new_image,
        old_image,
        seq,
        changed_at_us,
        event_id or "",
        identity is not None and _is_ttl_delete(identity),
        None,  # shard_id
        None if sequence_number is None else str(sequence_number),
        _table_from(record),
        record,
        index,
    )


def _where(index: int, event_id: Any, keys: Any = None) -> str:
    """How an error names a record (built only for an error: it is not free)."""
    return record_name(index, event_id=event_id, keys=keys)


def _stream_position(sequence_number: Any, index: int, event_id: Any, keys: Item) -> int:
    # the common case first: digits short enough to fit 192 bits whatever they are
    if (
        type(sequence_number) is str
        and len(sequence_number) < _MAX_POSITION_DIGITS
        and sequence_number.isdigit()
        and sequence_number.isascii()
    ):
        return int(sequence_number)
    where = _where(index, event_id, keys)
    position = _decimal_digits(
        sequence_number, where, "dynamodb.SequenceNumber", _MAX_POSITION_DIGITS
    )
    if position >= _MAX_POSITION:
        raise RecordError(
            f"'dynamodb.SequenceNumber' is {quote_value(sequence_number)}, larger than a stream "
            "sequence number can be (below 2**192)",
            record=where,
        )
    return position


def _key_problem(keys: Item, field: str) -> str | None:
    """Why ``keys`` are not a DynamoDB key (one to two S, N or B values), or None."""
    if not keys:
        return f"{field} is empty: a change names its item's key attributes"
    for name, value in keys.items():
        if type(value) is dict and len(value) == 1:
            ((tag, raw),) = value.items()
            if tag in _KEY_TAGS and type(raw) is str and (raw.isascii() or _is_utf8(raw)):
                continue
        return (
            f"key attribute {quote_value(name)} is {quote_value(value)}, not an S, N or B value "
            "(DynamoDB keys are strings, numbers or binary)"
        )
    return None


def _is_utf8(text: str) -> bool:
    """False for text with lone surrogates (JSON can spell them, DynamoDB cannot store them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _table_from(record: Mapping[str, Any]) -> str | None:
    table = record.get("tableName")
    if isinstance(table, str):
        return table
    arn = record.get("eventSourceARN")
    if isinstance(arn, str) and ":table/" in arn:
        return _table_from_arn(arn)
    return None


@lru_cache(maxsize=64)
def _table_from_arn(arn: str) -> str:
    """The table name in a stream ARN; cached, as every record of a batch has the same ARN."""
    return arn.split(":table/", 1)[1].split("/", 1)[0]


def _require_item(value: Any, where: str, field: str) -> Item:
    if not isinstance(value, dict):
        raise RecordError(f"{field!r} is missing or not an object", record=where)
    return value


def _optional_item(value: Any, where: str, field: str) -> Item | None:
    return None if value is None else _require_item(value, where, field)


def _decimal_digits(value: Any, where: str, field: str, max_digits: int) -> int:
    if isinstance(value, str) and value.isdigit() and value.isascii():
        digits = value.lstrip("0")
        if len(digits) > max_digits:
            raise RecordError(
                f"{field!r} is {quote_value(value)}, {len(digits)} digits: longer than a "
                f"sequence number can be ({max_digits} digits at most)",
                record=where,
            )
        return int(digits or "0")
    raise RecordError(
        f"{field!r} is {quote_value(value)}, not a decimal sequence number", record=where
    )


def _time_problem(value: Any, unit: str = "") -> str:
    return (
        f"'ApproximateCreationDateTime' is {quote_value(value)}{unit}, outside the times a change "
        "can have (1970-01-01 to 9999-12-31, BigQuery's TIMESTAMP range)"
    )


def _kinesis_time_us(value: Any, micros: bool) -> int | None:
    """A Kinesis payload's creation time (epoch milliseconds, or microseconds) in microseconds;
    None when it is not a time a change can have."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    unit = 1 if micros else 1000
    if not _MIN_US <= value * unit <= _MAX_US:  # NaN compares False: refused too
        return None
    return int(value) * unit


def _kinesis_time_problem(value: Any, micros: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"'ApproximateCreationDateTime' is {quote_value(value)}, not an epoch number"
    return _time_problem(value, " us" if micros else " ms")


def _epoch_seconds_to_us(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{field!r} is {quote_value(value)}, not epoch seconds", record=where)
    if not _MIN_S <= value <= _MAX_S:  # NaN compares False: refused too
        raise RecordError(_time_problem(value, " s"), record=where)
    if isinstance(value, int):
        return value * 1_000_000
    return round(value * 1_000_000)


def _identity_us(value: Any, where: str, field: str) -> int:
    """A time already in microseconds and checked (:func:`_kinesis_time_us`)."""
    return int(value)


def _datetime_to_us(value: Any, where: str, field: str) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch_seconds_to_us(value, where, field)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise RecordError(
                f"{field!r} is {quote_value(value)}, not an ISO 8601 time", record=where
            ) from exc
    if not isinstance(value, datetime):
        raise RecordError(f"{field!r} is {quote_value(value)}, not a datetime", record=where)
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    micros = (aware - _EPOCH) // timedelta(microseconds=1)
    if not _MIN_US <= micros <= _MAX_US:
        raise RecordError(_time_problem(value.isoformat()), record=where)
    return micros


def encode_binary(value: Any) -> Any:
    """Turn ``bytes`` inside boto3 attribute values into base64 text, as in event JSON.

    Raises RecordError for input nested deeper than any DynamoDB value can be.

    >>> encode_binary({"pk": {"B": b"\\x00\\x01"}, "n": {"N": "1"}})
    {'pk': {'B': 'AAE='}, 'n': {'N': '1'}}
    """
    try:
        return _encode_binary(value, 0)
    except _TooDeepError:
        raise RecordError(
            f"the record is nested more than {_MAX_JSON_DEPTH} levels of JSON deep; DynamoDB "
            "allows 32 levels of nested attributes"
        ) from None


class _TooDeepError(Exception):
    pass


def _encode_binary(value: Any, depth: int) -> Any:
    if depth > _MAX_JSON_DEPTH:
        raise _TooDeepError
    if isinstance(value, dict):
        return {k: _encode_binary(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_binary(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


_IMAGES = ("Keys", "NewImage", "OldImage")


def _encoded_body(body: Any, index: int, event_id: Any) -> Any:
    """:func:`encode_binary` of a GetRecords record's ``dynamodb``; an error names the record
    and the attribute nested too deep."""
    if not isinstance(body, dict):
        return body  # refused by the shape checks
    return {
        field: _encoded_item(value, index, event_id, f"'dynamodb.{field}'")
        if field in _IMAGES
        else value  # times, sizes, sequence numbers: no binary values
        for field, value in body.items()
    }


def _encoded_item(item: Any, index: int, event_id: Any, field: str) -> Any:
    if not isinstance(item, dict):
        return item  # refused by the shape checks
    encoded = {}
    for name, value in item.items():
        try:
            encoded[name] = _encode_binary(value, 1)
        except _TooDeepError:
            raise RecordError(
                f"attribute {quote_value(name)} of {field} is nested more than "
                f"{_MAX_JSON_DEPTH} levels of JSON deep; DynamoDB allows 32 levels of nesting",
                record=record_name(index, event_id=event_id),
            ) from None
    return encoded


def _is_ttl_delete(identity: Any) -> bool:
    """A TTL delete's ``userIdentity``: Lambda spells its key ``principalId``, boto3's
    GetRecords ``PrincipalId``."""
    if not isinstance(identity, Mapping):
        return False
    principal = identity.get("principalId", identity.get("PrincipalId"))
    return bool(principal == TTL_PRINCIPAL)
