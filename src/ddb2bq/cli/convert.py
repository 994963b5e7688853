"""``ddb2bq convert``: the changelog and mirror rows that records on stdin become.

Reads Lambda events, GetRecords responses, Kinesis records, export lines or a Scan response,
and prints one JSON line per change: ``{"changelog": {...}, "mirror": {...}}``, exactly as the
BigQuery writers would send them. With ``[[entities]]`` each line starts with the change's
entity and typed key parts, ``{"entity": "orders", "parts": {...}, ...}`` (``null``: of no
entity, or a REMOVE whose keys cannot tell), also in the changelog's ``_entity`` and ``_parts``. A record that cannot be parsed or converted is named on stderr,
as every message names a record (``record 2 (eventID 7f3a9c, key pk='a')``: ``record N`` counts
the input's records from 0, see :mod:`ddb2bq.records`), and the exit code is 2; the other records
are still printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from ddb2bq.cli.common import EXIT_BAD_INPUT, AddConfig
from ddb2bq.config import Config
from ddb2bq.entities import Entities
from ddb2bq.exceptions import ConfigError, RecordError
from ddb2bq.records import Change, now_micros, parse_one
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import TableLayout, bigquery_table_name, layout_for_changes

SOURCES = ("lambda", "getrecords", "kinesis", "export", "scan")


def register(commands: Any, add_config: AddConfig) -> None:
    """Add ``convert`` to the ``ddb2bq`` parser's subcommands."""
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
    add_config(convert)
    convert.set_defaults(run=run_convert)


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
        layout = layout_for_changes([c for _, c in changes], config, key_names=key_names)
        builder = RowBuilder(_with_entities(config, layout))
        for index, change in changes:
            try:
                rows = builder.build(change)
            except RecordError as exc:
                failures.append((index, str(exc)))
                continue
            record: dict[str, Any] = {"changelog": rows.changelog, "mirror": rows.mirror}
            if config.entities:
                record = {"entity": rows.entity, "parts": rows.parts, **record}
            out.write(orjson.dumps(record).decode())
            out.write("\n")
    for _, failure in sorted(failures, key=lambda f: f[0]):
        print(f"ddb2bq: error: {failure}", file=sys.stderr)
    return EXIT_BAD_INPUT if failures else 0


def _with_entities(config: Config, layout: TableLayout) -> TableLayout:
    """``layout`` with ``[[entities]]`` (checked against the keys), so each record shows its
    entity and key parts."""
    if not config.entities:
        return layout
    table = config.target.table or bigquery_table_name(config.source.table or "table")
    entities = Entities.from_config(
        list(config.entities), table=table, keys=layout.key_names, key_types=layout.key_types
    )
    return layout.with_entities(entities)


def _parse_input(
    text: str, source: str, key_names: Sequence[str], generation: int
) -> tuple[list[tuple[int, Change]], list[tuple[int, str]]]:
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
    changes: list[tuple[int, Change]] = []
    failures: list[tuple[int, str]] = []
    for index, unit in enumerate(units):
        try:
            change = parse_one(
                unit, source, index=index, key_names=key_names, generation=generation, now_us=now
            )
        except RecordError as exc:
            failures.append((index, str(exc)))
            continue
        changes.append((index, change))
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
