"""``ddb2bq start``: on a live table whose stream was off, and after a gap with a new generation,
against moto, the stream double (for the gap) and local-bigquery."""

from __future__ import annotations

import io
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.backfill.build import backfill_from_config
from ddb2bq.backfill.run import BackfillOptions
from ddb2bq.backfill.stitch import Parts, StartOptions, start
from ddb2bq.cli import main
from ddb2bq.config import load_config
from ddb2bq.runner.build import runner_from_config
from ddb2bq.runner.signals import StopFlag
from tests.doubles.streams import StreamDouble
from tests.integration.config_support import write_config as write_toml
from tests.integration.dynamodb_support import create_source_table
from tests.integration.test_backfill import assert_mirror_is_the_table, item

KEY = [("pk", "S"), ("sk", "N")]


def write_config(path: Path, table: str, dataset: str, mirror: str) -> str:
    runner = {"lease_seconds": "5", "on_gap": '"backfill"'}
    return write_toml(path, table, dataset, mirror=mirror, runner=runner)


def churn(dynamodb: Any, table: str, count: int, seed: int) -> None:
    """Inserts, updates and deletes of items 0..499, as an application would make them."""
    rng = random.Random(seed)
    for _ in range(count):
        n = rng.randrange(500)
        key = {"pk": {"S": f"item#{n:06d}"}, "sk": {"N": str(n % 7)}}
        roll = rng.random()
        if roll < 0.2:
            dynamodb.delete_item(TableName=table, Key=key)
        elif roll < 0.5:
            dynamodb.update_item(
                TableName=table, Key=key, UpdateExpression="SET s = :s",
                ExpressionAttributeValues={":s": {"S": f"updated {rng.random()}"}},
            )  # fmt: skip
        else:
            dynamodb.put_item(TableName=table, Item=item(n))


def test_start_on_a_live_table_whose_stream_was_off_converges(
    tmp_path: Path,
    dynamodb: Any,
    dataset: bigquery.Dataset,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    local_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a table of 800 items, its stream off, and a writer changing items all along
    table = f"start_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, table, KEY, stream=False)
    for n in range(800):
        dynamodb.put_item(TableName=table, Item=item(n))
    path = write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id, "merge")
    monkeypatch.chdir(tmp_path)
    writer = threading.Thread(target=churn, args=(dynamodb, table, 600, 1), daemon=True)
    writer.start()
    # WHEN `ddb2bq start --until-caught-up` runs while the writer writes
    code = main(["start", "--config", path, "--until-caught-up"])
    writer.join()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Turned on the stream" in out
    # AND, the writer done, a last catching up
    assert main(["run", "--config", path, "--until-caught-up"]) == 0
    # THEN `ddb2bq verify` finds no difference, and the test's own comparison agrees
    capsys.readouterr()
    assert main(["verify", "--config", path, "--segments", "1", "--recheck-after", "0"]) == 0
    assert " 0 missing, 0 extra, 0 different." in capsys.readouterr().out
    assert_mirror_is_the_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry)


class StreamOf:
    """moto's DynamoDB, but the table's stream is the stream double."""

    def __init__(self, inner: Any, stream: StreamDouble) -> None:
        self._inner = inner
        self._stream = stream

    def describe_table(self, TableName: str) -> Any:
        answer = self._inner.describe_table(TableName=TableName)
        answer["Table"]["StreamSpecification"] = {
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES",
        }  # fmt: skip
        answer["Table"]["LatestStreamArn"] = self._stream.stream_arn
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def parts_for(config: Any, dynamodb: Any, stream: StreamDouble, client: Any) -> Parts:
    wrapped = StreamOf(dynamodb, stream)
    options = BackfillOptions(workers=1)

    def make_runner(config: Any, **kwargs: Any) -> Any:
        return runner_from_config(config, dynamodb=wrapped, streams=stream, **kwargs)

    def make_backfill(config: Any, _: Any, **kwargs: Any) -> Any:
        return backfill_from_config(config, options, dynamodb=dynamodb, client=client, **kwargs)

    return Parts(wrapped, client, make_runner, make_backfill, lambda b: b.scan())


def put(dynamodb: Any, stream: StreamDouble, table: str, n: int, text: str) -> None:
    image = {**item(n), "s": {"S": text}}
    dynamodb.put_item(TableName=table, Item=image)
    stream.put({"pk": image["pk"], "sk": image["sk"]}, image)


def remove(dynamodb: Any, stream: StreamDouble, table: str, n: int) -> None:
    key = {"pk": {"S": f"item#{n:06d}"}, "sk": {"N": str(n % 7)}}
    dynamodb.delete_item(TableName=table, Key=key)
    stream.put(key, None, item(n))


@pytest.mark.parametrize("mirror", ["view", "merge"])
def test_a_new_generation_after_a_gap_leaves_no_zombie(
    mirror: str,
    tmp_path: Path,
    dynamodb: Any,
    dataset: bigquery.Dataset,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    local_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a replication of items 0..9 in generation 0 (stream on the double, table on moto)
    table = f"gap_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, table, KEY, stream=False)
    stream = StreamDouble(table=table, key_schema=[("pk", "HASH"), ("sk", "RANGE")])
    stream.clock = time.time()
    for n in range(10):
        put(dynamodb, stream, table, n, "first")
    config = load_config(write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id, mirror))
    monkeypatch.chdir(tmp_path)
    parts = parts_for(config, dynamodb, stream, bq_client)
    out = io.StringIO()
    assert start(config, StartOptions(until_caught_up=True), parts, out=out, stop=StopFlag()) == 0
    # WHEN the replication is down 30 hours, while item 3 is deleted and item 5 changed, and
    # the stream trims those changes before they are read
    remove(dynamodb, stream, table, 3)
    put(dynamodb, stream, table, 5, "changed during the gap")
    stream.advance(30 * 3600)
    stream.trim_older_than()
    # AND a new generation is taken (what [runner] on_gap = "backfill" does)
    options = StartOptions(until_caught_up=True, new_generation=True)
    assert start(config, options, parts, out=out, stop=StopFlag()) == 0, out.getvalue()
    # THEN the deleted item is gone from the mirror, the changed one is current
    count = assert_mirror_is_the_table(dynamodb, bq_client, dataset.dataset_id, table, bq_retry)
    assert count == 9
    # AND the changelog keeps both generations: the old rows of item 3 are still there
    sql = (
        f"SELECT SUBSTR(seq, 1, 16) AS g, COUNT(*) AS n FROM `{dataset.dataset_id}.{table}_changes`"
        " WHERE pk = 'item#000003' GROUP BY g ORDER BY g"
    )
    rows = [dict(r) for r in bq_client.query(sql, retry=bq_retry).result(retry=bq_retry)]
    assert [r["g"] for r in rows] == ["0" * 16]
    assert "Generation 1" in out.getvalue()
