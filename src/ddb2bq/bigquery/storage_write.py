"""The writer over the BigQuery Storage Write API's default stream (at-least-once, no stream
to create or commit): ``projects/P/datasets/D/tables/T/streams/_default``.

Rows travel as protocol buffers described at run time: :func:`build_descriptor` turns the
table's :class:`~ddb2bq.schema.Column` list into a proto2 ``DescriptorProto`` (field numbers in
column order; column names are valid proto field names by the schema's naming rule) and
:func:`message_class` into a message class:

==========================================  =================  ==============================
column type                                 proto field        value sent
==========================================  =================  ==============================
STRING, JSON, NUMERIC, BIGNUMERIC           string             the text (exact decimal, JSON)
INT64                                       int64              the integer
FLOAT64                                     double             the float
BOOL                                        bool               true / false
BYTES                                       bytes              the base64 text decoded
TIMESTAMP                                   int64              microseconds since the epoch
ARRAY<T>                                    repeated T         each element as above
==========================================  =================  ==============================

``cdc=True`` writes mirror rows with BigQuery change data capture: the pseudo-columns
``_CHANGE_TYPE`` (``UPSERT``/``DELETE``) and ``_CHANGE_SEQUENCE_NUMBER`` (the change's ``seq``:
'/'-separated sections of 16 hex digits, exactly BigQuery's format) are added; a change with a
mirror row is an UPSERT of it (a soft delete is an UPSERT with ``_deleted`` true), a hard delete
is a DELETE carrying the key columns, and a change without a new image is skipped (counted in
``extra["skipped"]``).

With entities (single-table design, docs/entities.md) :class:`EntityCdcWriter` writes each
change to every mirror of the table (:func:`cdc_routes`): an UPSERT to the mirror of its entity
(the table's own for an item of none), with the key parts as columns, and a DELETE of its key
to each other mirror, all with the change's ``seq``. Without an old image a change does not
say which entity the key had before, so the other mirrors get a DELETE each: harmless where the
key is absent, and the sequence number makes the order of the rows irrelevant.

Requests stay under ``max_bytes`` (the API takes 10 MB). ``AppendRows`` writes nothing of a
request with an invalid row and lists those rows in ``row_errors``: each is a terminal failure
with BigQuery's message, and the valid rows are sent again, once. A value the writer cannot
encode (an INT64 column given ``"x"``) is a terminal failure without a request.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from google.api_core import exceptions as api
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from ddb2bq.bigquery.failures import row_failure
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.sending import Pending, Refusal, Tally, chunks, send_chunk
from ddb2bq.contract import Failure, WriteResult, request_timeout
from ddb2bq.exceptions import RetryableError, TerminalError
from ddb2bq.rows import Row, Rows, second_of
from ddb2bq.schema import Column

if TYPE_CHECKING:
    from ddb2bq.bigquery.entity_mirrors import ScopedMirror

CHANGE_TYPE = "_CHANGE_TYPE"
CHANGE_SEQUENCE_NUMBER = "_CHANGE_SEQUENCE_NUMBER"
MAX_REQUEST_BYTES = 10_000_000
DEFAULT_RETRY = RetryPolicy(max_attempts=8, initial=0.5, maximum=8.0, deadline=60.0)
"""Longer than the REST writer's: after a cut connection gRPC waits about a second (growing) before
reconnecting, and a call made meanwhile fails at once with UNAVAILABLE."""
_F = descriptor_pb2.FieldDescriptorProto
_PROTO_TYPES = {
    "STRING": _F.TYPE_STRING,
    "JSON": _F.TYPE_STRING,
    "NUMERIC": _F.TYPE_STRING,
    "BIGNUMERIC": _F.TYPE_STRING,
    "DATE": _F.TYPE_STRING,
    "DATETIME": _F.TYPE_STRING,
    "TIME": _F.TYPE_STRING,
    "GEOGRAPHY": _F.TYPE_STRING,
    "INT64": _F.TYPE_INT64,
    "FLOAT64": _F.TYPE_DOUBLE,
    "BOOL": _F.TYPE_BOOL,
    "BYTES": _F.TYPE_BYTES,
    "TIMESTAMP": _F.TYPE_INT64,
}
_STATUS_ERRORS: dict[int, type[api.GoogleAPICallError]] = {
    3: api.InvalidArgument,
    4: api.DeadlineExceeded,
    5: api.NotFound,
    7: api.PermissionDenied,
    8: api.ResourceExhausted,
    9: api.FailedPrecondition,
    10: api.Aborted,
    13: api.InternalServerError,
    14: api.ServiceUnavailable,
}
"""In-band ``AppendRowsResponse.error`` codes raised as the error a failed call would raise."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_APPEND_ROWS_REQUEST = types.AppendRowsRequest.pb()
_package_numbers = itertools.count()


def build_descriptor(
    columns: Sequence[Column], *, cdc: bool = False, name: str = "Row"
) -> descriptor_pb2.DescriptorProto:
    """The proto2 message describing a row of ``columns`` (plus the CDC pseudo-columns).

    >>> from ddb2bq.schema import Column
    >>> descriptor = build_descriptor([Column("Id", "INT64"), Column("tags", "ARRAY<STRING>")])
    >>> [(f.name, f.number, f.type, f.label) for f in descriptor.field]
    [('Id', 1, 3, 1), ('tags', 2, 9, 3)]
    """
    descriptor = descriptor_pb2.DescriptorProto(name=name)
    for number, column in enumerate(columns, start=1):
        proto_type = _PROTO_TYPES.get(column.field_type)
        if proto_type is None:
            raise TerminalError(
                f"Column {column.name!r} has type {column.type}, which the Storage Write "
                "writer does not encode; use the insert_all writer for this table."
            )
        label = _F.LABEL_REPEATED if column.field_mode == "REPEATED" else _F.LABEL_OPTIONAL
        descriptor.field.add(name=column.name, number=number, type=proto_type, label=label)
    if cdc:
        for offset, pseudo in enumerate((CHANGE_TYPE, CHANGE_SEQUENCE_NUMBER), start=1):
            descriptor.field.add(
                name=pseudo,
                number=len(columns) + offset,
                type=_F.TYPE_STRING,
                label=_F.LABEL_OPTIONAL,
            )
    return descriptor


def message_class(descriptor: descriptor_pb2.DescriptorProto) -> type[Message]:
    """A message class for ``descriptor``, in a pool of its own (no global registration)."""
    package = f"ddb2bq.rows{next(_package_numbers)}"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto", package=package, syntax="proto2"
    )
    file.message_type.add().CopyFrom(descriptor)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{package}.{descriptor.name}")
    )


def timestamp_micros(value: Any) -> int:
    """Microseconds since the epoch of RFC 3339 text (or of micros already).

    >>> timestamp_micros("2016-11-18T20:09:00.000001Z")
    1479499740000001
    """
    if type(value) is str and len(value) == 27 and value[19] == "." and value[26] == "Z":
        # the shape ddb2bq.rows writes: its second read back by lookup, not parsed again
        fraction = value[20:26]
        if fraction.isdigit() and fraction.isascii():
            second = second_of(value[:19])
            if second is not None:
                return second * 1_000_000 + int(fraction)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return base64.b64decode(value, validate=True)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


_ENCODERS: dict[int, Callable[[Any], Any]] = {
    _F.TYPE_STRING: _text,
    _F.TYPE_INT64: _int,
    _F.TYPE_DOUBLE: float,
    _F.TYPE_BOOL: _bool,
    _F.TYPE_BYTES: _bytes,
}


class RowEncoder:
    """Encodes row dicts (as :mod:`ddb2bq.rows` builds them) into serialized messages.

    Raises ``ValueError`` naming the column for a value its column cannot hold.
    """

    def __init__(self, columns: Sequence[Column], *, cdc: bool = False) -> None:
        self.descriptor = build_descriptor(columns, cdc=cdc)
        self.message = message_class(self.descriptor)
        timestamps = {c.name for c in columns if c.field_type == "TIMESTAMP"}
        self._fields: dict[str, tuple[Callable[[Any], Any], bool]] = {}
        for field in self.descriptor.field:
            encode = timestamp_micros if field.name in timestamps else _ENCODERS[field.type]
            self._fields[field.name] = (encode, field.label == _F.LABEL_REPEATED)
        # the fields whose row value is not already the proto value (text in a string field is)
        self._converted = tuple(
            (name, encode, repeated)
            for name, (encode, repeated) in self._fields.items()
            if repeated or encode is not _text
        )

    def encode(self, row: Mapping[str, Any]) -> bytes:
        """The serialized message of ``row``; NULL values are left unset.

        The message is made in one call from the row, its few non-text values converted first
        (about half the time of setting each field); a row that call refuses (a value of another
        type than its column's, a column the table lacks) is encoded field by field, which
        converts what it can and names the column of what it cannot.
        """
        values = dict(row)
        try:
            for name, encode, repeated in self._converted:
                value = values.get(name)
                if value is not None:
                    values[name] = [encode(v) for v in _list(value)] if repeated else encode(value)
            return self.message(**values).SerializeToString()  # None: the field left unset
        except (ValueError, TypeError, OverflowError):
            return self._encode_each(row)

    def _encode_each(self, row: Mapping[str, Any]) -> bytes:
        message = self.message()
        for name, value in row.items():
            if value is None:
                continue
            spec = self._fields.get(name)
            if spec is None:
                raise ValueError(f"column {name!r} is not in the table's columns")
            encode, repeated = spec
            try:
                if repeated:
                    getattr(message, name).extend(encode(v) for v in _list(value))
                else:
                    setattr(message, name, encode(value))
            except (ValueError, TypeError, binascii.Error) as exc:
                raise _ColumnError(name, f"{value!r} does not fit: {exc}") from exc
        return message.SerializeToString()


class _ColumnError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def _list(value: Any) -> Iterable[Any]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{value!r} is not a list")
    return value


def cdc_row(rows: Rows, keys: Sequence[str]) -> Row | None:
    """The CDC row of one change: UPSERT of its mirror row, DELETE of its keys, or None."""
    if rows.mirror is not None:
        return {**rows.mirror, CHANGE_TYPE: "UPSERT", CHANGE_SEQUENCE_NUMBER: rows.change.seq}
    if rows.change.op == "REMOVE":
        return _cdc_delete(rows, keys)
    return None


def cdc_routes(rows: Rows, keys: Sequence[str], entities: Sequence[str | None]) -> list[Row] | None:
    """The CDC row of one change for each mirror of a table with entities, or None (skipped).

    ``entities`` names each mirror's entity (None: the table's own mirror). The mirror of the
    change's entity gets the UPSERT of ``{**rows.mirror, **rows.parts}`` (a soft delete's
    flagged row too), every other mirror a DELETE of the key. A hard delete is a DELETE to
    every mirror, and so is a soft delete without an old image whose keys name no entity (they
    cannot tell an item of no entity from one whose rule reads other attributes, such as
    ``type``). Rows are not yet cut to each mirror's columns.
    """
    if rows.mirror is None and rows.change.op != "REMOVE":
        return None
    delete = _cdc_delete(rows, keys)
    known = (
        rows.entity is not None or rows.change.op != "REMOVE" or rows.change.old_image is not None
    )
    if rows.mirror is None or not known:
        return [delete for _ in entities]
    seq = rows.change.seq
    upsert = {
        **rows.mirror,
        **(rows.parts or {}),
        CHANGE_TYPE: "UPSERT",
        CHANGE_SEQUENCE_NUMBER: seq,
    }
    return [upsert if entity == rows.entity else delete for entity in entities]


def _cdc_delete(rows: Rows, keys: Sequence[str]) -> Row:
    key_values = {name: rows.changelog[name] for name in keys}
    return {**key_values, CHANGE_TYPE: "DELETE", CHANGE_SEQUENCE_NUMBER: rows.change.seq}


class StorageWriteWriter:
    """Writes a batch through the Storage Write API default stream; a :class:`~ddb2bq.contract.Writer`.

    ``write_client`` is a ``BigQueryWriteClient``; ``table_path`` is
    ``projects/P/datasets/D/tables/T``; ``columns`` the table's columns. Without ``cdc`` it
    writes each change's changelog row; with ``cdc`` the mirror rows of CDC (``keys`` names the
    key columns a DELETE carries).

    Example (with a write client, a layout and changes)::

        writer = StorageWriteWriter(write_client, "projects/p/datasets/d/tables/orders_changes",
                                    layout.changelog_columns())
        writer.write(RowBuilder(layout).build_all(changes)).ok  # True
    """

    def __init__(
        self,
        write_client: Any,
        table_path: str,
        columns: Sequence[Column],
        *,
        cdc: bool = False,
        keys: Sequence[str] = (),
        max_bytes: int = 9_000_000,
        max_rows: int = 50_000,
        retry_policy: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        if cdc and not keys:
            raise ValueError("A CDC StorageWriteWriter needs the key column names (keys=...).")
        self._client = write_client
        self._table = table_path
        self._stream = f"{table_path}/streams/_default"
        self._cdc = cdc
        self._keys = tuple(keys)
        self.encoder = RowEncoder(columns, cdc=cdc)
        self._schema_pb = types.ProtoSchema.pb()(proto_descriptor=self.encoder.descriptor)
        self._overhead = 64 + len(self._stream) + self.encoder.descriptor.ByteSize()
        self._max_bytes = min(max_bytes, MAX_REQUEST_BYTES)
        self._max_rows = max_rows
        self._policy = retry_policy or DEFAULT_RETRY
        self._timeout = timeout

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Append ``batch``; every change not written is in the result's ``failures``."""
        row_of = functools.partial(cdc_row, keys=self._keys) if self._cdc else _changelog_row
        return self.write_rows(batch, [row_of(rows) for rows in batch])

    def write_rows(self, batch: Sequence[Rows], rows: Sequence[Row | None]) -> WriteResult:
        """Append ``rows[i]`` as the row of change ``batch[i]`` (None: skipped, counted)."""
        tally = Tally()
        pending = [p for i, row in enumerate(rows) if (p := self._prepare(i, batch[i], row, tally))]
        for chunk in chunks(
            pending, max_rows=self._max_rows, max_bytes=self._max_bytes, overhead=self._overhead
        ):
            send_chunk(chunk, self._append, self._policy, self._table, tally)
        return tally.result()

    def request(self, rows: Sequence[bytes]) -> types.AppendRowsRequest:
        """The ``AppendRowsRequest`` carrying serialized ``rows`` with the writer schema."""
        # built in place in the underlying protobuf message, the rows added in one call, and
        # wrapped once: proto-plus would check each row, and message arguments to a
        # constructor are copied (about 1 ms for 1,000 rows; this takes a fortieth of that)
        request = _APPEND_ROWS_REQUEST(write_stream=self._stream)
        data = request.proto_rows
        data.writer_schema.CopyFrom(self._schema_pb)
        data.rows.serialized_rows.extend(rows)
        wrapped: types.AppendRowsRequest = types.AppendRowsRequest.wrap(request)
        return wrapped

    def _prepare(self, index: int, rows: Rows, row: Row | None, tally: Tally) -> Pending | None:
        if row is None:
            tally.extra["skipped"] = tally.extra.get("skipped", 0) + 1
            return None
        try:
            payload = self.encoder.encode(row)
        except ValueError as exc:
            column = getattr(exc, "column", None)
            tally.failures.append(
                row_failure(index, rows.change, self._table, str(exc), column=column)
            )
            return None
        size = len(payload) + 6  # field tag and length prefix inside ProtoRows
        if size + self._overhead > self._max_bytes:
            message = f"the row is {size} bytes; a request takes at most {self._max_bytes}; it was not sent"
            tally.failures.append(row_failure(index, rows.change, self._table, message))
            return None
        return Pending(index, rows.change, payload, size)

    def _append(self, rows: list[Pending]) -> dict[int, Refusal]:
        request = self.request([p.payload for p in rows])
        timeout = request_timeout(self._timeout)
        responses = self._client.append_rows(iter([request]), retry=None, timeout=timeout)
        response = next(iter(responses), None)
        if response is None:
            raise RetryableError(f"AppendRows to {self._stream} closed without a response.")
        if response.row_errors:
            return {
                e.index: Refusal(f"{types.RowError.RowErrorCode(e.code).name}: {e.message}")
                for e in response.row_errors
                if 0 <= e.index < len(rows)
            } or {0: Refusal("row errors at unknown positions", collateral=True)}
        code = response.error.code
        if code:
            message = f"AppendRows to {self._stream} failed: {response.error.message}"
            raise _STATUS_ERRORS.get(code, api.Unknown)(message)
        return {}


def _changelog_row(rows: Rows) -> Row:
    return rows.changelog


class EntityCdcWriter:
    """Writes the ``cdc`` mirrors of a table with entities; a :class:`~ddb2bq.contract.Writer`.

    ``mirrors`` are the table's mirrors (:func:`~ddb2bq.bigquery.tables.mirrors_of`: its own
    first, then one per entity); ``keys`` the key columns. Each change goes to every mirror as
    :func:`cdc_routes` says, each row cut to its mirror's columns, one
    :class:`StorageWriteWriter` per mirror. A change fails when any of its rows fails (a
    retryable failure first: the change comes back whole, and its rows again are harmless).

    Example (with a write client, a configuration, its table names and a layout)::

        writer = EntityCdcWriter(write_client, mirrors_of(config, refs, layout),
                                 keys=[c.name for c in layout.keys])
        writer.write(RowBuilder(layout).build_all(changes)).ok  # True
    """

    def __init__(
        self,
        write_client: Any,
        mirrors: Sequence[ScopedMirror],
        *,
        keys: Sequence[str],
        **options: Any,
    ) -> None:
        self._keys = tuple(keys)
        self._entities = [None if m.scope is None else m.scope.entity for m in mirrors]
        self._writers: list[tuple[StorageWriteWriter, frozenset[str]]] = []
        for mirror in mirrors:
            columns = mirror.columns()
            writer = StorageWriteWriter(
                write_client, mirror.ref.path, columns, cdc=True, keys=keys, **options
            )
            names = frozenset((*(c.name for c in columns), CHANGE_TYPE, CHANGE_SEQUENCE_NUMBER))
            self._writers.append((writer, names))

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        """Append ``batch`` to every mirror; every change not written is in ``failures``."""
        routes = [cdc_routes(rows, self._keys, self._entities) for rows in batch]
        results = []
        for position, (writer, names) in enumerate(self._writers):
            rows = [None if r is None else _cut(r[position], names) for r in routes]
            results.append(writer.write_rows(batch, rows))
        skipped = sum(r is None for r in routes)
        return _combined(results, len(batch), skipped)


def _cut(row: Row, names: frozenset[str]) -> Row:
    return {name: value for name, value in row.items() if name in names}


def _combined(results: Sequence[WriteResult], size: int, skipped: int) -> WriteResult:
    """One result of a batch written to several mirrors: a change's failures become one, a
    retryable one first."""
    failures: dict[int, Failure] = {}
    for failure in (f for r in results for f in r.failures):
        if failure.index not in failures or failure.retryable > failures[failure.index].retryable:
            failures[failure.index] = failure
    extra: dict[str, int] = {}
    for result in results:
        for name, count in result.extra.items():
            extra[name] = extra.get(name, 0) + count
    extra.pop("skipped", None)
    if skipped:
        extra["skipped"] = skipped
    return WriteResult(
        written=size - skipped - len(failures),
        failures=tuple(failures[i] for i in sorted(failures)),
        retries=sum(r.retries for r in results),
        requests=sum(r.requests for r in results),
        bytes_sent=sum(r.bytes_sent for r in results),
        extra=extra,
    )
