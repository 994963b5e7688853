"""What every ``ddb2bq`` command shares: the exit codes and the ``--config`` and
``--retry-deadline`` options.

The exit codes, the same for every command (README.md has the table):

===  ==========================================================================================
0    done
1    an operation failed: a service unreachable or refusing (after the bounded retries), dead
     letters left after a replay, differences found by ``verify``, or a bug in ddb2bq
2    bad input or configuration (a usage error too): the message names the record, attribute,
     table, path or setting
3    ``run`` / ``status`` / ``start``: the stream lost changes that were never replicated
130  stopped by Ctrl-C (SIGINT); long commands stop after saving their progress
141  the output was closed early (``ddb2bq status | head -1``): nothing more is printed
143  stopped by SIGTERM (``run`` and ``start`` stop cleanly on SIGTERM and exit 0)
===  ==========================================================================================
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ddb2bq.cli.options import number
from ddb2bq.config import Config

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GAP = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), the shell's convention 128 + 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a reader that stopped reading
EXIT_TERMINATED = 143  # SIGTERM, 128 + 15

DEFAULT_RETRY_DEADLINE = 30.0
"""Seconds any one call may spend retrying on the command line (``--retry-deadline``)."""

Command = Callable[[argparse.Namespace, Config], int]
AddConfig = Callable[[argparse.ArgumentParser], None]


def add_config(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--config FILE`` and ``--retry-deadline SECONDS`` options."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="the ddb2bq.toml file (settings also come from DDB2BQ_* variables)",
    )
    parser.add_argument(
        "--retry-deadline",
        type=number(0, 24 * 3600, above=True),
        default=DEFAULT_RETRY_DEADLINE,
        metavar="SECONDS",
        help="how long one call to AWS or BigQuery may be retried before the command reports "
        f"it failed (default {DEFAULT_RETRY_DEADLINE:g}; see docs/writers.md)",
    )
