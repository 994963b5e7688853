"""Dead letters in S3 (one JSON-lines object per table per batch) and SQS (one message each).

S3 keys: ``<prefix><table>/<YYYY-MM-DD>/<failed_at_us>-<uuid>.jsonl``. SQS messages are sent in
batches of 10, each batch under 256 KB; a letter bigger than that goes to S3 when an overflow
store is given, else it is an error naming its key. boto3 errors become RetryableError.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters.format import Claim, day, decode_letter, encode_letter, safe_name
from ddb2bq.exceptions import RecordError, RetryableError, TerminalError

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

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Put one object per table holding its letters."""
        groups: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            groups.setdefault(letter.table, []).append(letter)
        for table, group in groups.items():
            first = group[0].failed_at_us
            key = f"{self._table_prefix(table)}{day(first)}/{first}-{uuid.uuid4().hex}.jsonl"
            self._put(key, group)

    def read(self, table: str | None = None) -> Iterator[DeadLetter]:
        """Every letter under the prefix (of ``table``)."""
        for key in self._keys(table):
            yield from self._get(key)

    def claim(self, table: str) -> list[Claim]:
        """Every object of ``table`` with its letters (objects are written once: no race)."""
        return [Claim(tuple(self._get(key)), key) for key in self._keys(table)]

    def settle(self, claim: Claim, remaining: Sequence[DeadLetter]) -> None:
        """Rewrite the object with the letters still failing, or delete it."""
        if remaining:
            self._put(str(claim.handle), list(remaining))
        else:
            self._call("delete", self._s3.delete_object, Bucket=self.bucket, Key=claim.handle)

    def _table_prefix(self, table: str) -> str:
        return f"{self.prefix}{safe_name(table)}/"

    def _keys(self, table: str | None) -> list[str]:
        prefix = self._table_prefix(table) if table else self.prefix
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def _put(self, key: str, letters: Sequence[DeadLetter]) -> None:
        body = b"".join(encode_letter(letter) + b"\n" for letter in letters)
        self._call("write", self._s3.put_object, Bucket=self.bucket, Key=key, Body=body)

    def _get(self, key: str) -> Iterator[DeadLetter]:
        body = self._call("read", self._s3.get_object, Bucket=self.bucket, Key=key)["Body"].read()
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                yield decode_letter(line, where=f"s3://{self.bucket}/{key}:{number}")

    def _call(self, what: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:
            where = f"s3://{self.bucket}/{kwargs.get('Key', self.prefix)}"
            raise RetryableError(f"Cannot {what} dead letters at {where}: {exc}") from exc


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

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Send ``letters`` in batches of 10 (each batch under 256 KB)."""
        bodies: list[tuple[DeadLetter, str]] = []
        too_big: list[tuple[DeadLetter, str]] = []
        for letter in letters:
            body = encode_letter(letter).decode()
            (too_big if len(body.encode()) > SQS_MAX_BYTES else bodies).append((letter, body))
        for batch in _sqs_batches([b for _, b in bodies]):
            self._send_batch(batch)
        if too_big and self.overflow is not None:
            self.overflow.send([letter for letter, _ in too_big])
        elif too_big:
            names = "; ".join(f"event {ltr.event_id} (key {ltr.keys})" for ltr, _ in too_big)
            raise TerminalError(
                f"Dead letters over the SQS limit of {SQS_MAX_BYTES} bytes, not sent: {names}. "
                "Set [dead_letters] s3_bucket so that big letters go to S3."
            )

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
