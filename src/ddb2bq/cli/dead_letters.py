"""``ddb2bq replay-dead-letters``: send the dead letters of a table through the sink again.

Exit code 0 when every letter landed (or there were none), 1 when some stay (each with its new
error). ``--list`` prints the letters and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError

AddConfig = Callable[[argparse.ArgumentParser], None]
EXIT_LETTERS_LEFT = 1


def register(commands: Any, add_config: AddConfig) -> None:
    """Add ``replay-dead-letters`` to the ``ddb2bq`` parser's subcommands."""
    parser = commands.add_parser(
        "replay-dead-letters",
        help="write the dead letters of a table again, once their cause is fixed",
        description="Parse each dead letter's original record again, write it through the "
        "BigQuery sink of [target], and remove the letters that landed; the others stay with "
        "their new error. Letters come from [dead_letters] (local, s3 or sqs).",
    )
    add_config(parser)
    parser.add_argument(
        "--table", default=None, help="whose letters to replay (default: [source] table)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=500, help="changes per write (default 500)"
    )
    parser.add_argument(
        "--list", action="store_true", help="print the letters (table, event, error); no replay"
    )
    parser.set_defaults(run=run_replay)


def run_replay(
    args: argparse.Namespace,
    config: Config,
    *,
    store: Any = None,
    sink: Any = None,
    stdout: TextIO | None = None,
) -> int:
    """``ddb2bq replay-dead-letters``: replay, then print what landed and what stays."""
    from ddb2bq.sinks.dead_letters import dead_letters_from_config  # noqa: PLC0415
    from ddb2bq.sinks.dead_letters.replay import replay  # noqa: PLC0415

    out = stdout or sys.stdout
    table = args.table or config.source.table
    if not table:
        raise ConfigError("Set [source] table or pass --table: whose dead letters to replay.")
    store = store or dead_letters_from_config(
        config.dead_letters, region=config.source.region, endpoint_url=config.source.endpoint_url
    )
    if args.list:
        for letter in store.read(table):
            print(f"{letter.table}\t{letter.event_id}\t{letter.source}\t{letter.error}", file=out)
        return 0
    report = replay(
        store,
        sink or replay_sink(config),
        table,
        generation=config.source.generation,
        batch_size=args.batch_size,
    )
    print(
        f"{table}: {report.landed} landed, {report.kept} kept"
        + (f" ({report.unreadable} unreadable)" if report.unreadable else ""),
        file=out,
    )
    return EXIT_LETTERS_LEFT if report.kept else 0


def replay_sink(config: Config, client: Any = None) -> Any:
    """The BigQuery sink of ``config`` for a replay: the changelog's current layout, the
    configured writer (and the cdc writer), and no dead letters of its own."""
    from ddb2bq.sinks.bigquery import BigQuerySink  # noqa: PLC0415
    from ddb2bq.sinks.clients import (  # noqa: PLC0415
        bigquery_client,
        cdc_writer_for,
        changelog_writer_for,
    )
    from ddb2bq.sinks.dead_letters.replay import DiscardDeadLetters  # noqa: PLC0415
    from ddb2bq.sinks.tables import TableRefs, load_layout  # noqa: PLC0415

    client = client or bigquery_client(config)
    refs = TableRefs.from_config(config, client.project)
    layout = load_layout(client, refs, soft=config.target.deletes == "soft")
    mirror = cdc_writer_for(config, client) if config.target.mirror == "cdc" else None
    return BigQuerySink(
        config,
        layout,
        client,
        changelog_writer_for(config, client),
        DiscardDeadLetters(),
        mirror_writer_for=mirror,
        source="replay",
    )
