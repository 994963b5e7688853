"""Clients built from configuration: BigQuery (REST and Storage Write), and its writers.

The one place that decides how ddb2bq reaches each service; everything else takes clients as
parameters. The Google client libraries are imported when a client is made, not with this module:
the Lambda's ``insertAll`` path uses :func:`rest_client` (:mod:`ddb2bq.bigquery.rest`) and never
imports them; a cold Lambda container imports the Storage Write client in the background
(:func:`import_write_client`, :mod:`ddb2bq.bigquery.warm_start`). ``[target] endpoint`` (and
``grpc_endpoint``) point BigQuery at a local emulator, reached without credentials; otherwise
the credentials come from ``[google]`` (:mod:`ddb2bq.credentials`: workload identity, a Secrets
Manager key, or application defaults).
DynamoDB's clients are in :mod:`ddb2bq.dynamodb.connect`.

>>> client = bigquery_client(load_config("ddb2bq.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery.insert_all import InsertClient
from ddb2bq.bigquery.rest import RestClient
from ddb2bq.bigquery.tables import TableRefs, mirrors_of
from ddb2bq.config import Config
from ddb2bq.contract import Writer
from ddb2bq.credentials import anonymous_credentials, provider_for
from ddb2bq.pipeline import WriterFactory
from ddb2bq.schema import TableLayout

if TYPE_CHECKING:
    from google.cloud import bigquery


def bigquery_client(config: Config, credentials: Any = None) -> bigquery.Client:
    """A BigQuery REST client for ``[target]``; ``credentials`` overrides ``[google]``."""
    from google.api_core.client_options import ClientOptions  # noqa: PLC0415 (heavy: lazy)
    from google.cloud import bigquery  # noqa: PLC0415

    endpoint = config.target.endpoint
    if endpoint:
        return bigquery.Client(
            project=config.target.project or None,
            credentials=anonymous_credentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
            location=config.target.location,
        )
    return bigquery.Client(
        project=config.target.project or None,
        credentials=credentials or provider_for(config).get(),
        location=config.target.location,
    )


def rest_client(config: Config, credentials: Any = None) -> RestClient:
    """The light REST client for ``[target]`` (``get_table`` and ``insert_rows_json`` only);
    ``credentials`` overrides ``[google]``; an emulator (``[target] endpoint``) gets none."""
    endpoint = config.target.endpoint
    if endpoint:
        return RestClient(config.target.project, None, endpoint=endpoint)
    creds = credentials or provider_for(config).get()
    return RestClient(config.target.project, creds)


def import_write_client(config: Config) -> None:
    """Import what :func:`bigquery_write_client` and the Storage Write writer need (the
    warm start's background thread runs it: :mod:`ddb2bq.bigquery.warm_start`)."""
    from google.cloud import bigquery_storage_v1  # noqa: F401, PLC0415

    import ddb2bq.bigquery.storage_write  # noqa: F401, PLC0415 (heavy: the point of the call)

    if config.target.grpc_endpoint:
        import grpc  # noqa: F401, PLC0415
        from google.cloud.bigquery_storage_v1.services.big_query_write import (  # noqa: F401, PLC0415
            transports,
        )


def bigquery_write_client(config: Config, credentials: Any = None) -> Any:
    """A Storage Write API client; plain gRPC to ``[target] grpc_endpoint`` when it is set."""
    from google.cloud import bigquery_storage_v1  # noqa: PLC0415 (only the storage writer needs it)

    grpc_endpoint = config.target.grpc_endpoint
    if grpc_endpoint:
        import grpc  # noqa: PLC0415
        from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (  # noqa: PLC0415
            BigQueryWriteGrpcTransport,
        )

        channel = grpc.insecure_channel(grpc_endpoint)
        transport = BigQueryWriteGrpcTransport(channel=channel)
        return bigquery_storage_v1.BigQueryWriteClient(transport=transport)  # type: ignore[no-untyped-call]
    creds = credentials or provider_for(config).get()
    return bigquery_storage_v1.BigQueryWriteClient(credentials=creds)  # type: ignore[no-untyped-call]


def changelog_writer_for(
    config: Config, client: bigquery.Client | RestClient, write_client: Any = None
) -> WriterFactory:
    """``layout -> Writer`` for the changelog, per ``[target] writer``; ``client`` is the full
    client or the light one (insertAll only)."""
    if config.target.writer == "insert_all":
        return insert_all_writer_for(config, client)
    return storage_write_writer_for(config, client.project, write_client)


def insert_all_writer_for(config: Config, client: bigquery.Client | RestClient) -> WriterFactory:
    """``layout -> Writer``: the changelog through ``insertAll`` over ``client``."""
    from ddb2bq.bigquery.insert_all import InsertAllWriter  # noqa: PLC0415

    refs = TableRefs.from_config(config, client.project)
    inserter: InsertClient = client

    def insert_all(layout: TableLayout) -> Writer:
        return InsertAllWriter(inserter, refs.changes.api, layout.changelog_columns())

    return insert_all


def storage_write_writer_for(
    config: Config, project: str, write_client: Any = None
) -> WriterFactory:
    """``layout -> Writer``: the changelog through Storage Write (``write_client``, default one
    for ``config``); ``project`` is the default project of the table names."""
    from ddb2bq.bigquery.storage_write import StorageWriteWriter  # noqa: PLC0415

    write_client = write_client or bigquery_write_client(config)
    path = TableRefs.from_config(config, project).changes.path

    def storage_write(layout: TableLayout) -> Writer:
        return StorageWriteWriter(write_client, path, layout.changelog_columns())

    return storage_write


def cdc_writer_for(
    config: Config, client: bigquery.Client | RestClient, write_client: Any = None
) -> WriterFactory:
    """``layout -> Writer`` of the ``cdc`` mirror's UPSERT/DELETE rows (Storage Write); with
    entities, of every mirror of the table (the entity's UPSERT, the others' DELETE)."""
    from ddb2bq.bigquery.storage_write import EntityCdcWriter, StorageWriteWriter  # noqa: PLC0415

    refs = TableRefs.from_config(config, client.project)
    write_client = write_client or bigquery_write_client(config)
    path = refs.mirror.path

    def cdc(layout: TableLayout) -> Writer:
        keys = [c.name for c in layout.keys]
        if layout.has_entities:
            return EntityCdcWriter(write_client, mirrors_of(config, refs, layout), keys=keys)
        return StorageWriteWriter(write_client, path, layout.mirror_columns(), cdc=True, keys=keys)

    return cdc
