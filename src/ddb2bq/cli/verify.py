"""``ddb2bq verify``: proof that the BigQuery mirror holds exactly the DynamoDB table.

Prints a summary line (items in the table, rows in the mirror; equal, missing, extra and
different counts), then the first 20 keys of each kind of difference as DynamoDB JSON. Progress
and the re-check's wait go to stderr. Exit codes: 0 the mirror equals the table; 1 differences
persisted after the re-check (or a service failed); 2 bad configuration (a table that does not
exist, a bad option); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ddb2bq.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, AddConfig
from ddb2bq.cli.options import number, whole
from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError


def register(commands: Any, add_config: AddConfig) -> None:
    """Add ``verify`` to the ``ddb2bq`` parser's subcommands."""
    verify = commands.add_parser(
        "verify",
        help="check that the BigQuery mirror holds exactly the DynamoDB table",
        description="Read [source] table (parallel Scan) and its mirror, compare every item "
        "by a typed canonical hash, re-check differences after the replication lag, and print "
        "the keys missing, extra or different. Exit 0 when equal, 1 when not.",
    )
    add_config(verify)
    verify.add_argument(
        "--sample",
        type=number(0, 1, above=True),
        default=1.0,
        metavar="FRACTION",
        help="compare only this fraction of the keys (e.g. 0.01), chosen by a salted key hash "
        "on both sides (default 1: every key)",
    )
    verify.add_argument(
        "--seed", type=int, default=None, help="the salt of --sample (default: random, printed)"
    )
    verify.add_argument(
        "--segments",
        type=whole(1, 1_000_000),
        default=4,
        help="parallel Scan segments, one thread each (default 4)",
    )
    verify.add_argument(
        "--consistent-read",
        action="store_true",
        help="strongly consistent Scan (twice the read capacity)",
    )
    verify.add_argument(
        "--recheck-after",
        type=number(0, 7 * 24 * 3600),
        default=None,
        metavar="SECONDS",
        help="wait this long before re-checking differences (default: 30 s, plus "
        "[runner] merge_interval for a merge mirror, plus 15 min for a cdc mirror)",
    )
    verify.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="where the temporary bucket files go (default: the system's temporary folder)",
    )
    verify.set_defaults(run=run_verify)


def run_verify(
    args: argparse.Namespace,
    config: Config,
    *,
    dynamodb: Any = None,
    client: Any = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """``ddb2bq verify``: print the report; 0 when the mirror equals the table, else 1.

    ``sleep`` is the re-check's wait (tests replicate during it instead)."""
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415 (heavy: lazy)
    from ddb2bq.dynamodb.connect import dynamodb_client  # noqa: PLC0415
    from ddb2bq.verify import VerifyOptions, verify  # noqa: PLC0415
    from ddb2bq.verify.report import keys as count_keys  # noqa: PLC0415

    out, err = stdout or sys.stdout, stderr or sys.stderr
    _check_workdir(args.workdir)
    _log_to(err)
    options = VerifyOptions(
        segments=args.segments,
        consistent_read=args.consistent_read,
        sample=args.sample,
        seed=args.seed,
        recheck_after=args.recheck_after,
        workdir=args.workdir,
    )

    def on_wait(keys: int, seconds: float, why: str) -> None:
        print(f"re-checking {count_keys(keys)} in {seconds:g} s ({why})", file=err, flush=True)

    try:
        report = verify(
            config,
            dynamodb=dynamodb or dynamodb_client(config),
            client=client or bigquery_client(config),
            options=options,
            on_wait=on_wait,
            sleep=sleep,
        )
    except KeyboardInterrupt:
        print("ddb2bq: verify interrupted; nothing was compared to the end.", file=err)
        return EXIT_INTERRUPTED
    for line in report.lines():
        print(line, file=out)
    return 0 if report.equal_everywhere else EXIT_FAILED


def _check_workdir(workdir: str | None) -> None:
    """Refuse a ``--workdir`` that is not a folder before any table is read."""
    if workdir is not None and not Path(workdir).is_dir():
        what = "is not a folder" if Path(workdir).exists() else "does not exist"
        raise ConfigError(
            f"--workdir {workdir!r} {what}: give an existing folder for the temporary bucket "
            "files, or leave it out to use the system's temporary folder."
        )


def _log_to(stream: TextIO) -> None:
    """Progress as log lines on ``stream``: JSON lines, or plain text on a terminal."""
    from ddb2bq.observability import configure_logging  # noqa: PLC0415

    if not stream.isatty():
        configure_logging(stream)
    else:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=stream)
