"""Replaying dead letters: parse each letter's original record again, send it through the
pipeline, and remove only the letters that landed.

Run it after fixing the cause (a column type, a dropped table recreated): ``ddb2bq
replay-dead-letters --config ddb2bq.toml``. A letter whose change is written is removed; every
other letter stays, with its new error and time. Replaying is idempotent: a change written twice
has the same ``event_id`` and ``seq`` (the changelog's insert id, the mirror's ordering).

Nothing is removed before it is safe: a claim is settled (its landed letters removed, the
others kept) only after every letter in it was written or kept again, and a stored line that is
not a letter at all is moved aside whole by the store, counted and named in the report, while
the other letters of its file replay. A replay stopped half-way (Ctrl-C, a full disk) leaves
every letter in the store; the next replay takes the claimed ones first.

Replay is a runtime like the others: the changes go through the one
:class:`~ddb2bq.pipeline.Pipeline` (unordered: letters are independent of each other), built with
:class:`DiscardDeadLetters` because the replay keeps the original letters itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters.format import Claim, DeadLetterStore, Unreadable, with_error
from ddb2bq.exceptions import RecordError
from ddb2bq.pipeline import Pipeline
from ddb2bq.records import (
    Change,
    from_export_line,
    from_get_records_record,
    from_kinesis_record,
    from_lambda_record,
    from_scan_item,
    now_micros,
)

LANDED = frozenset(("written",))


class DiscardDeadLetters:
    """The dead letters of a pipeline used for a replay: none are written, because the replay
    keeps each original letter (with the pipeline's new error) until its change lands."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Drop ``letters``: their originals stay in the store."""


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did: letters removed because their change landed, letters kept with
    their new error (``unreadable`` of them because their record cannot be parsed), and the
    stored lines that are not letters at all, moved aside whole (``set_aside``)."""

    landed: int = 0
    kept: int = 0
    unreadable: int = 0
    set_aside: tuple[Unreadable, ...] = ()

    def __add__(self, other: ReplayReport) -> ReplayReport:
        return ReplayReport(
            self.landed + other.landed,
            self.kept + other.kept,
            self.unreadable + other.unreadable,
            self.set_aside + other.set_aside,
        )

    @property
    def done(self) -> bool:
        """Every letter landed and no line was set aside: nothing is left to look at."""
        return not self.kept and not self.set_aside


def parse_letter(letter: DeadLetter, *, generation: int = 0) -> Change:
    """The change in ``letter``'s record, parsed by its ``source`` format.

    Snapshot letters (``export``, ``scan``) take their key names from ``keys`` (hash key first)
    and their snapshot time from ``failed_at_us``; stream letters keep their sequence number.
    A letter that recorded its ``seq`` keeps it (its generation included); an older letter
    without one takes ``generation``, the current one.
    """
    record = letter.record
    source = letter.source if letter.source in _PARSERS else _guess_source(record)
    change = _PARSERS[source](letter, record, generation)
    if letter.seq:
        change = replace(change, seq=letter.seq)
    return change if change.table else _with_table(change, letter.table)


def _keys(letter: DeadLetter) -> list[str]:
    if not isinstance(letter.keys, dict) or not letter.keys:
        raise RecordError(f"the {letter.source} letter of event {letter.event_id} has no keys")
    return list(letter.keys)


def _export(letter: DeadLetter, record: Any, generation: int) -> Change:
    line = record if isinstance(record, str) else orjson.dumps(record)
    return from_export_line(
        line,
        key_names=_keys(letter),
        exported_at_us=letter.failed_at_us,
        generation=generation,
        table=letter.table,
    )


def _scan(letter: DeadLetter, record: Any, generation: int) -> Change:
    if not isinstance(record, dict):
        raise RecordError(f"the scan letter of event {letter.event_id} holds no item object")
    return from_scan_item(
        record,
        key_names=_keys(letter),
        scanned_at_us=letter.failed_at_us,
        generation=generation,
        table=letter.table,
    )


def _change(letter: DeadLetter, record: Any, generation: int) -> Change:
    """A change that had no original record (built in code) was lettered as its fields."""
    try:
        return Change(**{**record, "record": None})
    except TypeError as exc:
        raise RecordError(f"the letter of event {letter.event_id} is not a change: {exc}") from exc


_PARSERS: dict[str, Callable[[DeadLetter, Any, int], Change]] = {
    "lambda": lambda _, r, g: from_lambda_record(r, generation=g),
    "kinesis": lambda _, r, g: from_kinesis_record(r, generation=g),
    "getrecords": lambda _, r, g: from_get_records_record(r, generation=g),
    "export": _export,
    "scan": _scan,
    "change": _change,
}


def _guess_source(record: Any) -> str:
    """The format of a record lettered under another name (such as ``stream``)."""
    if isinstance(record, dict):
        if "kinesis" in record:
            return "kinesis"
        if "dynamodb" in record:
            return "getrecords"  # reads Lambda and GetRecords records alike, JSON or boto3 form
        if "op" in record and "seq" in record:
            return "change"
        if "Item" in record:
            return "export"
        return "scan"
    raise RecordError(f"the dead letter's record is {type(record).__name__}, not an object")


def _with_table(change: Change, table: str) -> Change:
    return replace(change, table=table)


def replay(
    store: DeadLetterStore,
    pipeline: Pipeline,
    table: str,
    *,
    generation: int = 0,
    batch_size: int = 500,
    clock: Callable[[], int] = now_micros,
) -> ReplayReport:
    """Replay the letters of ``table`` in ``store`` through ``pipeline``, ``batch_size`` changes
    per write; settle each claim once all its letters are written or kept.

    A claim is settled only after each of its letters has landed or been kept with its new
    error, so a letter is never removed before it is written again; when the store cannot keep
    them (a full disk), the RetryableError stops the replay and the claim stays whole for the
    next one. Lines that are not letters are moved aside by the store and reported.

    >>> replay(LocalDeadLetters("dead-letters"), pipeline, "orders")  # doctest: +SKIP
    ReplayReport(landed=3, kept=1, unreadable=0, set_aside=())
    """
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}; replay at least 1 change per write.")
    report = ReplayReport()
    for group in _groups(store.claim(table), batch_size):
        report += _replay_group(
            store, pipeline, group, generation=generation, batch_size=batch_size, clock=clock
        )
    return report


def _groups(claims: list[Claim], size: int) -> Iterator[list[Claim]]:
    group: list[Claim] = []
    count = 0
    for claim in claims:
        group.append(claim)
        count += len(claim.letters)
        if count >= size:
            yield group
            group, count = [], 0
    if group:
        yield group


def _replay_group(
    store: DeadLetterStore,
    pipeline: Pipeline,
    claims: list[Claim],
    *,
    generation: int,
    batch_size: int,
    clock: Callable[[], int],
) -> ReplayReport:
    letters = [letter for claim in claims for letter in claim.letters]
    errors: dict[int, str] = {}
    statuses: dict[int, str] = {}
    for start in range(0, len(letters), batch_size):
        chunk = letters[start : start + batch_size]
        for index, (status, error) in enumerate(_replay_letters(pipeline, chunk, generation)):
            statuses[start + index] = status
            if error is not None:
                errors[start + index] = error
    now = clock()
    offset = 0
    for claim in claims:
        positions = range(offset, offset + len(claim.letters))
        offset += len(claim.letters)
        store.settle(
            claim, [with_error(letters[i], errors[i], now) for i in positions if i in errors]
        )
    counts = list(statuses.values())
    return ReplayReport(
        landed=counts.count("written"),
        kept=len(errors),
        unreadable=counts.count("unreadable"),
        set_aside=tuple(line for claim in claims for line in claim.unreadable),
    )


def _replay_letters(
    pipeline: Pipeline, letters: Sequence[DeadLetter], generation: int
) -> list[tuple[str, str | None]]:
    """Each letter's status, and its new error unless it landed."""
    results: dict[int, tuple[str, str | None]] = {}
    parsed: list[tuple[int, Change]] = []
    for index, letter in enumerate(letters):
        try:
            parsed.append((index, parse_letter(letter, generation=generation)))
        except RecordError as exc:
            error = f"cannot be parsed again: {exc} (first error: {letter.error})"
            results[index] = ("unreadable", error)
    if parsed:
        result = pipeline.process([change for _, change in parsed], ordered=False)
        for (index, _), outcome in zip(parsed, result.outcomes, strict=True):
            landed = outcome.status in LANDED
            results[index] = (outcome.status, None if landed else outcome.reason)
    return [results[index] for index in range(len(letters))]
