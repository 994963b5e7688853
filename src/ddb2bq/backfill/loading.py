"""Rows to BigQuery with load jobs: spooled to files on disk, each file one NDJSON load job.

Load jobs are free (streaming is not), and NEWLINE_DELIMITED_JSON is the format that loads
into JSON columns. A file is closed at ``file_bytes`` (256 MB by default), so that even a large
table needs few jobs: the per-table daily limit (about 1,500 loads, failed ones included) is
far away (100 GB of rows is about 400 jobs). A file is deleted only after its job succeeded.

A job BigQuery refuses for its data (a row it will not take) is not retried as it is: the file's
rows go through the pipeline instead (:attr:`Loader.fallback`), whose writer isolates each
refused row and sends it whole to the dead letters; a job that may pass later (quota, 5xx) is
retried with back-off.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddb2bq.bigquery.errors import classify
from ddb2bq.exceptions import RetryableError

logger = logging.getLogger(__name__)

DEFAULT_FILE_BYTES = 256 * 1024 * 1024
Mark = tuple[int, int]
"""``(segment, page)``: which Scan page (or export file) a spooled row came from."""


@dataclass
class SpoolFile:
    """One closed spool file: its rows and the pages they came from."""

    path: Path
    rows: int = 0
    size: int = 0
    marks: list[Mark] = field(default_factory=list)


class Spool:
    """Appends NDJSON rows to a file in ``folder`` until it holds ``file_bytes``."""

    def __init__(self, folder: Path, file_bytes: int = DEFAULT_FILE_BYTES) -> None:
        self._folder = folder
        self._limit = file_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._current = self._new()

    def add(self, ndjson: bytes, rows: int, marks: list[Mark]) -> None:
        """Append ``rows`` rows (``ndjson``) that came from ``marks``; fsync'd when the file is
        taken."""
        if ndjson:
            with self._current.path.open("ab") as handle:
                handle.write(ndjson)
        self._current.rows += rows
        self._current.size += len(ndjson)
        self._current.marks.extend(marks)

    @property
    def full(self) -> bool:
        """The current file is big enough for a load job."""
        return self._current.size >= self._limit

    @property
    def pending(self) -> bool:
        """Rows or marks are waiting in the current file."""
        return bool(self._current.rows or self._current.marks)

    def take(self) -> SpoolFile:
        """Close the current file (durably on disk) and start a new one."""
        taken, self._current = self._current, self._new()
        if taken.path.exists():
            with taken.path.open("rb") as handle:
                os.fsync(handle.fileno())
        return taken

    def leftovers(self) -> Iterator[Path]:
        """Spool files of an earlier run that never loaded (their pages are read again)."""
        yield from sorted(p for p in self._folder.glob("*.ndjson") if p != self._current.path)

    def _new(self) -> SpoolFile:
        return SpoolFile(self._folder / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.ndjson")


class Loader:
    """Loads spool files into ``table`` (``project.dataset.table``) with the full BigQuery
    client; ``fallback(path)`` writes a file's rows another way when BigQuery refuses its data."""

    def __init__(
        self,
        client: Any,
        table: str,
        fallback: Callable[[Path], None],
        *,
        attempts: int = 6,
        timeout_s: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table
        self.fallback = fallback
        self._attempts = attempts
        self._timeout = timeout_s
        self._sleep = sleep
        self.jobs = 0

    def load(self, file: SpoolFile) -> None:
        """Load ``file``; delete it once its rows are safe in BigQuery."""
        if file.rows and file.path.exists():
            self._load_path(file.path)
        file.path.unlink(missing_ok=True)

    def _load_path(self, path: Path) -> None:
        from google.cloud import bigquery  # noqa: PLC0415 (heavy: only the backfill loads)

        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        )
        for attempt in range(1, self._attempts + 1):
            try:
                with path.open("rb") as handle:
                    self.jobs += 1
                    job = self._client.load_table_from_file(
                        handle, self._table, job_config=config, timeout=self._timeout
                    )
                job.result(timeout=self._timeout)
                return
            except Exception as exc:
                if not classify(exc):
                    logger.warning(
                        "BigQuery refused the load job of %s (%s); writing its rows one "
                        "request at a time, refused rows to the dead letters.",
                        path.name,
                        _first_line(exc),
                    )
                    self.fallback(path)
                    return
                if attempt == self._attempts:
                    raise RetryableError(
                        f"The load job into {self._table} kept failing ({_first_line(exc)}); "
                        "run the backfill again: it resumes where it stopped."
                    ) from exc
                self._sleep(min(60.0, 2.0**attempt))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
