"""Dead letters in S3 (one JSON-lines object per table per batch) and SQS (one message each).

S3 keys: ``<prefix><table>/<YYYY-MM-DD>/<failed_at_us>-<uuid>.jsonl``. SQS messages are sent in
batches of 10, each batch under 256 KB; a letter bigger than that goes to S3 when an overflow
store is given, else it is an error naming its key, raised before anything is sent. boto3
errors become RetryableError.

A partial failure never drops a letter: an object is written whole (one PutObject) and only
rewritten or deleted after the letters still failing are in it; a line of an object that is not
a letter is put aside first, whole, in ``<key>.unreadable``. An SQS message is deleted only after
the letter still failing is sent again. A retried send may store a letter twice, never zero
times (replaying a letter twice is harmless: see :mod:`~ddb2bq.dead_letters.replay`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters.format import (
    Claim,
    day,
    decode_letter,
    encode_letter,
    read_lines,
    safe_name,
)
from ddb2bq.exceptions import RecordError, RetryableError, TerminalError

UNREADABLE = ".unreadable"
SQS_MAX_BYTES = 256 * 1024
SQS_BATCH = 10


class S3DeadLetters:
    """Dead letters in S3: one JSON-lines object per table per batch.

    >>> S3DeadLetters(boto3.client("s3"), "my-bucket", "ddb2bq/dead-letters/")  # doctest: +SKIP
    """

    def __init__(self, s3_client: Any, bucket: str, prefix: str = "ddb2bq/dead-letters/") -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix

    @property
    def where(self) -> str:
        """The bucket and prefix, for messages."""
        return f"s3://{self.bucket}/{self.prefix}"

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Put one object per table holding its letters (each object whole, or not at all)."""
        groups: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            groups.setdefault(letter.table, []).append(letter)
        for table, group in groups.items():
            first = group[0].failed_at_us
            key = f"{self._table_prefix(table)}{day(first)}/{first}-{uuid.uuid4().hex}.jsonl"
            self._put(key, _lines(group))

    def read(self, table: str | None = None) -> Iterator[DeadLetter]:
        """Every letter under the prefix (of ``table``); lines that are not letters are
        skipped (a replay puts them aside)."""
        for key in self._keys(table):
            yield from self._claim_of(key).letters

    def claim(self, table: str) -> list[Claim]:
        """Every object of ``table`` with its letters (objects are written once: no race)."""
        return [self._claim_of(key) for key in self._keys(table)]

    def settle(self, claim: Claim, remaining: Sequence[DeadLetter]) -> None:
        """Put the lines that are not letters aside (``<key>.unreadable``), then rewrite the
        object with the letters still failing, or delete it."""
        key = str(claim.handle)
        if claim.unreadable:
            lines = b"".join(bad.line.rstrip(b"\n") + b"\n" for bad in claim.unreadable)
            self._put(f"{key}{UNREADABLE}", lines)
        if remaining:
            self._put(key, _lines(remaining))
        else:
            delete = self._s3.delete_object
            self._call("delete", key, lambda: delete(Bucket=self.bucket, Key=key))

    def _table_prefix(self, table: str) -> str:
        return f"{self.prefix}{safe_name(table)}/"

    def _keys(self, table: str | None) -> list[str]:
        prefix = self._table_prefix(table) if table else self.prefix

        def keys() -> list[str]:
            paginator = self._s3.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            return [item["Key"] for page in pages for item in page.get("Contents", [])]

        return [key for key in self._call("list", prefix, keys) if key.endswith(".jsonl")]

    def _put(self, key: str, body: bytes) -> None:
        put = self._s3.put_object
        self._call("write", key, lambda: put(Bucket=self.bucket, Key=key, Body=body))

    def _claim_of(self, key: str) -> Claim:

        def get() -> Any:
            return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

        body = self._call("read", key, get)
        where = f"s3://{self.bucket}/{key}"
        letters, unreadable = read_lines(body, where, f"{where}{UNREADABLE}")
        return Claim(tuple(letters), key, tuple(unreadable))

    def _call(self, what: str, key: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            where = f"s3://{self.bucket}/{key}"
            raise RetryableError(f"Cannot {what} dead letters at {where}: {exc}") from exc


def _lines(letters: Sequence[DeadLetter]) -> bytes:
    return b"".join(encode_letter(letter) + b"\n" for letter in letters)


class SqsDeadLetters:
    """Dead letters as SQS messages; letters over 256 KB go to ``overflow`` (S3) when given.

    >>> SqsDeadLetters(boto3.client("sqs"), queue_url, overflow=s3_letters)  # doctest: +SKIP
    """

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        *,
        overflow: S3DeadLetters | None = None,
        visibility_timeout: int = 300,
        max_messages: int = 10_000,
    ) -> None:
        self._sqs = sqs_client
        self.queue_url = queue_url
        self.overflow = overflow
        self._visibility = visibility_timeout
        self._max_messages = max_messages

    @property
    def where(self) -> str:
        """The queue, for messages."""
        return self.queue_url

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Send ``letters`` in batches of 10 (each batch under 256 KB)."""
        bodies: list[tuple[DeadLetter, str]] = []
        too_big: list[tuple[DeadLetter, str]] = []
        for letter in letters:
            body = encode_letter(letter).decode()
            (too_big if len(body.encode()) > SQS_MAX_BYTES else bodies).append((letter, body))
        if too_big and self.overflow is None:  # before sending any: all or none of them
            names = "; ".join(f"event {ltr.event_id} (key {ltr.keys})" for ltr, _ in too_big)
            raise TerminalError(
                f"Dead letters over the SQS limit of {SQS_MAX_BYTES} bytes, not sent: {names}. "
                "Set [dead_letters] s3_bucket so that big letters go to S3."
            )
        if too_big and self.overflow is not None:
            self.overflow.send([letter for letter, _ in too_big])
        for batch in _sqs_batches([b for _, b in bodies]):
            self._send_batch(batch)

    def read(self, table: str | None = None) -> Iterator[DeadLetter]:
        """Every letter in the queue (of ``table``): received, then all made visible again."""
        claims = self._receive(table)
        for claim in claims:
            self._release(claim.handle)
        for claim in claims:
            yield from claim.letters

    def claim(self, table: str) -> list[Claim]:
        """Receive the messages of ``table``, hidden for the visibility timeout."""
        return self._receive(table)

    def settle(self, claim: Claim, remaining: Sequence[DeadLetter]) -> None:
        """Send the letters still failing as new messages, then delete the claimed one."""
        if remaining:
            self.send(remaining)
        self._call(self._sqs.delete_message, QueueUrl=self.queue_url, ReceiptHandle=claim.handle)

    def _receive(self, table: str | None) -> list[Claim]:
        """Receive every message (up to ``max_messages``), hidden for the visibility timeout;
        those not ours to take (another table's, or not a dead letter, such as a Lambda
        failure record) are made visible again at the end, so they are not received twice."""
        claims: list[Claim] = []
        skipped: list[str] = []
        seen: set[str] = set()
        while len(seen) < self._max_messages:
            response = self._call(
                self._sqs.receive_message,
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=SQS_BATCH,
                VisibilityTimeout=self._visibility,
                WaitTimeSeconds=0,
            )
            messages = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                claim = self._claim_message(message, table)
                if claim is None:
                    skipped.append(message["ReceiptHandle"])
                else:
                    claims.append(claim)
        for handle in skipped:
            self._release(handle)
        return claims

    def _claim_message(self, message: Mapping[str, Any], table: str | None) -> Claim | None:
        """The message as a claim, or None when it is not ours to take."""
        try:
            letter = decode_letter(message["Body"], where=f"SQS message {message['MessageId']}")
        except RecordError:
            return None
        if table is not None and letter.table != table:
            return None
        return Claim((letter,), message["ReceiptHandle"])

    def _release(self, handle: str) -> None:
        self._call(
            self._sqs.change_message_visibility,
            QueueUrl=self.queue_url,
            ReceiptHandle=handle,
            VisibilityTimeout=0,
        )

    def _send_batch(self, bodies: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
        response = self._call(
            self._sqs.send_message_batch, QueueUrl=self.queue_url, Entries=entries
        )
        failed = response.get("Failed") or []
        if failed:
            reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            raise RetryableError(
                f"SQS refused {len(failed)} of {len(entries)} dead letters for {self.queue_url}: {reasons}"
            )

    def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:
            raise RetryableError(f"SQS queue {self.queue_url} cannot be reached: {exc}") from exc


def _sqs_batches(bodies: Sequence[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if batch and (len(batch) == SQS_BATCH or size + length > SQS_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += length
    if batch:
        yield batch
