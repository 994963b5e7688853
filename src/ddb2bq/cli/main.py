"""The ``ddb2bq`` command line: parses arguments, calls the library, prints.

Exit codes: 0 done; 1 an operation failed; 2 bad input or configuration (the message names the
record, attribute or setting).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import orjson

from ddb2bq.config import Config, load_config
from ddb2bq.deploy import commands as deploy_commands
from ddb2bq.exceptions import ConfigError, Ddb2bqError, RecordError
from ddb2bq.records import Change, now_micros, parse_one
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import layout_for_changes
from ddb2bq.sinks import commands as table_commands
from ddb2bq.sinks.dead_letters import commands as dead_letter_commands

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
SOURCES = ("lambda", "getrecords", "kinesis", "export", "scan")
Command = Callable[[argparse.Namespace, Config], int]


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
    convert = commands.add_parser(
        "convert",
        help="print the changelog and mirror rows that records on stdin become",
        description="Read records on stdin and print one JSON line per change: "
        '{"changelog": {...}, "mirror": {...}} as the BigQuery sink would send them.',
    )
    convert.add_argument(
        "--from", dest="source", choices=SOURCES, required=True, help="the input format"
    )
    convert.add_argument(
        "--keys",
        default="",
        help="key attributes, hash key first (comma-separated); "
        "default [source] keys, or each stream record's Keys",
    )
    _add_config(convert)
    convert.set_defaults(run=run_convert)
    deploy_commands.register(commands, _add_config)
    table_commands.register(commands, _add_config)
    dead_letter_commands.register(commands, _add_config)
    return parser


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="the ddb2bq.toml file (settings also come from DDB2BQ_* variables)",
    )


def run_convert(
    args: argparse.Namespace,
    config: Config,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """``ddb2bq convert``: each change on stdin as its changelog row and mirror row."""
    source: str = args.source
    text = (stdin or sys.stdin).read()
    out = stdout or sys.stdout
    key_names = tuple(k.strip() for k in args.keys.split(",") if k.strip()) or config.source.keys
    changes, failures = _parse_input(text, source, key_names, config.source.generation)
    if changes:
        layout = layout_for_changes(changes, config, key_names=key_names)
        builder = RowBuilder(layout)
        for change in changes:
            try:
                rows = builder.build(change)
            except RecordError as exc:
                failures.append(str(exc))
                continue
            out.write(orjson.dumps({"changelog": rows.changelog, "mirror": rows.mirror}).decode())
            out.write("\n")
    for failure in failures:
        print(f"ddb2bq: error: {failure}", file=sys.stderr)
    return EXIT_BAD_INPUT if failures else 0


def _parse_input(
    text: str, source: str, key_names: Sequence[str], generation: int
) -> tuple[list[Change], list[str]]:
    """Parse every record it can; collect an error naming each record it cannot."""
    if source in ("export", "scan") and not key_names:
        raise ConfigError(
            f"--from {source} needs the key attributes: pass --keys pk[,sk] or set [source] keys."
        )
    if source == "export":
        units: list[Any] = [line for line in text.splitlines() if line.strip()]
    else:
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"the {source} input on stdin is not JSON: {exc}") from exc
        units = _units(payload, source)
    now = now_micros()
    changes: list[Change] = []
    failures: list[str] = []
    for index, unit in enumerate(units):
        try:
            changes.append(
                parse_one(
                    unit,
                    source,
                    index=index,
                    key_names=key_names,
                    generation=generation,
                    now_us=now,
                )
            )
        except RecordError as exc:
            failures.append(str(exc))
    return changes, failures


def _units(payload: Any, source: str) -> list[Any]:
    """The records (or Scan items) inside a parsed input document."""
    if source == "scan" and isinstance(payload, list):
        return payload
    field = "Items" if source == "scan" else "Records"
    units = payload.get(field) if isinstance(payload, dict) else None
    if not isinstance(units, list):
        raise RecordError(f"the {source} input on stdin has no {field!r} list")
    return units


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
