"""``ddb2bq backfill``: every item the table holds into the changelog (and the mirror).

Exit codes: 0 the backfill is complete; 1 an operation failed (run it again: it resumes);
2 bad input or configuration (a missing bucket, an export of another table, point-in-time
recovery off, no changelog yet); 130 stopped by Ctrl-C/SIGTERM after saving its progress (run
it again to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from ddb2bq.cli.common import EXIT_INTERRUPTED, AddConfig
from ddb2bq.cli.options import number, whole
from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError, Ddb2bqError

if TYPE_CHECKING:
    from ddb2bq.backfill.run import Backfill, BackfillReport, Progress

EXIT_STOPPED = EXIT_INTERRUPTED


def register(commands: Any, add_config: AddConfig) -> None:
    """Add ``backfill`` to the ``ddb2bq`` parser's subcommands."""
    parser = commands.add_parser(
        "backfill",
        help="copy every item the table holds into BigQuery (parallel Scan or an S3 export)",
        description="Write every item of [source] table into the changelog as a SNAPSHOT "
        "change (seq generation/0/0/0: stream changes win) with NDJSON load jobs, then "
        "refresh the merge mirror. Resumable: a second run continues each Scan segment (or "
        "export file) from where its rows were last loaded.",
    )
    add_config(parser)
    add_backfill_options(parser)
    parser.set_defaults(run=run_backfill)


def add_backfill_options(parser: argparse.ArgumentParser) -> None:
    """The options of a backfill (``backfill`` and ``start`` share them)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--export", metavar="S3URL", help="export the table to s3://BUCKET/PREFIX "
                        "(ExportTableToPointInTime, needs PITR) and read that")  # fmt: skip
    source.add_argument("--from-export", metavar="S3URL",
                        help="read an existing export: s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID")  # fmt: skip
    parser.add_argument("--segments", type=whole(1, 1_000_000), default=None,
                        help="Scan segments (TotalSegments), fixed for the life of a backfill "
                        "(default: the running backfill's, else one per 2 GB of table)")  # fmt: skip
    parser.add_argument("--max-rcu", type=number(0, 1e9, above=True), default=None,
                        help="read capacity units per second at most (default: no limit)")  # fmt: skip
    parser.add_argument("--consistent", action="store_true",
                        help="strongly consistent Scan (twice the read capacity)")  # fmt: skip
    parser.add_argument("--workers", type=whole(1, 256), default=None,
                        help="processes converting items (default: every core)")  # fmt: skip
    parser.add_argument("--file-mb", type=number(0, 15_000, above=True), default=256.0,
                        help="rows per load job, in MB of NDJSON (default 256)")  # fmt: skip


def options_of(args: argparse.Namespace) -> Any:
    """The :class:`~ddb2bq.backfill.run.BackfillOptions` of parsed ``args``."""
    from ddb2bq.backfill.run import BackfillOptions  # noqa: PLC0415

    return BackfillOptions(
        segments=args.segments,
        max_rcu=args.max_rcu,
        consistent=args.consistent,
        workers=args.workers,
        file_bytes=int(args.file_mb * 1024 * 1024),
    )


def run_backfill(
    args: argparse.Namespace,
    config: Config,
    *,
    stderr: TextIO | None = None,
    build: Callable[..., Backfill] | None = None,
) -> int:
    """``ddb2bq backfill``: backfill, refresh the mirror, print what it did."""
    from ddb2bq.backfill.build import backfill_from_config, refresh_mirror  # noqa: PLC0415
    from ddb2bq.runner.signals import stop_on_signals  # noqa: PLC0415

    err = stderr or sys.stderr
    check_mirror(config)
    options = options_of(args)
    reporter = reporter_for(err)
    try:
        backfill = (build or backfill_from_config)(config, options, progress=reporter)
        with stop_on_signals(backfill.stop.request):
            report = run_source(backfill, args, config)
    finally:
        close_reporter(reporter)  # a progress bar left running would hide the error
    print(_summary(backfill.table, report), file=err)
    if not report.complete:
        print("ddb2bq: stopped; run the same command again to resume.", file=err)
        return EXIT_STOPPED
    done = refresh_mirror(config)
    if done:
        print(f"mirror refreshed: {done}", file=err)
    return 0


def check_mirror(config: Config) -> None:
    """Refuse what a backfill cannot fill: a cdc mirror written by insertAll."""
    if config.target.mirror == "cdc" and config.target.writer != "storage_write":
        raise ConfigError(
            'A cdc mirror is written by Storage Write: set [target] writer = "storage_write".'
        )


def run_source(backfill: Backfill, args: argparse.Namespace, config: Config) -> BackfillReport:
    """Run ``backfill`` from the source ``args`` name: a Scan, a new export, or an export."""
    from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

    from ddb2bq.dynamodb.connect import aws_errors  # noqa: PLC0415

    try:
        with aws_errors(config, "backfilling"):
            if args.export is None and args.from_export is None:
                return backfill.scan()
            return _from_export(backfill, args, config)
    except BrokenProcessPool as exc:
        if backfill.stop.requested:  # Ctrl-C in a terminal reaches the workers too
            print("ddb2bq: stopped; run the same command again to resume.", file=sys.stderr)
            raise KeyboardInterrupt from exc
        raise Ddb2bqError(
            f"A process converting the items of {backfill.table!r} ended abruptly (killed, or "
            "out of memory?): run the same command again to resume, with fewer --workers if "
            "memory is short."
        ) from exc


def _from_export(backfill: Backfill, args: argparse.Namespace, config: Config) -> BackfillReport:
    from ddb2bq.backfill import export  # noqa: PLC0415
    from ddb2bq.dynamodb.connect import dynamodb_client, s3_client  # noqa: PLC0415

    dynamodb, s3 = dynamodb_client(config), s3_client(config)
    if args.export is not None:
        bucket, prefix = export.parse_s3(args.export, "--export")
        _check_bucket(s3, bucket)
        location, taken_at = export.start_export(dynamodb, s3, backfill.table, bucket, prefix)
    else:
        bucket, folder = export.parse_s3(args.from_export, "--from-export")
        location = export.ExportLocation(bucket, folder)
        _check_bucket(s3, bucket)
        taken_at = export.check_export(dynamodb, s3, backfill.table, backfill.key_names, location)
    backfill.taken_at_us = taken_at
    files = export.data_files(s3, location)
    return backfill.export(files, export.read_lines(s3, location.bucket))


def _check_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        raise ConfigError(
            f"The S3 bucket {bucket!r} does not exist or cannot be reached: create it, or give "
            "another --export address."
        ) from exc


def _summary(table: str, report: BackfillReport) -> str:
    rate = report.items / report.elapsed_s if report.elapsed_s > 0 else 0.0
    return (
        f"{table}: {report.items:,} items, {report.rows_loaded:,} rows loaded in "
        f"{report.load_jobs} load jobs, {report.dead_letters} dead-lettered, "
        f"{report.capacity:,.0f} RCU, {report.elapsed_s:.1f} s ({rate:,.0f} items/s)."
    )


def reporter_for(stream: TextIO) -> Callable[[Progress], None]:
    """A rich progress bar on a terminal, else a log line every 5 seconds."""
    if stream.isatty():
        try:
            return _Bar(stream)
        except ImportError:
            pass
    logger = logging.getLogger("ddb2bq.backfill")
    last = [0.0]

    def log(progress: Progress) -> None:
        if progress.done or time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            logger.info(
                "Backfill: %d items, %d rows loaded, %.0f RCU.",
                progress.items,
                progress.rows_loaded,
                progress.capacity,
            )

    return log


class _Bar:
    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("backfill"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} items/s · {task.fields[rcu]} RCU"),
            TimeRemainingColumn(),
            console=Console(file=stream),
        )
        self._task = self._bar.add_task("backfill", total=None, rate="0", rcu="0")
        self._bar.start()

    def __call__(self, progress: Progress) -> None:
        rate = progress.items / progress.elapsed_s if progress.elapsed_s else 0.0
        self._bar.update(
            self._task,
            completed=progress.items,
            total=max(progress.expected_items or 0, progress.items) or None,
            rate=f"{rate:,.0f}",
            rcu=f"{progress.capacity:,.0f}",
        )

    def close(self) -> None:
        self._bar.stop()


def close_reporter(reporter: Any) -> None:
    close = getattr(reporter, "close", None)
    if close is not None:
        close()
