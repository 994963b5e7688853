"""``ddb2bq start``: stream on, tables made, the stream replicated while the backfill runs, then
replicated on (see :mod:`ddb2bq.backfill.stitch` for the order and why it converges).

Exit codes: 0 done (``--until-caught-up``: caught up); 1 an operation failed, or an endpoint did
not answer within ``--retry-deadline`` (run it again: the backfill resumes); 2 bad input or
configuration; 3 the stream lost changes (a gap: run with ``--new-generation``); 130 stopped by
Ctrl-C/SIGTERM (run it again to resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from ddb2bq.cli.backfill import (
    add_backfill_options,
    check_mirror,
    close_reporter,
    options_of,
    reporter_for,
    run_source,
)
from ddb2bq.cli.common import EXIT_GAP, AddConfig
from ddb2bq.config import Config

if TYPE_CHECKING:
    from ddb2bq.backfill.stitch import Parts


def register(commands: Any, add_config: AddConfig) -> None:
    """Add ``start`` to the ``ddb2bq`` parser's subcommands."""
    parser = commands.add_parser(
        "start",
        help="turn the stream on, backfill while replicating it, then keep replicating",
        description="The safe order, by itself: turn on [source] table's stream if it is off "
        "(NEW_AND_OLD_IMAGES), create the BigQuery tables, replicate the stream from its "
        "oldest record while the backfill runs, record the snapshot as complete, then keep "
        "replicating. Stream changes win over snapshot rows through seq.",
    )
    add_config(parser)
    parser.add_argument("--until-caught-up", action="store_true",
                        help="exit 0 once caught up after the backfill")  # fmt: skip
    parser.add_argument("--new-generation", action="store_true",
                        help="after a gap: raise the generation, take a new backfill, and read "
                        "the stream again from its oldest record")  # fmt: skip
    add_backfill_options(parser)
    parser.set_defaults(run=run_start)


def run_start(
    args: argparse.Namespace,
    config: Config,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    parts: Callable[[Config, argparse.Namespace, Any], Parts] | None = None,
) -> int:
    """``ddb2bq start``."""
    from ddb2bq.backfill.stitch import StartOptions, start  # noqa: PLC0415
    from ddb2bq.dynamodb.connect import aws_errors  # noqa: PLC0415
    from ddb2bq.runner.gaps import StreamGapError  # noqa: PLC0415
    from ddb2bq.runner.signals import StopFlag, stop_on_signals  # noqa: PLC0415

    out, err = stdout or sys.stdout, stderr or sys.stderr
    check_mirror(config)
    options = StartOptions(args.until_caught_up, args.new_generation, options_of(args))
    reporter = reporter_for(err)
    stop = StopFlag()
    try:
        with stop_on_signals(stop.request), aws_errors(config, "starting the replication"):
            return start(config, options, (parts or default_parts)(config, args, reporter),
                         out=out, stop=stop)  # fmt: skip
    except StreamGapError as exc:
        print(f"ddb2bq: error: {exc}", file=err)
        return EXIT_GAP
    finally:
        close_reporter(reporter)


def default_parts(config: Config, args: argparse.Namespace, reporter: Any) -> Parts:
    """The real clients and factories for ``config``."""
    from ddb2bq.backfill.build import backfill_from_config  # noqa: PLC0415 (heavy)
    from ddb2bq.backfill.stitch import Parts  # noqa: PLC0415
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415
    from ddb2bq.dynamodb.connect import dynamodb_client  # noqa: PLC0415
    from ddb2bq.runner.build import runner_from_config  # noqa: PLC0415
    from ddb2bq.runner.view import log_snapshot  # noqa: PLC0415

    dynamodb = dynamodb_client(config)
    bigquery = bigquery_client(config)

    def make_runner(config: Config, **kwargs: Any) -> Any:
        return runner_from_config(config, report=log_snapshot, dynamodb=dynamodb, **kwargs)

    def make_backfill(config: Config, options: Any, **kwargs: Any) -> Any:
        return backfill_from_config(
            config, options, progress=reporter, dynamodb=dynamodb, client=bigquery, **kwargs
        )

    return Parts(
        dynamodb=dynamodb,
        bigquery=bigquery,
        make_runner=make_runner,
        make_backfill=make_backfill,
        run_backfill=lambda backfill: run_source(backfill, args, config),
    )
