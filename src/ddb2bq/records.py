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
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
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
_OPS = frozenset(("INSERT", "MODIFY", "REMOVE"))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_POSITION = 1 << 192
_LOW_128 = (1 << 128) - 1


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one item, whatever format it arrived in.

    ``keys`` and the images are DynamoDB JSON with binary values as base64 text.
    ``changed_at_us`` is the approximate change time in microseconds since the epoch.
    ``record`` is the original record, kept whole for the dead letters.
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
    return [
        _stream_record(record, generation, i, _epoch_seconds_to_us)
        if type(record) is dict and not _is_kinesis(record)
        else from_lambda_record(record, generation=generation, index=i)
        for i, record in enumerate(records)
    ]


def from_lambda_record(record: Any, *, generation: int = 0, index: int = 0) -> Change:
    """Parse one record of a Lambda event (DynamoDB Streams or Kinesis)."""
    if not isinstance(record, Mapping):
        raise RecordError("the record is not a JSON object", record=f"record {index}")
    if _is_kinesis(record):
        return from_kinesis_record(record, generation=generation, index=index)
    return _stream_record(record, generation, index, _epoch_seconds_to_us)


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
        raise RecordError("the record is not an object", record=f"record {index}")
    normal = {**record, "dynamodb": encode_binary(record.get("dynamodb"))}
    change = _stream_record(normal, generation, index, _datetime_to_us)
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
    where = f"record {index}"
    kinesis = record.get("kinesis")
    if not isinstance(kinesis, Mapping):
        raise RecordError("the Kinesis record has no 'kinesis' object", record=where)
    try:
        payload = orjson.loads(base64.b64decode(kinesis["data"], validate=True))
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordError(f"'kinesis.data' is not base64 JSON: {exc}", record=where) from exc
    if not isinstance(payload, dict):
        raise RecordError("the Kinesis payload is not a JSON object", record=where)
    ddb = payload.get("dynamodb")
    if not isinstance(ddb, Mapping):
        raise RecordError("the Kinesis payload has no 'dynamodb' object", record=where)
    changed_at = ddb.get("ApproximateCreationDateTime")
    micros = ddb.get("ApproximateCreationDateTimePrecision") == "MICROSECOND"
    changed_at_us = _number(changed_at, where, "ApproximateCreationDateTime") * (
        1 if micros else 1000
    )
    kinesis_seq = _decimal_digits(kinesis.get("sequenceNumber"), where, "kinesis.sequenceNumber")
    position = (changed_at_us << 128) | (kinesis_seq & _LOW_128)
    merged = {**payload, "dynamodb": {**ddb, "ApproximateCreationDateTime": changed_at_us}}
    change = _stream_record(merged, generation, index, _identity_us, position=position)
    lambda_event_id = str(record.get("eventID", ""))
    return dataclasses.replace(
        change,
        shard_id=lambda_event_id.split(":", 1)[0] if ":" in lambda_event_id else None,
        sequence_number=str(kinesis.get("sequenceNumber")),
        record=record,
    )


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
    where = f"export line {index + 1}"
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"not JSON: {exc}", record=where) from exc
    if not isinstance(document, dict) or not isinstance(document.get("Item"), dict):
        raise RecordError("expected an object with an 'Item' object", record=where)
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
    where = f"item {index}"
    image = encode_binary(_require_item(item, where, "item"))
    keys = {}
    for name in key_names:
        if name not in image:
            raise RecordError(f"the item lacks key attribute {name!r}", record=where)
        keys[name] = image[name]
    return Change(
        op="SNAPSHOT",
        keys=keys,
        new_image=image,
        old_image=None,
        seq=snapshot_seq(generation),
        changed_at_us=scanned_at_us,
        event_id=snapshot_event_id(generation, keys),
        table=table,
        record=item if record is None else record,
    )


def snapshot_event_id(generation: int, keys: Item) -> str:
    """A stable event id for a snapshot row, so a repeated backfill writes the same id."""
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
        if not isinstance(unit, dict):
            raise RecordError("the Scan item is not an object", record=f"item {index}")
        return from_scan_item(
            unit, key_names=key_names, scanned_at_us=now_us, generation=generation, index=index
        )
    raise ValueError(f"unknown source format {source!r}")


def now_micros() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def _stream_record(
    record: Mapping[str, Any],
    generation: int,
    index: int,
    to_us: Any,
    *,
    position: int | None = None,
) -> Change:
    event_id = record.get("eventID")
    op = record.get("eventName")
    if op not in _OPS:
        raise RecordError(
            f"'eventName' is {op!r}, not INSERT, MODIFY or REMOVE", record=_where(index, event_id)
        )
    ddb = record.get("dynamodb")
    if type(ddb) is not dict and not isinstance(ddb, Mapping):
        raise RecordError("the record has no 'dynamodb' object", record=_where(index, event_id))
    keys = ddb.get("Keys")
    if type(keys) is not dict:
        keys = _require_item(keys, _where(index, event_id), "dynamodb.Keys")
    new_image = ddb.get("NewImage")
    if new_image is not None and type(new_image) is not dict:
        new_image = _optional_item(new_image, _where(index, event_id), "dynamodb.NewImage")
    old_image = ddb.get("OldImage")
    if old_image is not None and type(old_image) is not dict:
        old_image = _optional_item(old_image, _where(index, event_id), "dynamodb.OldImage")
    sequence_number = ddb.get("SequenceNumber")
    if position is None:
        if type(sequence_number) is str and sequence_number.isdigit() and sequence_number.isascii():
            position = int(sequence_number)
        else:
            position = _decimal_digits(
                sequence_number, _where(index, event_id), "dynamodb.SequenceNumber"
            )
    identity = record.get("userIdentity")
    seq = make_seq(generation, position)
    changed_at = ddb.get("ApproximateCreationDateTime")
    if to_us is _epoch_seconds_to_us and type(changed_at) is int:
        changed_at_us = changed_at * 1_000_000
    elif to_us is _epoch_seconds_to_us and type(changed_at) is float:
        changed_at_us = round(changed_at * 1_000_000)
    else:
        changed_at_us = to_us(changed_at, _where(index, event_id), "ApproximateCreationDateTime")
    return Change(
        op=op,
        keys=keys,
        new_image=new_image,
        old_image=old_image,
        seq=seq,
        changed_at_us=changed_at_us,
        event_id=str(event_id) if event_id is not None else "",
        is_ttl_delete=_is_ttl_delete(identity),
        sequence_number=None if sequence_number is None else str(sequence_number),
        table=_table_from(record),
        record=record,
    )


def _where(index: int, event_id: Any) -> str:
    """How an error names a record (built only for an error: it is not free)."""
    return f"record {index} (eventID {event_id})" if event_id else f"record {index}"


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


def _decimal_digits(value: Any, where: str, field: str) -> int:
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    raise RecordError(f"{field!r} is {value!r}, not a decimal sequence number", record=where)


def _number(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{field!r} is {value!r}, not an epoch number", record=where)
    return int(value)


def _epoch_seconds_to_us(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{field!r} is {value!r}, not epoch seconds", record=where)
    if isinstance(value, int):
        return value * 1_000_000
    return round(value * 1_000_000)


def _identity_us(value: Any, where: str, field: str) -> int:
    return _number(value, where, field)


def _datetime_to_us(value: Any, where: str, field: str) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch_seconds_to_us(value, where, field)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise RecordError(
                f"{field!r} is {value!r}, not an ISO 8601 time", record=where
            ) from exc
    if not isinstance(value, datetime):
        raise RecordError(f"{field!r} is {value!r}, not a datetime", record=where)
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def encode_binary(value: Any) -> Any:
    """Turn ``bytes`` inside boto3 attribute values into base64 text, as in event JSON.

    >>> encode_binary({"pk": {"B": b"\\x00\\x01"}, "n": {"N": "1"}})
    {'pk': {'B': 'AAE='}, 'n': {'N': '1'}}
    """
    if isinstance(value, dict):
        return {k: encode_binary(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encode_binary(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _is_ttl_delete(identity: Any) -> bool:
    """A TTL delete's ``userIdentity``: Lambda spells its key ``principalId``, boto3's
    GetRecords ``PrincipalId``."""
    if not isinstance(identity, Mapping):
        return False
    principal = identity.get("principalId", identity.get("PrincipalId"))
    return bool(principal == TTL_PRINCIPAL)
