"""``ddb2bq run`` (the stream runner) and ``ddb2bq status`` (what it has done).

Exit codes: 0 done (``--until-caught-up``: caught up; otherwise stopped by SIGTERM after the
batch in hand, as a service manager stops it); 1 an operation failed (an endpoint unreachable
after the bounded retries, the lease taken over); 2 bad configuration (a missing table, a table
without a stream, missing credentials); 3 the stream lost changes that were never replicated (a
gap: see ``docs/runner.md``); 130 stopped by Ctrl-C (SIGINT) after the batch in hand; 130/143 a
second signal stopped it at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from ddb2bq.cli.common import EXIT_GAP, EXIT_INTERRUPTED, AddConfig
from ddb2bq.config import Config

if TYPE_CHECKING:
    from ddb2bq.runner.loop import Runner
    from ddb2bq.runner.status import Status


def register(commands: Any, add_config: AddConfig) -> None:
    """Add ``run`` and ``status`` to the ``ddb2bq`` parser's subcommands."""
    run = commands.add_parser(
        "run",
        help="replicate the table's stream continuously (without Lambda)",
        description="Read [source] table's DynamoDB stream (every shard, parents before "
        "children) and write each change through the BigQuery pipeline, checkpointing after "
        "each batch in [runner] checkpoints. Stops on SIGTERM/SIGINT after the batch in hand; "
        "exits 3 when the stream lost changes that were never replicated.",
    )
    add_config(run)
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every change made before the command started is written",
    )
    run.set_defaults(run=run_runner)
    status = commands.add_parser(
        "status",
        help="show the runner's generation, shards, checkpoints, lease and time left",
        description="Read [runner] checkpoints and the stream's shards; change nothing. "
        "Exit 0, or 3 when a gap (changes lost on the stream) has been detected.",
    )
    add_config(status)
    status.set_defaults(run=run_status)


def run_runner(
    args: argparse.Namespace,
    config: Config,
    *,
    stderr: TextIO | None = None,
    build: Callable[..., Runner] | None = None,
) -> int:
    """``ddb2bq run``: replicate until stopped (or caught up); ``build`` replaces
    :func:`~ddb2bq.runner.build.runner_from_config` (tests give it their clients)."""
    from ddb2bq.dynamodb.connect import aws_errors  # noqa: PLC0415 (heavy: lazy)
    from ddb2bq.runner.build import runner_from_config  # noqa: PLC0415
    from ddb2bq.runner.gaps import StreamGapError  # noqa: PLC0415
    from ddb2bq.runner.signals import stop_on_signals  # noqa: PLC0415
    from ddb2bq.runner.view import reporter_for  # noqa: PLC0415

    err = stderr or sys.stderr
    _log_to(err)
    reporter = reporter_for(err)
    make = build or runner_from_config
    runner = make(config, report=reporter, config_path=args.config or "FILE")
    interrupted: list[int] = []
    try:
        with (
            stop_on_signals(runner.stop.request),
            _noting_sigint(interrupted),
            aws_errors(config, "reading the stream"),
        ):
            report = runner.run(until_caught_up=args.until_caught_up)
    except StreamGapError as exc:
        if config.runner.on_gap == "backfill":
            print(f"ddb2bq: {exc} [runner] on_gap = \"backfill\": taking a new generation.",
                  file=err)  # fmt: skip
            return _new_generation(args, config)
        print(f"ddb2bq: error: {exc}", file=err)
        return EXIT_GAP
    finally:
        close = getattr(reporter, "close", None)
        if close is not None:
            close()
    state = "caught up" if report.caught_up else "stopped" if report.stopped else "done"
    print(
        f"{runner.table}: {report.written:,} changes written, "
        f"{report.dead_lettered:,} dead-lettered; {state}.",
        file=err,
    )
    if interrupted and report.stopped:
        print("ddb2bq: stopped by Ctrl-C after the batch in hand; run again to resume.", file=err)
        return EXIT_INTERRUPTED
    return 0


@contextmanager
def _noting_sigint(seen: list[int]) -> Iterator[None]:
    """Within the block, a SIGINT is noted in ``seen`` before the handler in place runs (the
    stop of :func:`~ddb2bq.runner.signals.stop_on_signals`): Ctrl-C exits 130, SIGTERM 0."""
    inner = signal.getsignal(signal.SIGINT)
    if not callable(inner):
        yield
        return

    def note(number: int, frame: FrameType | None) -> None:
        seen.append(number)
        inner(number, frame)

    try:
        signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread (a test): nothing to note
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, inner)


def _new_generation(args: argparse.Namespace, config: Config) -> int:
    """``ddb2bq start --new-generation`` with the backfill's default options."""
    from ddb2bq.cli.backfill import add_backfill_options  # noqa: PLC0415
    from ddb2bq.cli.start import run_start  # noqa: PLC0415

    backfill = argparse.ArgumentParser(add_help=False)
    add_backfill_options(backfill)
    defaults = vars(backfill.parse_args([]))
    start_args = argparse.Namespace(**{**defaults, **vars(args), "new_generation": True})
    return run_start(start_args, config)


def run_status(
    args: argparse.Namespace,
    config: Config,
    *,
    stdout: TextIO | None = None,
    build: Callable[..., Status] | None = None,
) -> int:
    """``ddb2bq status``: print the report; 3 when a gap was detected."""
    from ddb2bq.runner.build import status_from_config  # noqa: PLC0415

    out = stdout or sys.stdout
    status = (build or status_from_config)(config, now=time.time())
    for line in status.lines():
        print(line, file=out)
    return EXIT_GAP if status.gaps else 0


def _log_to(stream: TextIO) -> None:
    """ddb2bq's own log lines on ``stream`` (stderr), once: JSON lines when it is not a terminal,
    plain messages on one (the live view shows the rest); other libraries' stay quiet."""
    from ddb2bq.observability import configure_logging  # noqa: PLC0415

    if not stream.isatty():
        configure_logging(stream)
        return
    logger = logging.getLogger("ddb2bq")
    if not logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
