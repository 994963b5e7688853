"""The ``ddb2bq`` command line: parses arguments, calls the library, prints.

Each command lives in its own module of this package and registers its parser here. Exit codes:
0 done; 1 an operation failed; 2 bad input or configuration (the message names the record,
attribute or setting).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ddb2bq.cli import backfill, convert, dead_letters, deploy, run, start, tables, verify
from ddb2bq.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, Command, add_config
from ddb2bq.config import load_config
from ddb2bq.exceptions import ConfigError, Ddb2bqError, RecordError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        command: Command = args.run
        return command(args, config)
    except (ConfigError, RecordError) as exc:
        print(f"ddb2bq: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Ddb2bqError as exc:
        print(f"ddb2bq: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddb2bq",
        description="Replicate Amazon DynamoDB tables into Google BigQuery, continuously and without loss.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, deploy, tables, dead_letters, run, backfill, start, verify):
        module.register(commands, add_config)
    return parser
