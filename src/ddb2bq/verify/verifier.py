"""``verify``: the DynamoDB table against its BigQuery mirror, item by item, typed.

1. Read both sides at once: the table by parallel Scan (:mod:`ddb2bq.verify.table`), the mirror's
   exact items by a paged query (:mod:`ddb2bq.verify.mirror`). Each item becomes a key hash and a
   canonical typed hash (:mod:`ddb2bq.verify.canonical`), written to bucket files on disk by key
   hash (:mod:`ddb2bq.verify.buckets`); with ``sample`` below 1, only the keys whose salted hash
   falls below it are kept, on both sides alike.
2. Compare bucket by bucket: equal, missing (in the table only), extra (in the mirror only),
   different (the hashes differ, the mirror holds the key twice, or its item cannot be read).
   Differences go to a file, not to memory.
3. When there are differences, wait for the replication lag (``recheck_after``) and read each
   differing key again on both sides (:mod:`ddb2bq.verify.recheck`); only what persists is
   reported.

Memory stays flat: two Scan pages per segment in flight, a page of mirror rows, the buckets'
write buffers (16 MiB at most) and two buckets being compared (about 50,000 entries each).

>>> verify(config, dynamodb=dynamodb, client=client).equal_everywhere  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ddb2bq.bigquery.mirror import DEFAULT_MAX_STALENESS_MINUTES
from ddb2bq.bigquery.sql import TableRef, api_error, api_errors, api_retry
from ddb2bq.bigquery.tables import TableRefs, load_layout, mirrors_of
from ddb2bq.config import Config
from ddb2bq.dynamodb.connect import aws_errors
from ddb2bq.dynamodb.tables import describe_key_schema
from ddb2bq.exceptions import ConfigError
from ddb2bq.records import Item
from ddb2bq.schema import TableLayout
from ddb2bq.verify.buckets import (
    UNREADABLE,
    Buckets,
    Comparison,
    Difference,
    Entry,
    bucket_count,
    compare_streaming,
)
from ddb2bq.verify.canonical import item_digest, key_digest, key_of, key_text
from ddb2bq.verify.mirror import PAGE_SIZE, mirror_items, mirror_items_for_keys
from ddb2bq.verify.recheck import recheck
from ddb2bq.verify.report import SHOWN, VerifyReport
from ddb2bq.verify.table import estimated_item_count, get_items, scan_items

if TYPE_CHECKING:
    from google.cloud import bigquery

logger = logging.getLogger(__name__)

REPLICATION_LAG = 30.0
"""Seconds a change takes from DynamoDB to the changelog, with margin: the stream's delay
(about a second), Lambda's batching window or the runner's polling, and the write."""
PROGRESS_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """How to verify: ``segments`` parallel Scan segments, ``consistent_read`` Scan,
    ``sample`` the fraction of keys to compare (salted by ``seed``, random when None),
    ``recheck_after`` seconds to wait before re-checking differences (None: the
    :func:`recheck_wait` of the configuration), ``shown`` keys listed per kind, ``workdir``
    the folder for the bucket files (None: a temporary folder)."""

    segments: int = 4
    consistent_read: bool = False
    sample: float = 1.0
    seed: int | None = None
    recheck_after: float | None = None
    shown: int = SHOWN
    workdir: str | None = None
    page_size: int = PAGE_SIZE


def recheck_wait(config: Config) -> tuple[float, str]:
    """The default wait before a re-check, and why: the replication lag, plus what the mirror
    mode adds (a ``merge`` mirror is as fresh as its last MERGE; a ``cdc`` mirror's queries may
    be ``max_staleness`` behind).

    >>> recheck_wait(Config())
    (30.0, 'the replication lag allowed for')
    """
    mode = config.target.mirror
    if mode == "merge":
        interval = config.runner.merge_interval
        return REPLICATION_LAG + interval, (
            f"the replication lag allowed for, plus [runner] merge_interval ({interval:g} s)"
        )
    if mode == "cdc":
        staleness = 60.0 * DEFAULT_MAX_STALENESS_MINUTES
        return REPLICATION_LAG + staleness, (
            f"the replication lag allowed for, plus the cdc mirror's max_staleness "
            f"({DEFAULT_MAX_STALENESS_MINUTES} min)"
        )
    return REPLICATION_LAG, "the replication lag allowed for"


def verify(
    config: Config,
    *,
    dynamodb: Any,
    client: bigquery.Client,
    options: VerifyOptions = VerifyOptions(),
    on_wait: Callable[[int, float, str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> VerifyReport:
    """Compare ``[source] table`` with its mirror; the report holds the persisting differences.

    ``on_wait(keys, seconds, why)`` is told before the re-check's wait. Raises ConfigError when
    the table, the changelog or the mirror does not exist.
    """
    if not 0 < options.sample <= 1:
        raise ConfigError(f"--sample is {options.sample}; give a fraction above 0, at most 1.")
    side = _Sides.open(config, dynamodb, client, options)
    seed = options.seed if options.seed is not None else secrets.randbelow(1 << 31)
    report = VerifyReport(
        config.source.table, str(side.refs.mirror), sample=options.sample, seed=seed,
        shown=options.shown,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ddb2bq-verify-", dir=options.workdir) as folder:
        counts, log = side.compare(Path(folder), _Sample(options.sample, seed), report)
        report.equal = counts.equal
        if log.count:
            wait, why = (
                recheck_wait(config)
                if options.recheck_after is None
                else (options.recheck_after, "--recheck-after")
            )
            if on_wait is not None:
                on_wait(log.count, wait, why)
            logger.info("Re-checking %d keys in %g s (%s).", log.count, wait, why)
            sleep(wait)
            report.waited, report.rechecked = wait, log.count
            for _, now in side.recheck(log.read()):
                if now is None:
                    report.settled += 1
                else:
                    report.add(now)
            report.equal += report.settled
    return report


class _Sample:
    """Keys kept when sampling: those whose salted hash is below the fraction."""

    def __init__(self, fraction: float, seed: int) -> None:
        self.everything = fraction >= 1
        self._below = int(fraction * 2**64)
        self._salt = seed.to_bytes(8, "big")

    def keeps(self, key: bytes) -> bool:
        if self.everything:
            return True
        salted = hashlib.blake2b(key, digest_size=8, key=self._salt).digest()
        return int.from_bytes(salted, "big") < self._below


class _DifferenceLog:
    """Differences on disk, one JSON line each, for the re-check to stream."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def write_all(self, differences: Iterator[Difference]) -> None:
        with self.path.open("wb") as out:
            for d in differences:
                out.write(orjson.dumps([d.kind, d.key_json, d.reason]) + b"\n")
                self.count += 1

    def read(self) -> Iterator[Difference]:
        with self.path.open("rb") as lines:
            for line in lines:
                kind, key_json, reason = orjson.loads(line)
                yield Difference(kind, key_json, reason)


@dataclass
class _Sides:
    """The two sides of one verify run, and how to read each."""

    config: Config
    dynamodb: Any
    client: bigquery.Client
    options: VerifyOptions
    refs: TableRefs
    layout: TableLayout
    key_kinds: dict[str, str]
    mirrors: tuple[TableRef, ...] = ()
    """The tables holding the items: the table's own mirror, and one per entity."""

    @classmethod
    def open(
        cls, config: Config, dynamodb: Any, client: bigquery.Client, options: VerifyOptions
    ) -> _Sides:
        table = config.source.table
        if not table:
            raise ConfigError("Set [source] table: the DynamoDB table to verify.")
        with aws_errors(config, "describing the table"):
            key_schema = describe_key_schema(dynamodb, table)
        refs = TableRefs.from_config(config, client.project)
        layout = load_layout(client, refs, soft=config.target.deletes == "soft")
        _require_table(client, refs)
        names = [name for name, _ in key_schema]
        if list(layout.key_names) != names:
            raise ConfigError(
                f"The changelog {refs.changes} is keyed by {list(layout.key_names)}, but the "
                f"DynamoDB table {table!r} by {names}: check [source] table and [target]."
            )
        mirrors = tuple(m.ref for m in mirrors_of(config, refs, layout))
        return cls(config, dynamodb, client, options, refs, layout, dict(key_schema), mirrors)

    def compare(
        self, folder: Path, sample: _Sample, report: VerifyReport
    ) -> tuple[Comparison, _DifferenceLog]:
        """Read both sides into buckets, compare them; the differences go to a file."""
        with aws_errors(self.config, "describing the table"):
            estimate = estimated_item_count(self.dynamodb, self.config.source.table)
        count = bucket_count(int(estimate * self.options.sample))
        table, mirror = Buckets(folder, "table", count), Buckets(folder, "mirror", count)
        self._read_both(table, mirror, sample)
        report.table_items, report.mirror_rows = table.entries, mirror.entries
        counts, log = Comparison(), _DifferenceLog(folder / "differences")
        log.write_all(compare_streaming(table, mirror, counts))
        logger.info(
            "Compared %d items with %d mirror rows: %d equal, %d missing, %d extra, "
            "%d different.", table.entries, mirror.entries, counts.equal, counts.missing,
            counts.extra, counts.different,
        )  # fmt: skip
        return counts, log

    def recheck(self, differences: Iterator[Difference]) -> Iterator[tuple[Difference, Any]]:
        """:func:`~ddb2bq.verify.recheck.recheck` over this run's table and mirror."""
        return recheck(differences, self.layout.key_names, self._get_items, self._mirror_rows)

    def _read_both(self, table: Buckets, mirror: Buckets, sample: _Sample) -> None:
        """The table in this thread, the mirror in another; the first to fail stops both."""
        stop = threading.Event()
        progress = _Progress(table, mirror)
        with ThreadPoolExecutor(1, thread_name_prefix="ddb2bq-verify-mirror") as pool:
            reading = pool.submit(self._read_mirror, mirror, sample, stop, progress)
            try:
                self._read_table(table, sample, stop, progress)
            except BaseException:
                stop.set()
                raise
            reading.result()
        progress.log(final=True)

    def _read_table(
        self, buckets: Buckets, sample: _Sample, stop: threading.Event, progress: _Progress
    ) -> None:
        names = self.layout.key_names
        items = scan_items(
            self.dynamodb,
            self.config.source.table,
            segments=self.options.segments,
            consistent=self.options.consistent_read,
        )
        with aws_errors(self.config, "scanning the table"), contextlib.closing(items):
            for item in items:
                if stop.is_set():
                    return
                key = key_of(item, names)
                digest = key_digest(key)
                if sample.keeps(digest):
                    buckets.add(Entry(digest, item_digest(item), key_text(key)))
                progress.tick()

    def _read_mirror(
        self, buckets: Buckets, sample: _Sample, stop: threading.Event, progress: _Progress
    ) -> None:
        rows = mirror_items(
            self.client,
            self.refs,
            self.layout,
            self.key_kinds,
            page_size=self.options.page_size,
            mirrors=self.mirrors,
        )
        try:
            with contextlib.closing(rows):
                for row in rows:
                    if stop.is_set():
                        return
                    digest = key_digest(row.key)
                    if sample.keeps(digest):
                        held = UNREADABLE if row.item is None else item_digest(row.item)
                        buckets.add(Entry(digest, held, key_text(row.key)))
                    progress.tick()
        except BaseException:
            stop.set()  # the table's Scan stops too
            raise

    def _get_items(self, keys: Sequence[Item]) -> list[Item]:
        with aws_errors(self.config, "re-reading items"):
            return get_items(self.dynamodb, self.config.source.table, keys)

    def _mirror_rows(self, keys: Sequence[Item]) -> list[Any]:
        return mirror_items_for_keys(
            self.client, self.refs, self.layout, self.key_kinds, keys, mirrors=self.mirrors
        )


class _Progress:
    """A log line every few seconds: items scanned and mirror rows read so far."""

    def __init__(self, table: Buckets, mirror: Buckets) -> None:
        self._sides = (table, mirror)
        self._next = time.monotonic() + PROGRESS_EVERY
        self._lock = threading.Lock()
        self._read = 0

    def tick(self) -> None:
        self._read += 1
        if self._read % 1000 == 0 and time.monotonic() >= self._next:
            with self._lock:
                if time.monotonic() >= self._next:
                    self._next = time.monotonic() + PROGRESS_EVERY
                    self.log()

    def log(self, *, final: bool = False) -> None:
        table, mirror = self._sides
        logger.info(
            "Verify: %d items read from the table, %d rows from the mirror%s.",
            table.entries, mirror.entries, " (done)" if final else "",
        )  # fmt: skip


def _require_table(client: bigquery.Client, refs: TableRefs) -> None:
    """ConfigError when the mirror does not exist."""
    from google.api_core.exceptions import NotFound  # noqa: PLC0415 (heavy: lazy)

    try:
        client.get_table(refs.mirror.api, retry=api_retry())
    except NotFound as exc:
        raise ConfigError(f"The mirror {refs.mirror} does not exist; run `ddb2bq init`.") from exc
    except api_errors() as exc:
        raise api_error(exc, str(refs.mirror)) from exc
