"""The backfill built from the configuration: the table's layout and the pipeline from the one
composition root, the full BigQuery client for load jobs, the state store, the generation.

>>> backfill = backfill_from_config(load_config("ddb2bq.toml"), BackfillOptions())  # doctest: +SKIP
>>> backfill.scan()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddb2bq.backfill.run import Backfill, BackfillOptions, Progress
from ddb2bq.config import Config
from ddb2bq.dynamodb.connect import aws_errors, dynamodb_client
from ddb2bq.exceptions import ConfigError
from ddb2bq.pipeline import Pipeline
from ddb2bq.runner.build import bigquery_errors
from ddb2bq.runner.signals import StopFlag
from ddb2bq.state import StateStore
from ddb2bq.state.factory import generation_of, state_store_from_setting

SOURCE = "scan"
"""The dead letters' name of the backfill's record format (replay parses it back)."""


def backfill_from_config(
    config: Config,
    options: BackfillOptions,
    *,
    progress: Callable[[Progress], None] | None = None,
    dynamodb: Any = None,
    store: StateStore | None = None,
    pipeline: Pipeline | None = None,
    client: Any = None,
    spool_dir: Path | None = None,
    stop: StopFlag | None = None,
) -> Backfill:
    """A :class:`~ddb2bq.backfill.run.Backfill` of ``config``'s table."""
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415 (heavy)
    from ddb2bq.bigquery.factory import pipeline_from_config  # noqa: PLC0415
    from ddb2bq.bigquery.tables import TableRefs  # noqa: PLC0415
    from ddb2bq.dead_letters.stores import dead_letters_from_config  # noqa: PLC0415

    table = config.source.table
    if not table:
        raise ConfigError("Set [source] table: the DynamoDB table to backfill.")
    dynamodb = dynamodb or dynamodb_client(config)
    with aws_errors(config, "describing the table"):
        dynamodb.describe_table(TableName=table)
    store = store or state_store_from_setting(
        config.runner.checkpoints, dynamodb_client_factory=lambda: dynamodb
    )
    with bigquery_errors(config):
        client = client or bigquery_client(config)
        if pipeline is None:
            dead_letters = dead_letters_from_config(
                config.dead_letters,
                region=config.source.region,
                endpoint_url=config.source.endpoint_url,
            )
            pipeline = pipeline_from_config(config, dead_letters, client=client, source=SOURCE)
    refs = TableRefs.from_config(config, client.project)
    with aws_errors(config, "reading the backfill's state"):
        generation = generation_of(config, store=store).current()
    return Backfill(
        table=table,
        dynamodb=dynamodb,
        pipeline=pipeline,
        loader_client=client,
        changes_table=refs.changes.api,
        store=store,
        generation=generation,
        spool_dir=spool_dir or Path(".ddb2bq") / "backfill" / table,
        options=options,
        progress=progress,
        stop=stop,
    )


def refresh_mirror(config: Config, client: Any = None) -> str | None:
    """Bring the ``merge`` mirror up to date after a backfill; what it did, or None (the
    ``view`` mirror needs nothing)."""
    if config.target.mirror != "merge":
        return None
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415 (heavy)
    from ddb2bq.bigquery.tables import merge_mirror  # noqa: PLC0415

    with bigquery_errors(config):
        result = merge_mirror(client or bigquery_client(config), config)
    return str(result)
