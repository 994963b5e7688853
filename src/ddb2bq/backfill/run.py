"""The backfill: every item of the table into the changelog as a SNAPSHOT change, resumably.

Two sources feed the same machinery. A **parallel Scan** (:func:`~ddb2bq.dynamodb.scan.read_segments`):
a thread per segment reads pages, paced to the read-capacity budget. An **export**
(:mod:`~ddb2bq.backfill.export`): its data files are read one at a time. Either way pages go to
worker processes that build the rows (:mod:`~ddb2bq.backfill.converting`), the rows are spooled
to files and loaded with NDJSON load jobs (:mod:`~ddb2bq.backfill.loading`), and only then is
each segment's (or file's) progress saved in the state store: a restart continues every segment
from the last page whose rows are safe in BigQuery and never re-reads a finished one. What is
read twice after a crash writes the same ``event_id`` and ``seq`` again, which the mirror absorbs.

What cannot be converted, and rows BigQuery refuses, go through the one pipeline to the dead
letters, whole. Memory stays flat: a bounded number of pages is in flight, the rest is on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ddb2bq.backfill.converting import (
    Converted,
    Snapshot,
    change_of,
    convert_items,
    worker_pool,
)
from ddb2bq.backfill.loading import DEFAULT_FILE_BYTES, Loader, Spool, SpoolFile
from ddb2bq.dynamodb.scan import (
    Page,
    ReadBudget,
    SegmentStart,
    key_of_text,
    key_text,
    read_segments,
)
from ddb2bq.exceptions import ConfigError, RecordError
from ddb2bq.heap import frozen_heap
from ddb2bq.images import new_image
from ddb2bq.pipeline import Pipeline, Unparsed
from ddb2bq.records import Change, now_micros
from ddb2bq.runner.signals import StopFlag
from ddb2bq.state import SegmentProgress, StateStore

logger = logging.getLogger(__name__)

_MORE = {"more": {"S": "lines"}}
"""The ``last_key`` of an export page that is not its file's last: the file is not done."""


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    """``ddb2bq backfill``'s options."""

    segments: int | None = None
    """None: the saved backfill's count, else one segment per 2 GB of table (AWS's advice)."""
    max_rcu: float | None = None
    consistent: bool = False
    workers: int | None = None
    file_bytes: int = DEFAULT_FILE_BYTES
    page_limit: int = 1000


@dataclass(frozen=True, slots=True)
class Progress:
    """What a progress report shows."""

    items: int
    rows_loaded: int
    dead_letters: int
    capacity: float
    elapsed_s: float
    expected_items: int | None
    done: bool = False


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """How a backfill ended."""

    items: int
    rows_loaded: int
    dead_letters: int
    load_jobs: int
    capacity: float
    elapsed_s: float
    complete: bool


@dataclass
class _Segment:
    """One segment's (or export file's) pages in this run: what they were, what is loaded."""

    index: int
    total: int
    start_key: str | None
    items: int = 0
    keys: list[str | None] = field(default_factory=list)
    """The last key of each page read in this run (None: the page ended the segment)."""
    loaded: set[int] = field(default_factory=set)
    saved: int = -1


class Backfill:
    """One backfill of ``table`` in ``generation`` into the changelog ``changes_table``.

    >>> Backfill(...).scan()  # doctest: +SKIP
    BackfillReport(items=20000, rows_loaded=20000, dead_letters=0, ...)
    """

    def __init__(
        self,
        *,
        table: str,
        dynamodb: Any,
        pipeline: Pipeline,
        loader_client: Any,
        changes_table: str,
        store: StateStore,
        generation: int,
        spool_dir: Path,
        options: BackfillOptions | None = None,
        progress: Callable[[Progress], None] | None = None,
        stop: StopFlag | None = None,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self.table = table
        self._dynamodb = dynamodb
        self._pipeline = pipeline
        self._store = store
        self._generation = generation
        self.options = options or BackfillOptions()
        self._progress = progress
        self.stop = stop or StopFlag()
        self._clock = clock
        self._spool = Spool(spool_dir, self.options.file_bytes)
        self._loader = Loader(loader_client, changes_table, self._write_refused)
        self._segments: dict[int, _Segment] = {}
        self._budget = ReadBudget(self.options.max_rcu)
        self._started = time.monotonic()
        self._items = self._rows = self._letters = 0
        self._expected: int | None = None
        self.taken_at_us = clock()
        self._export = False

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline the backfill writes what load jobs do not through."""
        return self._pipeline

    @property
    def generation(self) -> int:
        """The generation the snapshot rows are written in."""
        return self._generation

    @property
    def key_names(self) -> tuple[str, ...]:
        """The table's key attributes, hash key first."""
        return self._pipeline.layout.key_names

    # --- the two sources ---------------------------------------------------------------------

    def scan(self) -> BackfillReport:
        """Backfill by parallel Scan, resuming the segments saved in the state store."""
        description = _describe(self._dynamodb, self.table)
        self._expected = description.get("ItemCount") or None
        saved = self._store.backfill_progress(self.table, self._generation)
        total = self.options.segments or _saved_total(saved) or _segments_for(description)
        _check_total(self.table, self._generation, saved, total)
        for index in range(total):
            progress = saved.get(index)
            if progress is None or not progress.done:
                done_items = progress.items if progress else 0
                self._segments[index] = _Segment(
                    index, total, progress.last_key if progress else None, done_items
                )
                self._items += done_items
        pages = self._scan_pages()
        return self._run(pages, export=False)

    def export(
        self, files: Sequence[str], read: Callable[[str], Iterator[bytes]]
    ) -> BackfillReport:
        """Backfill from an export's data ``files`` (``read(key)`` yields each file's lines);
        a file is the unit of progress."""
        saved = self._store.backfill_progress(self.table, self._generation)
        _check_total(self.table, self._generation, saved, len(files))
        for index in range(len(files)):
            if not (saved.get(index) and saved[index].done):
                self._segments[index] = _Segment(index, len(files), None)
        pages = self._export_pages(files, read)
        return self._run(pages, export=True)

    # --- the machinery -----------------------------------------------------------------------

    def _run(self, pages: Iterator[Page], *, export: bool) -> BackfillReport:
        with frozen_heap():  # each page is thousands of fresh objects (ddb2bq.heap)
            return self._run_pages(pages, export=export)

    def _run_pages(self, pages: Iterator[Page], *, export: bool) -> BackfillReport:
        for leftover in self._spool.leftovers():
            logger.info(
                "Removing %s: rows of pages never saved as loaded; reading them again.",
                leftover.name,
            )
            leftover.unlink()
        self._export = export
        first = list(_first_pages(pages, 1 if export else len(self._segments)))
        self._evolve(first, export)
        if self._pipeline.writes_mirror:
            return self._through_pipeline(_chain(first, pages))
        with worker_pool(self._snapshot(), self.options.workers) as pool:
            in_flight: list[tuple[Page, int, Future[Converted]]] = []
            for page in _chain(first, pages):
                number = self._read(page)
                in_flight.append(
                    (page, number, pool.submit(convert_items, page.items, export=export))
                )
                in_flight = self._collect(in_flight, limit=2 * (self.options.workers or 2))
                if self.stop.requested:
                    break
            self._collect(in_flight, limit=0)
        self._flush()
        return self._ended()

    def _through_pipeline(self, pages: Iterator[Page]) -> BackfillReport:
        """The ``cdc`` mirror: each page through the pipeline, which writes the changelog rows
        and the mirror's UPSERTs (Storage Write) together; progress saved after each page."""
        for page in pages:
            number = self._read(page)
            self.write(self._changes_of(page.items, self._export))
            self._rows += len(page.items)
            self._segments[page.segment].items += len(page.items)
            self._items += len(page.items)
            self._save(SpoolFile(Path(), rows=len(page.items), marks=[(page.segment, number)]))
            self._report()
            if self.stop.requested:
                break
        return self._ended()

    def _ended(self) -> BackfillReport:
        complete = not self.stop.requested and all(self._done(s) for s in self._segments.values())
        self._report(done=True)
        return BackfillReport(
            self._items,
            self._rows,
            self._letters,
            self._loader.jobs,
            self._budget.spent,
            time.monotonic() - self._started,
            complete,
        )

    def _read(self, page: Page) -> int:
        segment = self._segments[page.segment]
        segment.keys.append(key_text(page.last_key) if page.last_key is not None else None)
        return len(segment.keys) - 1

    def _collect(
        self, in_flight: list[tuple[Page, int, Future[Converted]]], *, limit: int
    ) -> list[tuple[Page, int, Future[Converted]]]:
        """Spool the converted pages, oldest first, until at most ``limit`` are in flight."""
        while len(in_flight) > limit or (in_flight and in_flight[0][2].done()):
            page, number, future = in_flight.pop(0)
            converted = future.result()
            if converted.failures:
                self._dead_letter(converted.failures, export=self._export)
            self._spool.add(converted.ndjson, converted.rows, [(page.segment, number)])
            self._segments[page.segment].items += len(page.items)
            self._items += len(page.items)
            if self._spool.full:
                self._flush()
            self._report()
        return in_flight

    def _flush(self) -> None:
        """Load the spooled rows, then save the progress of the pages they came from."""
        if not self._spool.pending:
            return
        file = self._spool.take()
        self._loader.load(file)
        self._rows += file.rows
        self._save(file)

    def _save(self, file: SpoolFile) -> None:
        touched = set()
        for segment_index, number in file.marks:
            self._segments[segment_index].loaded.add(number)
            touched.add(segment_index)
        for index in sorted(touched):
            segment = self._segments[index]
            prefix = segment.saved
            while prefix + 1 in segment.loaded:
                prefix += 1
            if prefix == segment.saved:
                continue
            segment.saved = prefix
            last = segment.keys[prefix]
            self._store.save_backfill_progress(
                self.table,
                self._generation,
                SegmentProgress(
                    index, segment.total, last, last is None, segment.items, time.time()
                ),
            )

    def _done(self, segment: _Segment) -> bool:
        return segment.saved >= 0 and segment.keys[segment.saved] is None

    def _evolve(self, pages: Sequence[Page], export: bool) -> None:
        """Grow the layout for promoted attributes the first pages show, before the workers
        build rows with it (attributes first seen later stay in ``item`` for the snapshot)."""
        changes = []
        for page in pages:
            for index, unit in enumerate(page.items):
                try:
                    changes.append(self._change(unit, index, export))
                except RecordError:
                    continue  # its worker dead-letters it
        if changes:
            self._pipeline.evolve_for(changes)

    def _change(self, unit: Any, index: int, export: bool) -> Change:
        return change_of(unit, self._snapshot(), index, export)

    def _snapshot(self) -> Snapshot:
        layout = self._pipeline.layout
        return Snapshot(layout, layout.key_names, self._generation, self.taken_at_us, self.table)

    def _dead_letter(self, failures: Iterable[tuple[Any, str]], *, export: bool) -> None:
        """Units a worker could not convert: through the pipeline, which dead-letters them."""
        units = list(failures)
        self.write(self._changes_of([u for u, _ in units], export, [e for _, e in units]))

    def _changes_of(
        self, units: Sequence[Any], export: bool, errors: Sequence[str] | None = None
    ) -> list[Change | Unparsed]:
        """The snapshot change of each Scan item (or export line); Unparsed when it has none."""
        changes: list[Change | Unparsed] = []
        for index, unit in enumerate(units):
            try:
                changes.append(self._change(unit, index, export))
            except (RecordError, ValueError) as exc:
                why = f"{errors[index]} ({exc})" if errors else str(exc)
                changes.append(Unparsed(unit, why))
        return changes

    def _write_refused(self, path: Path) -> None:
        """A load job BigQuery refused: its rows through the pipeline, 500 at a time."""
        changes: list[Change | Unparsed] = []
        with path.open("rb") as handle:
            for index, line in enumerate(handle):
                changes.append(self._change_of_row(orjson.loads(line), index))
                if len(changes) == 500:
                    self.write(changes)
                    changes = []
        if changes:
            self.write(changes)

    def _change_of_row(self, row: dict[str, Any], index: int) -> Change | Unparsed:
        """The snapshot change a changelog row was built from (its new image is the item; a
        spool written before the lean format holds it as ``new_image``)."""
        try:
            image = new_image(row)
            if image is None:
                raise KeyError("the row has no item")
            return self._change(image, index, export=False)
        except (RecordError, KeyError, ValueError) as exc:
            return Unparsed(row, f"a spooled row cannot be read back: {exc}")

    def write(self, changes: Sequence[Change | Unparsed]) -> int:
        """Write ``changes`` through the pipeline (what BigQuery refuses to the dead letters);
        how many were written. RetryableError when some must wait: run the backfill again."""
        result = self._pipeline.process(changes, ordered=False)
        self._letters += result.count("dead_lettered")
        if result.first_retryable is not None:
            raise _retry_later(result.outcomes[result.first_retryable].reason)
        return result.count("written")

    # --- reading -----------------------------------------------------------------------------

    def _scan_pages(self) -> Iterator[Page]:
        """Pages of every unfinished segment, each from its saved key."""
        starts = [
            SegmentStart(s.index, s.total, key_of_text(s.start_key))
            for s in self._segments.values()
        ]
        yield from read_segments(
            self._dynamodb,
            self.table,
            starts,
            consistent=self.options.consistent,
            page_limit=self.options.page_limit,
            budget=self._budget,
            stop=lambda: self.stop.requested,
        )

    def _export_pages(
        self, files: Sequence[str], read: Callable[[str], Iterator[bytes]], chunk: int = 2000
    ) -> Iterator[Page]:
        for index, segment in sorted(self._segments.items()):
            lines: list[Any] = []
            for line in read(files[index]):
                if line.strip():
                    lines.append(line)
                if len(lines) == chunk:
                    yield Page(segment.index, lines, _MORE, 0.0)
                    lines = []
                if self.stop.requested:
                    return
            yield Page(segment.index, lines, None, 0.0)

    def _report(self, *, done: bool = False) -> None:
        if self._progress is None:
            return
        self._progress(
            Progress(
                self._items,
                self._rows,
                self._letters,
                self._budget.spent,
                time.monotonic() - self._started,
                self._expected,
                done,
            )
        )


def _first_pages(pages: Iterator[Page], segments: int) -> Iterator[Page]:
    """The first page of each of up to ``segments`` segments (they arrive in any order)."""
    seen: set[int] = set()
    for page in pages:
        yield page
        seen.add(page.segment)
        if len(seen) >= segments:
            return


def _chain(first: Sequence[Page], rest: Iterator[Page]) -> Iterator[Page]:
    yield from first
    yield from rest


def _describe(dynamodb: Any, table: str) -> dict[str, Any]:
    """DescribeTable (its ItemCount and TableSizeBytes are updated about every 6 hours)."""
    description: dict[str, Any] = dynamodb.describe_table(TableName=table)["Table"]
    return description


def _check_total(
    table: str, generation: int, saved: dict[int, SegmentProgress], total: int
) -> None:
    """Refuse to go on with another segment count than the backfill was started with."""
    totals = {p.total for p in saved.values()}
    if totals and totals != {total}:
        raise ConfigError(
            f"The backfill of table {table!r} (generation {generation}) was started with "
            f"{totals.pop()} segments; continue it with that many (--segments), since a "
            "segment's key range depends on it."
        )


def _saved_total(saved: dict[int, SegmentProgress]) -> int | None:
    return next((p.total for p in saved.values()), None)


def _segments_for(description: dict[str, Any]) -> int:
    """One segment per 2 GB of table, 1 to 1,000 (research file, section D).

    >>> _segments_for({"TableSizeBytes": 30 * 2**30}), _segments_for({})
    (15, 1)
    """
    size = int(description.get("TableSizeBytes") or 0)
    return max(1, min(1000, -(-size // (2 * 2**30))))


def _retry_later(reason: str) -> Exception:
    from ddb2bq.exceptions import RetryableError  # noqa: PLC0415

    return RetryableError(
        f"BigQuery did not take rows of the backfill ({reason}); run it again: it resumes."
    )
