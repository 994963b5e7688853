"""GetRecords records (boto3 form) as the events Lambda delivers for a DynamoDB stream.

The demo and the end-to-end tests read a local stream with boto3 and hand its records to the
Lambda handler the way Lambda would: :func:`lambda_events` batches them into ``{"Records": [...]}``
events, :func:`lambda_record` converts one record.

>>> from datetime import UTC, datetime
>>> record = {"eventID": "e1", "eventName": "INSERT", "dynamodb": {
...     "ApproximateCreationDateTime": datetime(2026, 11, 30, tzinfo=UTC),
...     "Keys": {"pk": {"B": b"\\x00"}}, "SequenceNumber": "100"}}
>>> event = lambda_record(record, "arn:aws:dynamodb:eu-west-1:1:table/t/stream/2026", "eu-west-1")
>>> event["dynamodb"]["ApproximateCreationDateTime"], event["dynamodb"]["Keys"]
(1795996800.0, {'pk': {'B': 'AA=='}})
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ddb2bq.exceptions import RecordError
from ddb2bq.records import encode_binary


def lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record (boto3 form) as Lambda delivers it in a DynamoDB Streams event:
    ``eventVersion`` 1.1, ``eventSource``, ``awsRegion``, ``eventSourceARN``, the creation time in
    epoch seconds and binary values as base64 text.

    A malformed record is passed on as it is, field by field (never an error here): the handler
    refuses it by name and dead-letters it, as Lambda would have it delivered."""
    event: dict[str, Any] = {key: record[key] for key in ("eventID", "eventName") if key in record}
    event.update(eventVersion="1.1", eventSource="aws:dynamodb", awsRegion=region)
    if "dynamodb" in record:
        event["dynamodb"] = _lambda_body(record["dynamodb"])
    event["eventSourceARN"] = stream_arn
    identity = record.get("userIdentity")
    if identity is not None:
        event["userIdentity"] = (
            _lambda_identity(identity) if isinstance(identity, Mapping) else identity
        )
    return event


def _lambda_body(body: Any) -> Any:
    """``dynamodb`` of a record, with Lambda's epoch seconds and base64 text."""
    if not isinstance(body, Mapping):
        return body
    converted = dict(body)
    created = converted.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        converted["ApproximateCreationDateTime"] = created.timestamp()
    try:
        return encode_binary(converted)
    except RecordError:  # nested deeper than DynamoDB allows: the handler names it
        return converted


def lambda_events(
    records: Iterable[Mapping[str, Any]], stream_arn: str, region: str, *, batch_size: int = 100
) -> Iterator[dict[str, Any]]:
    """The events Lambda would invoke the function with: ``{"Records": [...]}`` of
    ``batch_size`` records at most, in stream order."""
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(lambda_record(record, stream_arn, region))
        if len(batch) == batch_size:
            yield {"Records": batch}
            batch = []
    if batch:
        yield {"Records": batch}


def _lambda_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """``userIdentity`` as Lambda spells it (``principalId``, ``type``; boto3: ``PrincipalId``)."""
    return {
        key[:1].lower() + key[1:] if isinstance(key, str) else key: value
        for key, value in identity.items()
    }
