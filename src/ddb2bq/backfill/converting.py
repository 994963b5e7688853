"""Items to changelog rows, in worker processes: conversion is CPU-bound Python, so the backfill
spreads it over processes (all cores by default), not threads.

Each worker is set up once with the table's layout and the snapshot's generation and time; a
task is a chunk of Scan items (or export lines) and comes back as newline-delimited JSON rows
for a load job, plus the items that could not be converted (for the dead letters, whole).
Snapshot rows are ``SNAPSHOT`` changes with ``seq`` = ``generation/0/0/0``: any stream change of
the same generation wins over them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import orjson

from ddb2bq.exceptions import RecordError
from ddb2bq.records import Change, from_export_line, from_scan_item
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import TableLayout


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What every worker needs: the layout rows are built for, and the snapshot's identity."""

    layout: TableLayout
    key_names: tuple[str, ...]
    generation: int
    taken_at_us: int
    table: str


@dataclass(frozen=True, slots=True)
class Converted:
    """One chunk's rows as NDJSON, how many, and the inputs that failed with their reason."""

    ndjson: bytes
    rows: int
    failures: tuple[tuple[Any, str], ...]


_WORKER: tuple[Snapshot, RowBuilder] | None = None


def _start_worker(snapshot: Snapshot) -> None:
    global _WORKER  # noqa: PLW0603 (one per worker process, set by the pool's initializer)
    # Ctrl-C reaches the whole process group: the parent stops the backfill (saving its
    # progress); a worker printing its own KeyboardInterrupt traceback would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = (snapshot, RowBuilder(snapshot.layout))


def convert_items(items: Sequence[Any], *, export: bool = False) -> Converted:
    """Rows for ``items`` (Scan items, or export lines when ``export``), in a worker."""
    assert _WORKER is not None, "the pool's initializer sets the worker up"
    snapshot, builder = _WORKER
    lines: list[bytes] = []
    failures: list[tuple[Any, str]] = []
    for index, unit in enumerate(items):
        try:
            change = change_of(unit, snapshot, index, export)
            lines.append(orjson.dumps(builder.build(change).changelog))
        except RecordError as exc:
            failures.append((unit, str(exc)))
    body = b"\n".join(lines) + b"\n" if lines else b""
    return Converted(body, len(lines), tuple(failures))


def change_of(unit: Any, snapshot: Snapshot, index: int, export: bool) -> Change:
    """The snapshot change of one Scan item or export line; RecordError naming it when bad."""
    if export:
        return from_export_line(
            unit,
            key_names=snapshot.key_names,
            exported_at_us=snapshot.taken_at_us,
            generation=snapshot.generation,
            table=snapshot.table,
            index=index,
        )
    return from_scan_item(
        unit,
        key_names=snapshot.key_names,
        scanned_at_us=snapshot.taken_at_us,
        generation=snapshot.generation,
        table=snapshot.table,
        index=index,
    )


def worker_pool(snapshot: Snapshot, workers: int | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (default: every core) set up for ``snapshot``.

    Processes start by ``forkserver`` where it exists (no inherited threads or sockets), else
    ``spawn``.
    """
    method = "forkserver" if "forkserver" in _methods() else "spawn"
    return ProcessPoolExecutor(
        max_workers=workers or os.cpu_count() or 1,
        mp_context=get_context(method),
        initializer=_start_worker,
        initargs=(snapshot,),
    )


def _methods() -> list[str]:
    from multiprocessing import get_all_start_methods  # noqa: PLC0415

    return get_all_start_methods()
