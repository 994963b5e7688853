"""The runner (and its status report) built from the configuration: the stream's ARN from
DescribeTable, the state store of ``[runner] checkpoints``, the generation, the dead letters and
the pipeline from the one composition root, and the ``merge`` mirror's MERGE.

Every client can be passed in (tests pass moto's and the stream double); otherwise boto3's for
``[source]`` and BigQuery's for ``[target]``. AWS and BigQuery errors met while building come out
as sentences that name the table, endpoint or setting.

>>> runner = runner_from_config(load_config("ddb2bq.toml"))  # doctest: +SKIP
>>> runner.run(until_caught_up=True)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ddb2bq.config import Config
from ddb2bq.dynamodb.connect import aws_errors, dynamodb_client, streams_client
from ddb2bq.dynamodb.tables import stream_arn_of
from ddb2bq.exceptions import ConfigError, RetryableError
from ddb2bq.pipeline import Pipeline
from ddb2bq.runner.loop import SOURCE, Reporter, Runner, RunnerSettings
from ddb2bq.runner.signals import StopFlag
from ddb2bq.runner.status import Status, read_status
from ddb2bq.state import StateStore
from ddb2bq.state.factory import generation_of, state_store_from_setting


def runner_from_config(
    config: Config,
    *,
    report: Reporter | None = None,
    config_path: str = "FILE",
    dynamodb: Any = None,
    streams: Any = None,
    store: StateStore | None = None,
    pipeline: Pipeline | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    owner: str | None = None,
    stop: StopFlag | None = None,
) -> Runner:
    """A :class:`~ddb2bq.runner.loop.Runner` for ``config``'s table."""
    table, stream_arn, dynamodb = _stream_of(config, dynamodb)
    store = store or state_store_from_setting(
        config.runner.checkpoints, dynamodb_client_factory=lambda: dynamodb
    )
    with aws_errors(config, "reading the runner's state"):
        generation = generation_of(config, store=store)
        generation.current()
    return Runner(
        table=table,
        stream_arn=stream_arn,
        streams=streams or streams_client(config),
        pipeline=pipeline or _pipeline(config),
        store=store,
        generation=generation,
        settings=settings_of(config),
        clock=clock,
        sleep=sleep,
        owner=owner,
        merge=_merge(config) if config.target.mirror == "merge" else None,
        report=report,
        stop=stop,
        config_path=config_path,
    )


def status_from_config(
    config: Config, *, now: float, dynamodb: Any = None, streams: Any = None
) -> Status:
    """The ``ddb2bq status`` report of ``config``'s table."""
    table, stream_arn, dynamodb = _stream_of(config, dynamodb)
    store = state_store_from_setting(
        config.runner.checkpoints, dynamodb_client_factory=lambda: dynamodb
    )
    with aws_errors(config, "reading the stream's shards"):
        generation = generation_of(config, store=store).current()
        return read_status(
            table=table,
            stream_arn=stream_arn,
            streams=streams or streams_client(config),
            store=store,
            generation=generation,
            now=now,
        )


def settings_of(config: Config) -> RunnerSettings:
    """The loop's settings from ``[runner]``."""
    runner = config.runner
    return RunnerSettings(
        page_size=runner.page_size,
        lease_seconds=runner.lease_seconds,
        merge_interval=runner.merge_interval,
        report_interval=runner.report_interval,
    )


def _stream_of(config: Config, dynamodb: Any) -> tuple[str, str, Any]:
    table = config.source.table
    if not table:
        raise ConfigError("Set [source] table: the DynamoDB table whose stream to replicate.")
    dynamodb = dynamodb or dynamodb_client(config)
    with aws_errors(config, "describing the table"):
        stream_arn = stream_arn_of(dynamodb, table)
    if stream_arn is None:
        raise ConfigError(
            f"The DynamoDB table {table!r} has no stream: turn one on with "
            "`ddb2bq enable-stream --config FILE` (NEW_AND_OLD_IMAGES), then run again."
        )
    return table, stream_arn, dynamodb


def _pipeline(config: Config) -> Pipeline:
    from ddb2bq.bigquery.factory import pipeline_from_config  # noqa: PLC0415 (heavy)
    from ddb2bq.dead_letters.stores import dead_letters_from_config  # noqa: PLC0415

    dead_letters = dead_letters_from_config(
        config.dead_letters, region=config.source.region, endpoint_url=config.source.endpoint_url
    )
    with bigquery_errors(config):
        return pipeline_from_config(config, dead_letters, source=SOURCE)


def _merge(config: Config) -> Callable[[], object]:
    """The ``merge`` mirror's MERGE, with a full client made at its first run."""
    client: list[Any] = []

    def merge() -> object:
        from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415 (heavy)
        from ddb2bq.bigquery.tables import merge_mirror  # noqa: PLC0415

        with bigquery_errors(config):
            if not client:
                client.append(bigquery_client(config))
            return merge_mirror(client[0], config)

    return merge


@contextmanager
def bigquery_errors(config: Config) -> Iterator[None]:
    """A BigQuery endpoint that does not answer, as a retryable error naming it."""
    try:
        yield
    except (ConnectionError, TimeoutError) as exc:
        endpoint = config.target.endpoint or "https://bigquery.googleapis.com"
        raise RetryableError(
            f"BigQuery cannot be reached at {endpoint} (project {config.target.project!r}): "
            f"{exc}. Check [target] endpoint and the network, then try again."
        ) from exc
