"""What every ``ddb2bq`` command shares: the exit codes and the ``--config`` option."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ddb2bq.config import Config

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), the shell's convention 128 + 2

Command = Callable[[argparse.Namespace, Config], int]
AddConfig = Callable[[argparse.ArgumentParser], None]


def add_config(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--config FILE`` option."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="the ddb2bq.toml file (settings also come from DDB2BQ_* variables)",
    )
