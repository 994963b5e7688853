"""The one composition root: a :class:`~ddb2bq.pipeline.Pipeline` built from the configuration.

Every runtime (the Lambda handler, replay, the runner, the backfill) gets its pipeline here, so
they all reach BigQuery the same way:

- the changelog's layout is read, and ``insertAll`` rows are sent, by the light REST client
  (:mod:`ddb2bq.bigquery.rest`, standard library only), unless a full client is passed in;
- the full ``google.cloud.bigquery`` client is made only when a schema evolution needs it;
- Storage Write (``[target] writer = "storage_write"``, and the ``cdc`` mirror) imports its gRPC
  client here, at the first write, not at import; or, given a ``storage_loader`` (the Lambda
  handler's cold start, :mod:`ddb2bq.bigquery.warm_start`), the changelog goes through
  ``insertAll`` until that background load is done, then through Storage Write;
- the pipeline counts records, rows, dead letters, retries and bytes (``pipeline.counters``);
- ``[[entities]]`` (``DDB2BQ_ENTITIES``) are read with the changelog's keys and carried by the
  layout, so each change's row names its entity and key parts.

Credentials: an emulator (``[target] endpoint``) gets none; otherwise ``credentials`` (a
:class:`~ddb2bq.credentials.CredentialsProvider`, kept for a container's life) or ``[google]``.

>>> pipeline = pipeline_from_config(config, LocalDeadLetters("dead-letters"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery import clients, warm_start
from ddb2bq.bigquery.tables import TableRefs, evolve, load_layout, with_config_entities
from ddb2bq.config import Config
from ddb2bq.contract import DeadLetterSink, Writer
from ddb2bq.credentials import CredentialsProvider, provider_for
from ddb2bq.pipeline import Pipeline, WriterFactory
from ddb2bq.schema import TableLayout

if TYPE_CHECKING:
    from google.cloud import bigquery

    from ddb2bq.bigquery.rest import RestClient

logger = logging.getLogger(__name__)


def pipeline_from_config(
    config: Config,
    dead_letters: DeadLetterSink,
    *,
    credentials: CredentialsProvider | None = None,
    client: bigquery.Client | None = None,
    source: str = "stream",
    storage_loader: warm_start.StorageWriteLoader | None = None,
) -> Pipeline:
    """The pipeline of ``config``: the changelog's current layout, the configured writer (and
    the cdc writer), schema evolution, and ``dead_letters``.

    ``client`` (a full BigQuery client) replaces the light REST client for reading the layout
    and for ``insertAll``; ``source`` names the runtime in the dead letters;
    ``storage_loader`` (a cold container's, already started) makes the changelog go through
    ``insertAll`` until it is done, when :func:`~ddb2bq.bigquery.warm_start.applies`.
    """
    creds = None if config.target.endpoint else _credentials(config, credentials)
    light = client if client is not None else clients.rest_client(config, creds)
    refs = TableRefs.from_config(config, light.project)
    soft = config.target.deletes == "soft"
    loader = storage_loader if warm_start.applies(config) else None
    with loader.meanwhile() if loader is not None else contextlib.nullcontext():  # the GET
        layout = load_layout(
            light,
            refs,
            soft=soft,
            entities=bool(config.entities),
            old_images=config.target.old_images,
        )
    if not layout.lean:
        logger.warning(
            "The changelog %s was made before the lean row and has no item_types column: its "
            "rows are written as before (new_image and old_image) until `ddb2bq init` adds it.",
            refs.changes,
        )
    layout = with_config_entities(config, layout)  # [[entities]] checked here, with the keys
    switch = None
    write_client = None
    if loader is not None:  # never with a cdc mirror
        make = functools.partial(clients.bigquery_write_client, config, creds)
        switch = warm_start.StorageWriteSwitch(loader, make)
        writer_for = _warm_start_writer_for(config, light, switch)
    else:
        if config.target.writer == "storage_write" or config.target.mirror == "cdc":
            write_client = clients.bigquery_write_client(config, creds)
        writer_for = clients.changelog_writer_for(config, light, write_client)
    mirror_for = None
    if config.target.mirror == "cdc":
        mirror_for = clients.cdc_writer_for(config, light, write_client)
    logger.info(
        "BigQuery pipeline ready.",
        extra={
            "changelog": str(refs.changes),
            "writer": config.target.writer,
            "warm_start": switch is not None,
        },
    )
    return Pipeline(
        config,
        layout,
        writer_for,
        dead_letters,
        evolve=_Evolver(config, client, creds, switch),
        mirror_writer_for=mirror_for,
        source=source,
    )


def _warm_start_writer_for(
    config: Config, light: bigquery.Client | RestClient, switch: warm_start.StorageWriteSwitch
) -> WriterFactory:
    """``layout -> Writer``: the changelog through insertAll over ``light`` until ``switch``
    has the Storage Write client, then through Storage Write."""
    insert_all = clients.insert_all_writer_for(config, light)

    def writer_for(layout: TableLayout) -> Writer:
        def storage_write(write_client: Any) -> Writer:
            return clients.storage_write_writer_for(config, light.project, write_client)(layout)

        return warm_start.WarmStartWriter(switch, insert_all(layout), storage_write)

    return writer_for


def _credentials(config: Config, provider: CredentialsProvider | None) -> Any:
    return (provider or provider_for(config)).get()


class _Evolver:
    """Adds promoted columns with the full client, made at the first evolution (after a warm
    start's loader is done: both import the Google client libraries)."""

    def __init__(
        self,
        config: Config,
        client: bigquery.Client | None,
        credentials: Any,
        switch: warm_start.StorageWriteSwitch | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._make = functools.partial(clients.bigquery_client, config, credentials)
        self._switch = switch

    def __call__(self, layout: TableLayout, attributes: Mapping[str, str]) -> TableLayout:
        if self._client is None:
            if self._switch is not None:
                self._switch.wait_for_loader("Adding columns to the changelog")
            self._client = self._make()
        return evolve(self._client, self._config, layout, attributes)
