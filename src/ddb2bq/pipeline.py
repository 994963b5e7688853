"""The BigQuery sink: changes in, changelog rows written, every change accounted for.

:meth:`BigQuerySink.write` takes a batch of :class:`~ddb2bq.records.Change` and returns one
:class:`Outcome` per change, in order: ``written``, ``dead_lettered`` (terminal: the change went
whole to the dead letters, so it never blocks its shard) or ``retryable`` (nothing is lost; the
caller tries the change again). The Lambda handler reports the first retryable change of an
ordered stream with :attr:`SinkResult.first_retryable`.

On the way it

1. adds columns for promoted attributes (``[columns] promote``) that the batch shows for the
   first time, before writing the rows that need them (the type is configured, or inferred from
   the batch); a column BigQuery refuses to add is logged and left out: its values stay in
   ``item``;
2. converts each change with :class:`~ddb2bq.rows.RowBuilder`; a change that cannot be converted
   is dead-lettered alone, the others go on;
3. writes the changelog rows through the :class:`~ddb2bq.sinks.base.Writer` (and, in ``cdc``
   mode, the mirror rows through a second writer);
4. counts type conflicts per column, logging each column's first one.

Writers are bound to a column list, so the sink takes factories (``layout -> Writer``) and builds
new writers when the layout grows. Adding columns needs the full BigQuery client; the sink takes
it, or a function making it at the first evolution (the Lambda's light ``insertAll`` path: its
first write does not import the client library).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError, ConversionError, RetryableError, TerminalError
from ddb2bq.records import Change, now_micros
from ddb2bq.rows import RowBuilder, Rows
from ddb2bq.schema import TableLayout, infer_types
from ddb2bq.sinks.base import DeadLetter, DeadLetterSink, Writer
from ddb2bq.sinks.tables import evolve

if TYPE_CHECKING:
    from google.cloud import bigquery

logger = logging.getLogger(__name__)

Status = Literal["written", "dead_lettered", "retryable"]
WriterFactory = Callable[[TableLayout], Writer]
ClientFactory = Callable[[], "bigquery.Client"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one change; ``reason`` says why it was not written."""

    status: Status
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SinkResult:
    """One :class:`Outcome` per change of the batch, in the batch's order."""

    outcomes: tuple[Outcome, ...]

    @property
    def first_retryable(self) -> int | None:
        """The index of the first change to try again, or None when every change is settled."""
        return next((i for i, o in enumerate(self.outcomes) if o.status == "retryable"), None)

    def count(self, status: Status) -> int:
        """How many changes ended with ``status``."""
        return sum(1 for o in self.outcomes if o.status == status)


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


class BigQuerySink:
    """Writes batches of changes to the BigQuery changelog (and the cdc mirror).

    ``client`` adds columns when promoted attributes appear: the full BigQuery client, or a
    function returning one, called at the first schema evolution.

    >>> sink = BigQuerySink(config, layout, client,
    ...     lambda layout: InsertAllWriter(client, refs.changes.api, layout.changelog_columns()),
    ...     LocalDeadLetters("dead-letters"))  # doctest: +SKIP
    >>> sink.write(changes).first_retryable is None  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        config: Config,
        layout: TableLayout,
        client: bigquery.Client | ClientFactory,
        writer_for: WriterFactory,
        dead_letters: DeadLetterSink,
        *,
        mirror_writer_for: WriterFactory | None = None,
        source: str = "stream",
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self._config = config
        self._client = client
        self._writer_for = writer_for
        self._mirror_writer_for = mirror_writer_for
        self._dead_letters = dead_letters
        self._source = source
        self._clock = clock
        self._unpromotable: set[str] = set()
        self.conflicts = ConflictCounter()
        self._use(layout)

    @property
    def layout(self) -> TableLayout:
        """The current layout (it grows as promoted attributes appear)."""
        return self._layout

    def write(self, changes: Sequence[Change]) -> SinkResult:
        """Write ``changes``; one outcome per change. Raises only when the dead letters cannot
        be reached for a reason other than a RetryableError (those changes become retryable)."""
        try:
            self._evolve_for(changes)
        except RetryableError as exc:
            return SinkResult(tuple(Outcome("retryable", str(exc)) for _ in changes))
        outcomes: list[Outcome | None] = [None] * len(changes)
        letters: dict[int, str] = {}
        built: list[tuple[int, Rows]] = []
        for index, change in enumerate(changes):
            try:
                built.append((index, self._builder.build(change)))
            except ConversionError as exc:
                letters[index] = str(exc)
        self._write(built, self._writer, outcomes, letters)
        if self._mirror_writer is not None:
            written = [(i, r) for i, r in built if outcomes[i] is None and i not in letters]
            self._write(written, self._mirror_writer, outcomes, letters)
        for index, rows in built:
            if outcomes[index] is None and index not in letters:
                self.conflicts.add(rows.conflicts)
        self._send(changes, letters, outcomes)
        return SinkResult(tuple(o or Outcome("written") for o in outcomes))

    def _use(self, layout: TableLayout) -> None:
        self._layout = layout
        self._builder = RowBuilder(layout, clock=self._clock)
        self._writer = self._writer_for(layout)
        factory = self._mirror_writer_for
        self._mirror_writer = factory(layout) if factory is not None else None

    def _evolve_for(self, changes: Sequence[Change]) -> None:
        """Add columns for promoted attributes this batch shows for the first time."""
        new = self._new_promoted(changes)
        if not new:
            return
        try:
            layout = evolve(self._schema_client(), self._config, self._layout, new)
        except (TerminalError, ConfigError) as exc:  # e.g. BigQuery's column limit
            logger.error("Not promoting %s: %s Their values stay in item.", sorted(new), exc)
            self._unpromotable.update(new)
            return
        self._use(layout)

    def _schema_client(self) -> bigquery.Client:
        """The full client, made now if the sink was given a function making it."""
        if callable(self._client):
            self._client = self._client()
        return self._client

    def _new_promoted(self, changes: Sequence[Change]) -> dict[str, str]:
        known = {c.attribute for c in self._layout.promoted} | set(self._layout.key_names)
        missing = [a for a in self._config.columns.promote if a not in known | self._unpromotable]
        if not missing:
            return {}
        configured = {a: t.upper() for a, t in self._config.columns.types.items() if a in missing}
        images = [c.new_image for c in changes if c.new_image is not None]
        seen = {a for a in missing if any(image.get(a) is not None for image in images)}
        untyped = [a for a in seen if a not in configured]
        inferred = infer_types(images, untyped)
        return {**inferred, **{a: t for a, t in configured.items() if a in seen}}

    def _write(
        self,
        built: list[tuple[int, Rows]],
        writer: Writer,
        outcomes: list[Outcome | None],
        letters: dict[int, str],
    ) -> None:
        if not built:
            return
        result = writer.write([rows for _, rows in built])
        for failure in result.failures:
            index = built[failure.index][0]
            if failure.retryable:
                outcomes[index] = Outcome("retryable", failure.reason)
            else:
                letters[index] = failure.reason

    def _send(
        self, changes: Sequence[Change], letters: dict[int, str], outcomes: list[Outcome | None]
    ) -> None:
        if not letters:
            return
        now = self._clock()
        batch = [self._letter(changes[i], reason, now) for i, reason in sorted(letters.items())]
        try:
            self._dead_letters.send(batch)
        except RetryableError as exc:
            for index, reason in letters.items():
                outcomes[index] = Outcome("retryable", f"{reason} (dead letters: {exc})")
            return
        for index, reason in letters.items():
            outcomes[index] = Outcome("dead_lettered", reason)

    def _letter(self, change: Change, reason: str, now: int) -> DeadLetter:
        record = change.record
        if record is None:  # a change built in code: keep all of it
            record = {k: v for k, v in dataclasses.asdict(change).items() if k != "record"}
        return DeadLetter(
            table=change.table or self._config.source.table,
            error=reason,
            failed_at_us=now,
            source=self._source,
            record=record,
            event_id=change.event_id,
            keys=change.keys,
            seq=change.seq,
        )
