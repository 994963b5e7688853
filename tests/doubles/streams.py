"""A scriptable DynamoDB Streams double: boto3's ``dynamodbstreams`` client, in memory.

:class:`StreamDouble` answers DescribeStream, GetShardIterator and GetRecords with boto3's
keyword arguments and answer shapes, and fails with botocore ``ClientError`` carrying the
service's error codes and operation names (the modelled ones as subclasses, like boto3's
``client.exceptions.X``). It follows the Streams API model (research file, section A) where moto
cannot: moto has one shard that never closes, and never trims, expires or throttles.

What a test scripts, on one stream:

- shards with parents, several generations deep: ``put`` appends a change (boto3 form:
  ``ApproximateCreationDateTime`` a datetime rounded down to the second, decimal
  ``SequenceNumber`` strings rising along every lineage, images shaped by ``StreamViewType``,
  ``SizeBytes``, TTL deletes' ``userIdentity``) to the open shard of the item's lineage, chosen
  by key hash among open shards the first time a key is seen;
- ``split`` ends a shard (``EndingSequenceNumber``; its last page has no ``NextShardIterator``)
  and opens children, optionally listed only after N more DescribeStream calls; ``close`` ends
  one without children; ``disable`` ends them all (``StreamStatus`` DISABLED);
- trimming: ``trim_before`` a sequence number or ``trim_older_than`` seconds of the double's
  ``clock``: TrimmedDataAccessException for an iterator AT_ or AFTER_ a sequence number older than
  the trim point, and for GetRecords when records its iterator would read were trimmed since;
  a closed shard whose every record is trimmed leaves the listing (then GetShardIterator:
  ResourceNotFoundException);
- iterators expire 15 minutes after they were handed out (``clock``, ``advance``), or at once
  (``expire_iterators``): ExpiredIteratorException;
- failures on the next calls: ``throttle`` (LimitExceededException) or ``fail`` with any code
  (InternalServerError, ...), for one operation or all;
- ``empty_pages``: GetRecords answers that many empty pages (with a NextShardIterator) before a
  new iterator reaches records; an open shard never ends, it answers ``Records: []``;
- ``shard_filter``: CHILD_SHARDS is "honour"-ed, "ignore"-d (as moto does), "refuse"-d
  (ValidationException) or "unsupported" (botocore's ParamValidationError, an old botocore);
- DescribeStream pages of ``Limit`` (<= 100) shards, at most ``describe_page_size``, listed in
  shard id order; ``LastEvaluatedShardId`` is set on every full page, so the last page may be
  empty;
- counters: ``calls`` per operation, ``shard_calls`` per (operation, shard id),
  ``records_served`` per shard: tests assert "no busy loop" by counting calls, never by timing.

GetRecords ``Limit`` over 1000 raises LimitExceededException, as the API model documents it
(``Limit`` below 1 is refused by botocore before sending: ParamValidationError).
"""

from __future__ import annotations

import copy
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid5

from botocore.exceptions import ClientError, ParamValidationError
from botocore.utils import parse_timestamp

Item = dict[str, Any]
ShardFilterMode = Literal["honour", "ignore", "refuse", "unsupported"]

ITERATOR_LIFETIME = 15 * 60.0
"""Seconds an iterator stays valid after GetShardIterator or GetRecords handed it out."""
RETENTION = 24 * 3600.0
"""Seconds a record is kept before it is susceptible to trimming."""
MAX_RECORDS = 1000
MAX_BYTES = 1_000_000
MAX_SHARDS_PER_PAGE = 100
FIRST_SEQUENCE_NUMBER = 400_000_000_000_000_000_000
"""21 digits, the model's shortest sequence number; numbers are spaced by SEQUENCE_STEP."""
SEQUENCE_STEP = 100
_NO_SHARD = "Requested resource not found: Shard does not exist"
TTL_IDENTITY = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
"""``userIdentity`` of a TTL delete in boto3's form (Lambda spells it ``principalId``)."""

MODELLED_ERRORS = (
    "ExpiredIteratorException",
    "InternalServerError",
    "LimitExceededException",
    "ResourceNotFoundException",
    "TrimmedDataAccessException",
)
exceptions = SimpleNamespace(
    ClientError=ClientError, **{code: type(code, (ClientError,), {}) for code in MODELLED_ERRORS}
)
"""The modelled errors as ``ClientError`` subclasses, as boto3's ``client.exceptions`` has them."""


def client_error(code: str, operation: str, message: str) -> ClientError:
    """The ``ClientError`` boto3 raises for an error answer (a subclass for modelled codes)."""
    status = 500 if code == "InternalServerError" else 400
    error_class: type[ClientError] = getattr(exceptions, code, ClientError)
    answer: Any = {"Error": {"Code": code, "Message": message}}
    return error_class(answer | {"ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@dataclass
class _Record:
    sequence_number: int
    created: float
    body: dict[str, Any]


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    start: int
    end: int | None = None
    records: list[_Record] = field(default_factory=list)
    hidden_for: int = 0
    """DescribeStream calls that still do not list the shard."""

    def description(self) -> dict[str, Any]:
        numbers = {"StartingSequenceNumber": str(self.start)}
        if self.end is not None:
            numbers["EndingSequenceNumber"] = str(self.end)
        parent = {"ParentShardId": self.parent_id} if self.parent_id else {}
        return {"ShardId": self.shard_id, **parent, "SequenceNumberRange": numbers}


@dataclass
class _Iterator:
    number: int
    shard_id: str
    position: int
    """The next record served has a sequence number at or after it."""
    issued: float
    empty_pages: int


@dataclass
class _Failure:
    code: str
    calls: int
    operation: str | None
    message: str


class StreamDouble:
    """One DynamoDB stream, scripted by the test and read through boto3's client interface."""

    exceptions = exceptions

    def __init__(
        self,
        *,
        table: str = "orders",
        key_schema: Sequence[tuple[str, str]] = (("pk", "HASH"),),
        view_type: str = "NEW_AND_OLD_IMAGES",
        shards: int = 1,
        shard_ids: Sequence[str] | None = None,
        region: str = "eu-west-1",
        account: str = "123456789012",
        clock: float = 1_800_000_000.0,
        describe_page_size: int = MAX_SHARDS_PER_PAGE,
        shard_filter: ShardFilterMode = "honour",
        empty_pages: int = 0,
        end_on_last_records: bool = True,
    ) -> None:
        """``shards`` open root shards (or one per id of ``shard_ids``). ``end_on_last_records``:
        the page reaching a closed shard's end has no NextShardIterator (False: one more empty
        page ends it)."""
        self.clock = clock
        self.table = table
        self.key_schema = [{"AttributeName": a, "KeyType": k} for a, k in key_schema]
        self.view_type = view_type
        self.region = region
        self.label = datetime.fromtimestamp(clock, UTC).strftime("%Y-%m-%dT%H:%M:%S.000")
        self.stream_arn = f"arn:aws:dynamodb:{region}:{account}:table/{table}/stream/{self.label}"
        self.status = "ENABLED"
        self.describe_page_size = describe_page_size
        self.shard_filter: ShardFilterMode = shard_filter
        self.empty_pages = empty_pages
        self.end_on_last_records = end_on_last_records
        self.calls: Counter[str] = Counter()
        self.shard_calls: Counter[tuple[str, str]] = Counter()
        self.records_served: Counter[str] = Counter()
        self._next = FIRST_SEQUENCE_NUMBER
        self._trim = FIRST_SEQUENCE_NUMBER
        self._shards: dict[str, _Shard] = {}
        self._homes: dict[str, str] = {}
        self._iterators: dict[str, _Iterator] = {}
        self._expired_below = 0
        self._failures: list[_Failure] = []
        self._stamp = 0
        roots: Sequence[str | None] = shard_ids or [None] * shards
        for shard_id in roots:
            self._open(None, shard_id)

    # -- scripting ---------------------------------------------------------------------------

    def put(
        self,
        keys: Item,
        new_image: Item | None = None,
        old_image: Item | None = None,
        *,
        op: str | None = None,
        shard_id: str | None = None,
        ttl: bool = False,
    ) -> str:
        """Append one change of the item ``keys`` and return its sequence number. ``op`` defaults
        to INSERT (new image only), MODIFY (both) or REMOVE (no new image); ``shard_id`` forces
        the shard (it must be open); ``ttl`` marks a REMOVE as done by TTL."""
        shard = self._shards[shard_id] if shard_id else self._route(keys)
        if shard.end is not None:
            raise ValueError(f"shard {shard.shard_id} is closed: put changes into an open one")
        self._homes[_key_of(keys)] = shard.shard_id
        number = self._take()
        op = op or ("REMOVE" if new_image is None else "MODIFY" if old_image else "INSERT")
        body = self._record(number, op, keys, new_image, old_image, ttl)
        shard.records.append(_Record(number, self.clock, body))
        return str(number)

    def split(
        self,
        shard_id: str,
        children: int = 2,
        *,
        visible_after: int = 0,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """End open shard ``shard_id`` at its current end and open ``children`` children (or one
        per id of ``ids``), listed only after ``visible_after`` more DescribeStream calls.
        Returns the children's ids."""
        self.close(shard_id)
        wanted: Sequence[str | None] = ids or [None] * children
        return [self._open(shard_id, child, visible_after).shard_id for child in wanted]

    def close(self, shard_id: str) -> None:
        """End open shard ``shard_id`` without children."""
        shard = self._shards[shard_id]
        if shard.end is not None:
            raise ValueError(f"shard {shard_id} is already closed")
        shard.end = self._take()

    def disable(self) -> None:
        """Turn the stream off: every open shard ends, records stay readable until trimmed."""
        for shard in self._shards.values():
            if shard.end is None:
                self.close(shard.shard_id)
        self.status = "DISABLED"

    def trim_before(self, sequence_number: str | int) -> None:
        """Trim every record numbered below ``sequence_number`` (never records not yet written)."""
        self._trim = min(max(self._trim, int(sequence_number)), self._next)

    def trim_older_than(self, seconds: float = RETENTION) -> None:
        """Trim every record created more than ``seconds`` before ``clock``."""
        cutoff = self.clock - seconds
        records = [r for s in self._shards.values() for r in s.records]
        kept = [r.sequence_number for r in records if r.created >= cutoff]
        self.trim_before(min(kept, default=self._next))

    def advance(self, seconds: float) -> None:
        """Move the double's clock forward (iterators age, new records are newer)."""
        self.clock += seconds

    def expire_iterators(self) -> None:
        """Make every iterator handed out so far expired."""
        self._expired_below = len(self._iterators)

    def throttle(self, calls: int = 1, *, operation: str | None = None) -> None:
        """Fail the next ``calls`` calls (of ``operation``, or of any) with LimitExceeded."""
        self.fail("LimitExceededException", calls=calls, operation=operation)

    def fail(
        self, code: str, *, calls: int = 1, operation: str | None = None, message: str = ""
    ) -> None:
        """Fail the next ``calls`` calls (of ``operation``, e.g. "GetRecords", or of any) with
        ClientError ``code``."""
        text = message or {"LimitExceededException": "Rate exceeded for shard"}.get(code, code)
        self._failures.append(_Failure(code, calls, operation, text))

    def shard(self, shard_id: str) -> dict[str, Any]:
        """Shard ``shard_id`` as DescribeStream describes it (listed or not)."""
        return self._shards[shard_id].description()

    def open_shards(self) -> list[str]:
        """The ids of the shards that receive changes now, in id order."""
        return sorted(s.shard_id for s in self._shards.values() if s.end is None)

    # -- the dynamodbstreams interface -------------------------------------------------------

    def describe_stream(
        self,
        *,
        StreamArn: str,
        Limit: int | None = None,
        ExclusiveStartShardId: str | None = None,
        ShardFilter: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """DescribeStream: a page of the listed shards, in shard id order."""
        operation = "DescribeStream"
        if ShardFilter is not None and self.shard_filter == "unsupported":
            raise ParamValidationError(report='Unknown parameter in input: "ShardFilter"')
        self._enter(operation, StreamArn, limit=Limit, maximum=MAX_SHARDS_PER_PAGE)
        listed = [
            s for s in sorted(self._shards.values(), key=lambda s: s.shard_id) if self._listed(s)
        ]
        for shard in self._shards.values():
            shard.hidden_for = max(0, shard.hidden_for - 1)
        if ShardFilter is not None and self.shard_filter != "ignore":
            parent = self._parent_of(ShardFilter)
            listed = [s for s in listed if s.parent_id == parent]
        start = ExclusiveStartShardId or ""
        size = min(Limit or MAX_SHARDS_PER_PAGE, self.describe_page_size)
        page = [s for s in listed if s.shard_id > start][:size]
        description: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "StreamLabel": self.label,
            "StreamStatus": self.status,
            "StreamViewType": self.view_type,
            "CreationRequestDateTime": _timestamp(self.clock),
            "TableName": self.table,
            "KeySchema": copy.deepcopy(self.key_schema),
            "Shards": [s.description() for s in page],
        }
        if len(page) == size:
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    def get_shard_iterator(
        self,
        *,
        StreamArn: str,
        ShardId: str,
        ShardIteratorType: str,
        SequenceNumber: str | None = None,
    ) -> dict[str, Any]:
        """GetShardIterator: TRIM_HORIZON, LATEST, AT_ or AFTER_SEQUENCE_NUMBER."""
        operation = "GetShardIterator"
        self.shard_calls[operation, ShardId] += 1
        self._enter(operation, StreamArn)
        shard = self._shards.get(ShardId)
        if shard is None or self._gone(shard):
            raise client_error("ResourceNotFoundException", operation, _NO_SHARD)
        position = self._position(shard, ShardIteratorType, SequenceNumber)
        if SequenceNumber is not None and int(SequenceNumber) < self._trim:
            raise self._trimmed(operation, shard)  # "a sequence number older than the trim point"
        return {"ShardIterator": self._hand_out(shard.shard_id, position, self.empty_pages)}

    def get_records(self, *, ShardIterator: str, Limit: int | None = None) -> dict[str, Any]:
        """GetRecords: up to ``Limit`` records (1 MB at most) from the iterator's position."""
        operation = "GetRecords"
        iterator = self._iterators.get(ShardIterator)
        if iterator is not None:
            self.shard_calls[operation, iterator.shard_id] += 1
        self._enter(operation, None, limit=Limit, maximum=MAX_RECORDS)
        iterator = self._valid(iterator, operation)
        shard = self._shards[iterator.shard_id]
        if self._lost(shard, iterator.position):
            raise self._trimmed(operation, shard)
        if self._gone(shard):
            raise client_error("ResourceNotFoundException", operation, _NO_SHARD)
        waiting = [r for r in shard.records if r.sequence_number >= iterator.position]
        if iterator.empty_pages and waiting:
            following = self._hand_out(shard.shard_id, iterator.position, iterator.empty_pages - 1)
            return {"Records": [], "NextShardIterator": following}
        served = _page(waiting, Limit or MAX_RECORDS)
        if served:
            self.records_served[shard.shard_id] += len(served)
        answer: dict[str, Any] = {"Records": [copy.deepcopy(r.body) for r in served]}
        position = served[-1].sequence_number + 1 if served else iterator.position
        if not self._ended(shard, position, bool(served)):
            answer["NextShardIterator"] = self._hand_out(shard.shard_id, position, 0)
        return answer

    # -- internals ---------------------------------------------------------------------------

    def _enter(
        self, operation: str, arn: str | None, *, limit: int | None = None, maximum: int = 0
    ) -> None:
        """Refuse the call as botocore would (not sent, not counted), or count it, then fail it
        as scripted or as the service would."""
        if limit is not None and limit < 1:
            raise ParamValidationError(report=f"Invalid value for parameter Limit, value: {limit}")
        self.calls[operation] += 1
        for failure in self._failures:
            if failure.calls > 0 and failure.operation in (None, operation):
                failure.calls -= 1
                raise client_error(failure.code, operation, failure.message)
        if limit is not None and limit > maximum:
            code = "LimitExceededException" if operation == "GetRecords" else "ValidationException"
            raise client_error(code, operation, f"Limit {limit} is over {maximum}")
        if arn is not None and arn != self.stream_arn:
            message = f"Requested resource not found: Stream: {arn} not found"
            raise client_error("ResourceNotFoundException", operation, message)

    def _valid(self, iterator: _Iterator | None, operation: str) -> _Iterator:
        if iterator is None:
            raise client_error("ValidationException", operation, "Invalid ShardIterator")
        age = self.clock - iterator.issued
        if iterator.number < self._expired_below or age > ITERATOR_LIFETIME:
            message = f"Iterator expired. The iterator was created {age:.0f} seconds ago."
            raise client_error("ExpiredIteratorException", operation, message)
        return iterator

    def _position(self, shard: _Shard, kind: str, sequence_number: str | None) -> int:
        operation = "GetShardIterator"
        needs_number = kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
        if kind not in ("TRIM_HORIZON", "LATEST") and not needs_number:
            raise client_error("ValidationException", operation, f"Invalid type {kind}")
        if needs_number != (sequence_number is not None):
            message = f"SequenceNumber {'missing' if needs_number else 'not allowed'} for {kind}"
            raise client_error("ValidationException", operation, message)
        if kind == "TRIM_HORIZON":
            return max(shard.start, self._trim)
        if kind == "LATEST":
            return shard.end if shard.end is not None else self._next
        number = int(sequence_number) if sequence_number and sequence_number.isdigit() else -1
        if not shard.start <= number <= (shard.end if shard.end is not None else self._next):
            message = f"Invalid SequenceNumber {sequence_number} for shard {shard.shard_id}"
            raise client_error("ValidationException", operation, message)
        return number + (kind == "AFTER_SEQUENCE_NUMBER")

    def _lost(self, shard: _Shard, position: int) -> bool:
        """Whether records at or after ``position`` that an iterator there would read are trimmed."""
        return any(position <= r.sequence_number < self._trim for r in shard.records)

    def _gone(self, shard: _Shard) -> bool:
        """A closed shard leaves the stream once everything in it is trimmed."""
        return shard.end is not None and shard.end <= self._trim

    def _listed(self, shard: _Shard) -> bool:
        return shard.hidden_for == 0 and not self._gone(shard)

    def _ended(self, shard: _Shard, position: int, served: bool) -> bool:
        """Whether this page is a closed shard's last: no NextShardIterator."""
        if shard.end is None or any(r.sequence_number >= position for r in shard.records):
            return False
        return self.end_on_last_records or not served

    def _trimmed(self, operation: str, shard: _Shard) -> ClientError:
        message = f"The data you are trying to access has been trimmed (shard {shard.shard_id})."
        return client_error("TrimmedDataAccessException", operation, message)

    def _parent_of(self, shard_filter: Mapping[str, str]) -> str:
        if self.shard_filter == "refuse" or shard_filter.get("Type") != "CHILD_SHARDS":
            message = "1 validation error detected: Value at 'shardFilter' is not supported"
            raise client_error("ValidationException", "DescribeStream", message)
        return shard_filter.get("ShardId", "")

    def _hand_out(self, shard_id: str, position: int, empty_pages: int) -> str:
        number = len(self._iterators)
        token = f"{self.stream_arn}|1|{uuid5(NAMESPACE_URL, f'{shard_id}/{number}').hex}"
        self._iterators[token] = _Iterator(number, shard_id, position, self.clock, empty_pages)
        return token

    def _open(self, parent_id: str | None, shard_id: str | None, hidden_for: int = 0) -> _Shard:
        self._stamp = max(self._stamp + 1, int(self.clock * 1000))
        shard_id = shard_id or f"shardId-{self._stamp:020d}-{len(self._shards):08x}"
        shard = _Shard(shard_id, parent_id, self._take(), hidden_for=hidden_for)
        self._shards[shard_id] = shard
        return shard

    def _route(self, keys: Item) -> _Shard:
        """The open shard of the item's lineage: its last shard, or an open descendant of it."""
        home = self._homes.get(_key_of(keys))
        candidates = self.open_shards()
        if home is not None:
            descendants = [s for s in candidates if self._descends(s, home)]
            candidates = descendants or candidates
        if not candidates:
            raise ValueError("no shard is open: the stream is disabled or every shard was closed")
        return self._shards[candidates[zlib.crc32(_key_of(keys).encode()) % len(candidates)]]

    def _descends(self, shard_id: str, ancestor: str) -> bool:
        current: str | None = shard_id
        while current is not None and current in self._shards:
            if current == ancestor:
                return True
            current = self._shards[current].parent_id
        return False

    def _record(
        self,
        number: int,
        op: str,
        keys: Item,
        new_image: Item | None,
        old_image: Item | None,
        ttl: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": _timestamp(self.clock),
            "Keys": copy.deepcopy(keys),
        }
        if new_image is not None and self.view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            body["NewImage"] = copy.deepcopy(new_image)
        if old_image is not None and self.view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            body["OldImage"] = copy.deepcopy(old_image)
        body["SequenceNumber"] = str(number)
        body["SizeBytes"] = sum(
            len(repr(body[k])) for k in ("Keys", "NewImage", "OldImage") if k in body
        )
        body["StreamViewType"] = self.view_type
        record = {
            "eventID": uuid5(NAMESPACE_URL, f"{self.stream_arn}/{number}").hex,
            "eventName": op,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": body,
        }
        return record | ({"userIdentity": dict(TTL_IDENTITY)} if ttl else {})

    def _take(self) -> int:
        number = self._next
        self._next += SEQUENCE_STEP
        return number


def _page(records: list[_Record], limit: int) -> list[_Record]:
    """The first records of at most ``limit`` records and about 1 MB (always one at least)."""
    page: list[_Record] = []
    size = 0
    for record in records[:limit]:
        size += record.body["dynamodb"]["SizeBytes"]
        if page and size > MAX_BYTES:
            break
        page.append(record)
    return page


def _key_of(keys: Item) -> str:
    return repr(sorted(keys.items()))


def _timestamp(clock: float) -> datetime:
    """A time as boto3 parses the service's epoch seconds: rounded down, local time zone."""
    parsed: datetime = parse_timestamp(int(clock))
    return parsed
