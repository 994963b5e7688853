"""``ddb2bq init`` and ``ddb2bq merge``: create the BigQuery tables, run the mirror's MERGE.

``init`` reads the table's key with DescribeTable, then creates (or completes) the dataset, the
changelog and the mirror of ``[target] mirror``; running it again changes nothing but missing
columns and the view. ``merge`` runs the incremental MERGE of the ``merge`` mirror once and prints
what it did; schedule it (cron, Cloud Scheduler) or let the runner run it on an interval.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any, TextIO

from ddb2bq.bigquery.mirror import DEFAULT_LOOKBACK, DEFAULT_OVERLAP, MAX_LOOKBACK
from ddb2bq.cli.common import AddConfig
from ddb2bq.cli.options import number
from ddb2bq.config import Config
from ddb2bq.exceptions import ConfigError

# The BigQuery client library takes a second to import: the commands import it when they run,
# so that registering them costs the rest of the command line nothing (ddb2bq.bigquery.mirror
# does not import it).

_HOUR = timedelta(hours=1)
LOOKBACK_HOURS = (DEFAULT_OVERLAP / _HOUR, MAX_LOOKBACK / _HOUR)
"""``--lookback-hours``' range: at least the MERGE's overlap, at most its longest look-back."""


def register(commands: Any, add_config: AddConfig) -> None:
    """Add ``init`` and ``merge`` to the ``ddb2bq`` parser's subcommands."""
    init = commands.add_parser(
        "init",
        help="create the BigQuery dataset, changelog and mirror (idempotent)",
        description="Create what is missing of [target] dataset, the changelog T_changes and "
        "the mirror T ([target] mirror = view | merge | cdc), from the DynamoDB table's key "
        "(DescribeTable). Running it again only adds missing columns and re-creates the view.",
    )
    add_config(init)
    init.set_defaults(run=run_init)
    merge = commands.add_parser(
        "merge",
        help="bring the merge-mode mirror up to date from the changelog, once",
        description="Run the incremental MERGE from T_changes into T and print the rows "
        "inserted, updated and deleted. Idempotent: a second run changes nothing.",
    )
    add_config(merge)
    merge.add_argument(
        "--full",
        action="store_true",
        help="read the whole changelog, not only what arrived since the last run "
        "(after replaying dead letters older than the look-back)",
    )
    low, high = LOOKBACK_HOURS
    merge.add_argument(
        "--lookback-hours",
        type=number(low, high),
        default=None,
        metavar="HOURS",
        help="how far before the last run a change may date to be merged "
        f"({low:g} to {high:g} hours; default {DEFAULT_LOOKBACK / _HOUR:g})",
    )
    merge.set_defaults(run=run_merge_command)


def run_init(
    args: argparse.Namespace,
    config: Config,
    *,
    client: Any = None,
    dynamodb: Any = None,
    stdout: TextIO | None = None,
) -> int:
    """``ddb2bq init``: create or complete the tables; print each step."""
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415
    from ddb2bq.bigquery.tables import init_tables, initial_layout  # noqa: PLC0415
    from ddb2bq.dynamodb.connect import dynamodb_client  # noqa: PLC0415
    from ddb2bq.dynamodb.tables import describe_key_schema  # noqa: PLC0415

    out = stdout or sys.stdout
    _require_table(config)
    client = client or bigquery_client(config)
    key_schema = describe_key_schema(dynamodb or dynamodb_client(config), config.source.table)
    report = init_tables(client, config, initial_layout(config, key_schema))
    for action in report.actions:
        print(action, file=out)
    if config.entities:
        print(_reclassified(client, config, report.layout), file=out)
    return 0


def _reclassified(client: Any, config: Config, layout: Any) -> str:
    """Give changelog rows of no entity the entity they are of now (an entity added later)."""
    from ddb2bq.bigquery.reclassify import reclassify  # noqa: PLC0415
    from ddb2bq.bigquery.tables import TableRefs, config_entities  # noqa: PLC0415

    refs = TableRefs.from_config(config, client.project)
    result = reclassify(client, refs.changes, layout, config_entities(config, layout))
    return (
        f"classified {result.classified} of {result.read} changelog rows of no entity in "
        f"{refs.changes}"
    )


def run_merge_command(
    args: argparse.Namespace,
    config: Config,
    *,
    client: Any = None,
    stdout: TextIO | None = None,
) -> int:
    """``ddb2bq merge``: run the MERGE once; print rows inserted, updated and deleted."""
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415
    from ddb2bq.bigquery.tables import TableRefs, merge_mirror  # noqa: PLC0415

    out = stdout or sys.stdout
    if config.target.mirror != "merge":
        raise ConfigError(
            f"[target] mirror is {config.target.mirror!r}; `ddb2bq merge` keeps a 'merge' mirror."
        )
    hours: float | None = args.lookback_hours
    client = client or bigquery_client(config)
    refs = TableRefs.from_config(config, client.project)
    result = merge_mirror(
        client,
        config,
        full=args.full,
        lookback=DEFAULT_LOOKBACK if hours is None else timedelta(hours=hours),
    )
    scope = "full" if result.full else "incremental"
    print(
        f"{refs.mirror}: {result.inserted} inserted, {result.updated} updated, "
        f"{result.deleted} deleted ({scope})",
        file=out,
    )
    return 0


def _require_table(config: Config) -> None:
    if not config.source.table:
        raise ConfigError("Set [source] table: the DynamoDB table whose key the tables use.")
