"""``ddb2bq replay-dead-letters``: send the dead letters of a table through the sink again.

Exit code 0 when every letter landed (or there were none), 1 when some stay (each with its new
error). ``--list`` prints the letters and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ddb2bq.cli.common import AddConfig
from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError

if TYPE_CHECKING:
    from ddb2bq.pipeline import Pipeline

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
    pipeline: Pipeline | None = None,
    stdout: TextIO | None = None,
) -> int:
    """``ddb2bq replay-dead-letters``: replay, then print what landed and what stays."""
    from ddb2bq.dead_letters.replay import replay  # noqa: PLC0415
    from ddb2bq.dead_letters.stores import dead_letters_from_config  # noqa: PLC0415
    from ddb2bq.state.factory import generation_of  # noqa: PLC0415

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
        pipeline or replay_pipeline(config),
        table,
        generation=generation_of(config).current(),
        batch_size=args.batch_size,
    )
    print(
        f"{table}: {report.landed} landed, {report.kept} kept"
        + (f" ({report.unreadable} unreadable)" if report.unreadable else ""),
        file=out,
    )
    return EXIT_LETTERS_LEFT if report.kept else 0


def replay_pipeline(config: Config, client: Any = None) -> Pipeline:
    """The pipeline of ``config`` for a replay (:mod:`ddb2bq.bigquery.factory`), with no dead
    letters of its own: the replay keeps the original letters until they land."""
    from ddb2bq.bigquery.factory import pipeline_from_config  # noqa: PLC0415 (heavy: lazy)
    from ddb2bq.dead_letters.replay import DiscardDeadLetters  # noqa: PLC0415

    return pipeline_from_config(config, DiscardDeadLetters(), client=client, source="replay")
