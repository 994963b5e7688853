"""``ddb2bq replay-dead-letters``: send the dead letters of a table through the sink again.

Exit codes: 0 every letter landed (or there were none); 1 some letters stay (each with its new
error) or stored lines that are not letters were moved aside (each named), or the store could
not be written (a full disk: the message names the path; every letter is still there); 2 bad
input (a ``[dead_letters] path`` that does not exist, a bad option); 130 interrupted (Ctrl-C:
every letter is still in the store, and the next replay takes them up). ``--list`` prints the
letters and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ddb2bq.cli.common import EXIT_INTERRUPTED, AddConfig
from ddb2bq.cli.options import whole
from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError

if TYPE_CHECKING:
    from ddb2bq.dead_letters.replay import ReplayReport
    from ddb2bq.pipeline import Pipeline

EXIT_LETTERS_LEFT = 1
MAX_BATCH = 10_000


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
        "--batch-size",
        type=whole(1, MAX_BATCH),
        default=500,
        help=f"changes per write, 1 to {MAX_BATCH} (default 500)",
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
    _check_folder(store)
    try:
        if args.list:
            for letter in store.read(table):
                print(
                    f"{letter.table}\t{letter.event_id}\t{letter.source}\t{letter.error}", file=out
                )
            return 0
        report = replay(
            store,
            pipeline or replay_pipeline(config),
            table,
            generation=generation_of(config).current(),
            batch_size=args.batch_size,
        )
    except KeyboardInterrupt:
        print(
            f"ddb2bq: replay of {table} interrupted; every letter is still in {store.where}, "
            "and the next replay-dead-letters takes them up.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    for line in report_lines(table, report):
        print(line, file=out)
    return 0 if report.done else EXIT_LETTERS_LEFT


def report_lines(table: str, report: ReplayReport) -> list[str]:
    """What a replay did, for people: the counts, then each line moved aside.

    >>> from ddb2bq.dead_letters.replay import ReplayReport
    >>> report_lines("orders", ReplayReport(landed=3, kept=1))
    ['orders: 3 landed, 1 kept']
    """
    counts = f"{table}: {report.landed} landed, {report.kept} kept"
    if report.unreadable:
        counts += f" ({report.unreadable} unreadable)"
    if report.set_aside:
        lines = len(report.set_aside)
        counts += f", {lines} {'line' if lines == 1 else 'lines'} set aside (not a letter)"
    moved = [
        f"  {bad.where} is not a whole dead letter ({bad.reason}); moved whole to {bad.kept_at}"
        for bad in report.set_aside
    ]
    return [counts, *moved]


def _check_folder(store: Any) -> None:
    """A mistyped local ``[dead_letters] path`` is not an empty store: say so."""
    from ddb2bq.dead_letters.local import LocalDeadLetters  # noqa: PLC0415

    if not isinstance(store, LocalDeadLetters) or store.path.is_dir():
        return
    path = store.path.absolute()
    if store.path.exists():
        raise ConfigError(f"[dead_letters] path {path} is not a folder; set it to the folder.")
    raise ConfigError(
        f"[dead_letters] path {path} does not exist: no dead letter was ever written there. "
        "Check the path (a relative one is taken from the working folder)."
    )


def replay_pipeline(config: Config, client: Any = None) -> Pipeline:
    """The pipeline of ``config`` for a replay (:mod:`ddb2bq.bigquery.factory`), with no dead
    letters of its own: the replay keeps the original letters until they land."""
    from ddb2bq.bigquery.factory import pipeline_from_config  # noqa: PLC0415 (heavy: lazy)
    from ddb2bq.dead_letters.replay import DiscardDeadLetters  # noqa: PLC0415

    return pipeline_from_config(config, DiscardDeadLetters(), client=client, source="replay")
