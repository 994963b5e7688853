"""The pipeline: a batch of changes in, one outcome per change out, every change accounted for.

Every runtime (the Lambda handler, dead-letter replay, the stream runner, the backfill) hands its
batches to :meth:`Pipeline.process` and owns only its own concern. For each batch the pipeline

1. adds columns for promoted attributes (``[columns] promote``) that the batch shows for the
   first time, before writing the rows that need them (the type is configured, or inferred from
   the batch); a column BigQuery refuses to add is logged and left out: its values stay in
   ``item``;
2. converts each change with :class:`~ddb2bq.rows.RowBuilder`; a change that cannot be converted
   is dead-lettered alone, the others go on;
3. writes the changelog rows through the :class:`~ddb2bq.contract.Writer` (and, in ``cdc`` mode,
   the mirror rows through a second writer);
4. sends what cannot be written (records that do not parse, changes that do not convert, rows
   BigQuery refuses) whole to the dead letters, in the batch's order;
5. counts: records, rows written, dead letters, retryable changes, the writers' retries and bytes.

Each change ends ``written``, ``dead_lettered`` (terminal: it went whole to the dead letters, so it
never blocks its shard) or ``retryable`` (nothing is lost; the caller tries it again).

**Ordered streams** (``ordered=True``: a Lambda batch, a shard read by the runner): the source
delivers again everything from the first change it is told to retry. So nothing after the first
retryable change is acted upon: it is ``retryable`` too, and in particular it is not
dead-lettered (it would be dead-lettered again at every re-delivery). Rows after it that the
writer already took are harmless: the re-delivered change has the same ``event_id`` and ``seq``.

**A deadline** (``process(..., deadline=...)``, a :class:`~ddb2bq.contract.Deadline`: the Lambda
handler's, from the invocation's remaining time) bounds the batch: the writers run inside its
:func:`~ddb2bq.contract.deadline_scope` (their retries never sleep past it, their requests never
wait past it), and once it has passed no step starts (no schema change, no write, no dead
letter): the changes not settled by then are ``retryable``, and on an ordered stream everything
from the first of them is delivered again.

The module is cheap to import (no Google, gRPC or AWS module): the Lambda cold start pays for it.
Writers are bound to a column list, so the pipeline takes factories (``layout -> Writer``) and
builds new writers when the layout grows; adding columns is the injected ``evolve`` function's
job (BigQuery DDL, :func:`ddb2bq.bigquery.factory.pipeline_from_config` provides it).

>>> pipeline = Pipeline(config, layout, writer_for, dead_letters)  # doctest: +SKIP
>>> pipeline.process(changes, ordered=True).first_retryable is None  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ddb2bq.classes import data_class
from ddb2bq.config import Config
from ddb2bq.contract import (
    DeadLetter,
    DeadLetterSink,
    Deadline,
    Writer,
    WriteResult,
    deadline_scope,
)
from ddb2bq.exceptions import ConfigError, ConversionError, RetryableError, TerminalError
from ddb2bq.records import Change, now_micros
from ddb2bq.rows import RowBuilder, Rows
from ddb2bq.schema import TableLayout, infer_types

logger = logging.getLogger(__name__)

Status = Literal["written", "dead_lettered", "retryable"]
WriterFactory = Callable[[TableLayout], Writer]
Evolver = Callable[[TableLayout, Mapping[str, str]], TableLayout]
"""``(layout, {attribute: BigQuery type}) -> the grown layout``: adds promoted columns."""

BEHIND_RETRYABLE = "an earlier change of this ordered batch must be written first"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one change; ``reason`` says why it was not written."""

    status: Status
    reason: str = ""


_WRITTEN = Outcome("written")  # one for every change written: an outcome is a value


@data_class(frozen=True, slots=True)
class Unparsed:
    """An input record that could not be parsed into a :class:`~ddb2bq.records.Change`.

    It takes its place in the batch like a change and is dead-lettered whole (``record`` as it
    came), in order: on an ordered stream it is acted upon only before the first retryable change.
    """

    record: Any
    error: str
    event_id: str = ""


@data_class(frozen=True, slots=True)
class BatchResult:
    """One :class:`Outcome` per item of the batch, in the batch's order, and what writing cost."""

    outcomes: tuple[Outcome, ...]
    retries: int = 0
    bytes_sent: int = 0
    requests: int = 0

    @property
    def first_retryable(self) -> int | None:
        """The index of the first change to try again, or None when every change is settled."""
        return next((i for i, o in enumerate(self.outcomes) if o.status == "retryable"), None)

    def count(self, status: Status) -> int:
        """How many changes ended with ``status``."""
        return sum(1 for o in self.outcomes if o.status == status)


@data_class()
class Counters:
    """Running totals over a pipeline's life (a runner's live view, a container's metrics)."""

    batches: int = 0
    records: int = 0
    written: int = 0
    dead_lettered: int = 0
    retryable: int = 0
    retries: int = 0
    bytes_sent: int = 0

    def add(self, result: BatchResult) -> None:
        """Add one batch's result."""
        self.batches += 1
        self.records += len(result.outcomes)
        self.written += result.count("written")
        self.dead_lettered += result.count("dead_lettered")
        self.retryable += result.count("retryable")
        self.retries += result.retries
        self.bytes_sent += result.bytes_sent


class ConflictCounter:
    """Type conflicts per column: counted always, logged once per column.

    A conflict is a value that does not fit its promoted column: the column is NULL in that row
    and the value is in ``item``. The reason may quote the value (user data): it is logged at
    DEBUG only.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, conflicts: Iterable[tuple[str, str]]) -> None:
        """Count ``(column, reason)`` pairs, warning the first time a column has one."""
        for column, reason in conflicts:
            if column not in self.counts:
                logger.warning(
                    "Column %r: a value does not fit the column's type; the column is NULL in "
                    "that row and the value stays in item (further conflicts are counted).",
                    column,
                )
                logger.debug("First type conflict in column %r: %s", column, reason)
            self.counts[column] = self.counts.get(column, 0) + 1


@data_class()
class _Batch:
    """One :meth:`Pipeline.process` call's working state."""

    items: Sequence[Change | Unparsed]
    ordered: bool
    outcomes: list[Outcome | None]
    letters: dict[int, str]  # index -> why it goes to the dead letters
    deadline: Deadline | None = None
    retries: int = 0
    bytes_sent: int = 0
    requests: int = 0

    def cut(self) -> int:
        """The first index nothing may act upon: the first retryable change when ordered."""
        if not self.ordered:
            return len(self.items)
        return next(
            (i for i, o in enumerate(self.outcomes) if o is not None and o.status == "retryable"),
            len(self.items),
        )

    def out_of_time(self, what: str) -> str:
        """Why ``what`` is not done when the deadline has passed; empty while there is time."""
        if self.deadline is None or not self.deadline.expired:
            return ""
        return str(self.deadline.out_of_time(what))

    def tally(self, result: WriteResult) -> None:
        self.retries += result.retries
        self.bytes_sent += result.bytes_sent
        self.requests += result.requests


class Pipeline:
    """Converts, evolves, writes and dead-letters batches of changes for one replicated table.

    ``writer_for`` (and ``mirror_writer_for`` in ``cdc`` mode) make the writers of a layout;
    ``evolve`` adds promoted columns (None: promoted attributes never seen at start stay in
    ``item``); ``source`` names the runtime in the dead letters (``lambda``, ``replay``, …).
    """

    def __init__(
        self,
        config: Config,
        layout: TableLayout,
        writer_for: WriterFactory,
        dead_letters: DeadLetterSink,
        *,
        evolve: Evolver | None = None,
        mirror_writer_for: WriterFactory | None = None,
        source: str = "stream",
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self._config = config
        self._writer_for = writer_for
        self._mirror_writer_for = mirror_writer_for
        self._dead_letters = dead_letters
        self._evolve = evolve
        self._source = source
        self._clock = clock
        self._table = config.source.table or config.target_table
        self._unpromotable: set[str] = set()
        self.conflicts = ConflictCounter()
        self.counters = Counters()
        self._use(layout)

    @property
    def layout(self) -> TableLayout:
        """The current layout (it grows as promoted attributes appear)."""
        return self._layout

    @property
    def writes_mirror(self) -> bool:
        """True when the pipeline writes mirror rows itself (the ``cdc`` mirror)."""
        return self._mirror_writer is not None

    @property
    def source(self) -> str:
        """The runtime's name, as the dead letters record it."""
        return self._source

    def process(
        self,
        items: Sequence[Change | Unparsed],
        *,
        ordered: bool,
        deadline: Deadline | None = None,
    ) -> BatchResult:
        """One outcome per item of ``items``, in order (see the module docstring); nothing is
        started after ``deadline`` (or the enclosing one, when that comes first).

        Raises only what is neither retryable nor a row's own fault (a writer's TerminalError
        for the whole request, a bug); a RetryableError anywhere makes the changes it touches
        ``retryable``.
        """
        with deadline_scope(deadline) as current:
            return self._process(_Batch(items, ordered, [None] * len(items), {}, current))

    def _process(self, batch: _Batch) -> BatchResult:
        items = batch.items
        for index, item in enumerate(items):
            if isinstance(item, Unparsed):
                batch.letters[index] = f"The record cannot be parsed: {item.error}"
        changes = [(i, c) for i, c in enumerate(items) if isinstance(c, Change)]
        late = batch.out_of_time(f"Processing a batch of {len(items)} records")
        if late:
            return self._finish(batch, retry_all=late)
        try:
            self.evolve_for([c for _, c in changes])
        except RetryableError as exc:
            return self._finish(batch, retry_all=str(exc))
        built = self._build(changes, batch)
        self._write(built, self._writer, batch)
        if self._mirror_writer is not None:
            cut = batch.cut()
            ready = [(i, r) for i, r in built if i < cut and self._pending(batch, i)]
            self._write(ready, self._mirror_writer, batch)
        self._send(batch)
        result = self._finish(batch)
        for index, rows in built:
            if result.outcomes[index].status == "written":
                self.conflicts.add(rows.conflicts)
        return result

    # --- the steps ---------------------------------------------------------------------------

    def _use(self, layout: TableLayout) -> None:
        self._layout = layout
        self._builder = RowBuilder(layout, clock=self._clock)
        self._writer = self._writer_for(layout)
        factory = self._mirror_writer_for
        self._mirror_writer = factory(layout) if factory is not None else None

    def evolve_for(self, changes: Sequence[Change]) -> None:
        """Add columns for promoted attributes ``changes`` show for the first time (the
        backfill calls it on sample pages before its workers build rows with :attr:`layout`).
        Raises RetryableError when BigQuery may take the change later."""
        new = self._new_promoted(changes)
        if not new:
            return
        if self._evolve is None:
            logger.error("Not promoting %s: no schema evolution here; values stay in item.", new)
            self._unpromotable.update(new)
            return
        try:
            layout = self._evolve(self._layout, new)
        except (TerminalError, ConfigError) as exc:  # e.g. BigQuery's column limit
            logger.error("Not promoting %s: %s Their values stay in item.", sorted(new), exc)
            self._unpromotable.update(new)
            return
        self._use(layout)

    def _new_promoted(self, changes: Sequence[Change]) -> dict[str, str]:
        known = {c.attribute for c in self._layout.promoted} | set(self._layout.key_names)
        missing = [
            a for a in self._config.promoted_attributes if a not in known | self._unpromotable
        ]
        if not missing:
            return {}
        configured = {a: t.upper() for a, t in self._config.columns.types.items() if a in missing}
        images = [c.new_image for c in changes if c.new_image is not None]
        seen = {a for a in missing if any(image.get(a) is not None for image in images)}
        untyped = [a for a in seen if a not in configured]
        inferred = infer_types(images, untyped)
        return {**inferred, **{a: t for a, t in configured.items() if a in seen}}

    def _build(self, changes: list[tuple[int, Change]], batch: _Batch) -> list[tuple[int, Rows]]:
        built: list[tuple[int, Rows]] = []
        for index, change in changes:
            try:
                built.append((index, self._builder.build(change)))
            except ConversionError as exc:
                batch.letters[index] = str(exc)
        return built

    @staticmethod
    def _pending(batch: _Batch, index: int) -> bool:
        return batch.outcomes[index] is None and index not in batch.letters

    def _write(self, built: list[tuple[int, Rows]], writer: Writer, batch: _Batch) -> None:
        if not built:
            return
        late = batch.out_of_time(f"Writing {_changes(len(built))}")
        if late:
            for index, _ in built:
                batch.outcomes[index] = Outcome("retryable", late)
            return
        try:
            result = writer.write([rows for _, rows in built])
        except RetryableError as exc:
            for index, _ in built:
                batch.outcomes[index] = Outcome("retryable", str(exc))
            return
        batch.tally(result)
        for failure in result.failures:
            index = built[failure.index][0]
            if failure.retryable:
                batch.outcomes[index] = Outcome("retryable", failure.reason)
            else:
                batch.letters[index] = failure.reason

    def _send(self, batch: _Batch) -> None:
        """Dead-letter what may be acted upon (all of it, or what comes before the cut)."""
        cut = batch.cut()
        due = sorted(i for i in batch.letters if i < cut and batch.outcomes[i] is None)
        if not due:
            return
        late = batch.out_of_time(f"Sending {_changes(len(due))} to the dead letters")
        if late:
            for index in due:
                batch.outcomes[index] = Outcome("retryable", f"{batch.letters[index]} ({late})")
            return
        now = self._clock()
        letters = [self._letter(batch.items[i], batch.letters[i], now) for i in due]
        try:
            self._dead_letters.send(letters)
        except RetryableError as exc:
            for index in due:
                reason = f"{batch.letters[index]} (dead letters: {exc})"
                batch.outcomes[index] = Outcome("retryable", reason)
            return
        for index in due:
            batch.outcomes[index] = Outcome("dead_lettered", batch.letters[index])
            logger.warning(
                "A change went to the dead letters (the reason is stored with it).",
                extra=_identity(batch.items[index]),
            )

    def _finish(self, batch: _Batch, *, retry_all: str = "") -> BatchResult:
        cut = 0 if retry_all else batch.cut()
        outcomes = tuple(
            _settled(batch, index, cut, retry_all) for index in range(len(batch.outcomes))
        )
        result = BatchResult(outcomes, batch.retries, batch.bytes_sent, batch.requests)
        self.counters.add(result)
        return result

    def _letter(self, item: Change | Unparsed, reason: str, now: int) -> DeadLetter:
        if isinstance(item, Unparsed):
            return DeadLetter(
                table=self._table,
                error=reason,
                failed_at_us=now,
                source=self._source,
                record=_whole(item.record),
                event_id=item.event_id,
            )
        record = item.record
        if record is None:  # a change built in code: keep all of it
            record = {k: v for k, v in dataclasses.asdict(item).items() if k != "record"}
        return DeadLetter(
            table=item.table or self._table,
            error=reason,
            failed_at_us=now,
            source=self._source,
            record=record,
            event_id=item.event_id,
            keys=item.keys,
            seq=item.seq,
        )


def _settled(batch: _Batch, index: int, cut: int, retry_all: str) -> Outcome:
    """The final outcome of ``index``: what happened to it, or retryable from the cut on."""
    if retry_all:
        return Outcome("retryable", retry_all)
    outcome = batch.outcomes[index]
    if outcome is not None and (outcome.status == "retryable" or index < cut):
        return outcome
    if index >= cut:
        return Outcome("retryable", BEHIND_RETRYABLE)
    if index in batch.letters:  # unordered, and the dead letters were not reached
        return Outcome("retryable", batch.letters[index])
    return _WRITTEN


def _identity(item: Change | Unparsed) -> dict[str, str | None]:
    """What names a change in the logs: never its contents (items are user data)."""
    sequence = item.sequence_number if isinstance(item, Change) else None
    return {"event_id": item.event_id, "sequence_number": sequence}


def _changes(count: int) -> str:
    return "1 change" if count == 1 else f"{count} changes"


def _whole(record: Any) -> Any:
    return dict(record) if isinstance(record, Mapping) else record


__all__ = [
    "BatchResult",
    "ConflictCounter",
    "Counters",
    "Evolver",
    "Outcome",
    "Pipeline",
    "Status",
    "Unparsed",
    "WriterFactory",
]
