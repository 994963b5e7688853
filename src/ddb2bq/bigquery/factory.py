"""The one composition root: a :class:`~ddb2bq.pipeline.Pipeline` built from the configuration.

Every runtime (the Lambda handler, replay, the runner, the backfill) gets its pipeline here, so
they all reach BigQuery the same way:

- the changelog's layout is read, and ``insertAll`` rows are sent, by the light REST client
  (:mod:`ddb2bq.bigquery.rest`, standard library only), unless a full client is passed in;
- the full ``google.cloud.bigquery`` client is made only when a schema evolution needs it;
- Storage Write (``[target] writer = "storage_write"``, and the ``cdc`` mirror) imports its gRPC
  client here, at the first write, not at import;
- the pipeline counts records, rows, dead letters, retries and bytes (``pipeline.counters``);
- ``[[entities]]`` (``DDB2BQ_ENTITIES``) are read with the changelog's keys and carried by the
  layout, so each change's row names its entity and key parts.

Credentials: an emulator (``[target] endpoint``) gets none; otherwise ``credentials`` (a
:class:`~ddb2bq.credentials.CredentialsProvider`, kept for a container's life) or ``[google]``.

>>> pipeline = pipeline_from_config(config, LocalDeadLetters("dead-letters"))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery import clients
from ddb2bq.bigquery.tables import TableRefs, evolve, load_layout, with_config_entities
from ddb2bq.config import Config
from ddb2bq.contract import DeadLetterSink
from ddb2bq.credentials import CredentialsProvider, provider_for
from ddb2bq.pipeline import Pipeline
from ddb2bq.schema import TableLayout

if TYPE_CHECKING:
    from google.cloud import bigquery

logger = logging.getLogger(__name__)


def pipeline_from_config(
    config: Config,
    dead_letters: DeadLetterSink,
    *,
    credentials: CredentialsProvider | None = None,
    client: bigquery.Client | None = None,
    source: str = "stream",
) -> Pipeline:
    """The pipeline of ``config``: the changelog's current layout, the configured writer (and
    the cdc writer), schema evolution, and ``dead_letters``.

    ``client`` (a full BigQuery client) replaces the light REST client for reading the layout
    and for ``insertAll``; ``source`` names the runtime in the dead letters.
    """
    creds = None if config.target.endpoint else _credentials(config, credentials)
    light = client if client is not None else clients.rest_client(config, creds)
    refs = TableRefs.from_config(config, light.project)
    soft = config.target.deletes == "soft"
    layout = load_layout(light, refs, soft=soft, entities=bool(config.entities))
    layout = with_config_entities(config, layout)  # [[entities]] checked here, with the keys
    needs_storage = config.target.writer == "storage_write" or config.target.mirror == "cdc"
    write_client = clients.bigquery_write_client(config, creds) if needs_storage else None
    mirror_for = None
    if config.target.mirror == "cdc":
        mirror_for = clients.cdc_writer_for(config, light, write_client)
    logger.info(
        "BigQuery pipeline ready.",
        extra={"changelog": str(refs.changes), "writer": config.target.writer},
    )
    return Pipeline(
        config,
        layout,
        clients.changelog_writer_for(config, light, write_client),
        dead_letters,
        evolve=_Evolver(config, client, creds),
        mirror_writer_for=mirror_for,
        source=source,
    )


def _credentials(config: Config, provider: CredentialsProvider | None) -> Any:
    return (provider or provider_for(config)).get()


class _Evolver:
    """Adds promoted columns with the full client, made at the first evolution."""

    def __init__(self, config: Config, client: bigquery.Client | None, credentials: Any) -> None:
        self._config = config
        self._client = client
        self._make = functools.partial(clients.bigquery_client, config, credentials)

    def __call__(self, layout: TableLayout, attributes: Mapping[str, str]) -> TableLayout:
        if self._client is None:
            self._client = self._make()
        return evolve(self._client, self._config, layout, attributes)
