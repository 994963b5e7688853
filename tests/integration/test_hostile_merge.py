"""Hostile input met by ``ddb2bq merge`` and ``ddb2bq init``, on moto and the emulator.

A look-back that skips rows (negative, zero, ``nan``, ``inf``, ``1e12``) is refused before
anything runs and the watermark stays where it was; a merge never moves the watermark past rows
it did not read (a merger whose clock runs ahead, a row that lands after the run began, a stored
watermark that cannot be right). DynamoDB table names BigQuery refuses (``orders.v2``) get the
naming rule's BigQuery name, for every table of the replication, and do not collide with
``orders-v2`` or ``orders_v2`` beside them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.bigquery.factory import pipeline_from_config
from ddb2bq.bigquery.mirror import WATERMARK_LABEL, run_merge
from ddb2bq.bigquery.tables import TableRefs, load_layout
from ddb2bq.cli import main
from ddb2bq.config import load_config
from ddb2bq.exceptions import ConfigError
from ddb2bq.records import now_micros
from ddb2bq.schema import bigquery_table_name
from tests.doubles.dead_letters import ListDeadLetters
from tests.integration.config_support import write_config
from tests.integration.dynamodb_support import create_source_table
from tests.integration.mirror_support import (
    Replication,
    bigquery_pipeline,
    changes,
    config,
    replicate,
    stream_record,
    writer_for,
)

HOUR_US = 3600 * 1_000_000


def watermark(replication: Replication) -> str | None:
    return replication.table().labels.get(WATERMARK_LABEL)


def mirror_keys(replication: Replication) -> list[str]:
    return [r["pk"] for r in replication.rows()]


@pytest.fixture
def merged(
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> Replication:
    """A merge mirror with item ``a`` merged: its watermark label is set."""
    settings = config(dataset, mirror="merge", promote=["status"], types={"status": "STRING"})
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    replication.write([stream_record("a", "INSERT", 1, status={"S": "new"})])
    replication.merge()
    assert watermark(replication) is not None
    return replication


# --- class 4: the look-back over the command line --------------------------------------------


@pytest.fixture
def merge_cli(
    tmp_path: Path, dynamodb: Any, local_env: dict[str, str], dataset: bigquery.Dataset
) -> str:
    """`ddb2bq init` of a merge mirror over a DynamoDB table, then one `ddb2bq merge`: the
    configuration file's path."""
    table = f"orders_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, table, [("pk", "S")], stream=False)
    path = write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id, mirror="merge")
    assert main(["init", "--config", path]) == 0
    assert main(["merge", "--config", path]) == 0
    return path


@pytest.mark.parametrize("hours", ["-48", "nan", "inf", "1e12", "0", "-inf"])
def test_a_lookback_that_would_skip_changes_is_refused_and_the_watermark_stays(
    hours: str,
    merge_cli: str,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a merged mirror with a watermark, and a change written since
    settings = load_config(merge_cli)
    refs = TableRefs.from_config(settings, bq_client.project)
    before = bq_client.get_table(refs.mirror.api, retry=bq_retry).labels[WATERMARK_LABEL]
    pipeline = pipeline_from_config(settings, ListDeadLetters())
    result = pipeline.process(changes([stream_record("late", "INSERT", 7)]), ordered=True)
    assert result.count("written") == 1
    capsys.readouterr()
    # WHEN `ddb2bq merge --lookback-hours` is given a value that reaches nowhere, or overflows
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", "--config", merge_cli, f"--lookback-hours={hours}"])
    # THEN it exits 2 naming the option and the value, without a traceback
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"argument --lookback-hours: '{hours}' is not a" in err
    assert "Traceback" not in err
    # AND the watermark did not move, so the next merge still meets the change
    after = bq_client.get_table(refs.mirror.api, retry=bq_retry).labels[WATERMARK_LABEL]
    assert after == before
    assert main(["merge", "--config", merge_cli]) == 0
    assert (
        capsys.readouterr().out.strip().endswith(": 1 inserted, 0 updated, 0 deleted (incremental)")
    )


@pytest.mark.parametrize(
    "window",
    [
        {"lookback": timedelta(hours=-48)},
        {"lookback": timedelta(0)},
        {"overlap": timedelta(minutes=-30)},
        {"lookback": timedelta(minutes=5)},  # shorter than the 30-minute overlap
    ],
)
def test_the_library_refuses_a_window_that_would_skip_rows(
    window: dict[str, timedelta], merged: Replication
) -> None:
    # GIVEN a merged mirror and a change written since
    before = watermark(merged)
    merged.write([stream_record("b", "INSERT", 2, status={"S": "new"})])
    layout = load_layout(merged.client, merged.refs)
    # WHEN run_merge is called with a window that does not reach behind the watermark
    # THEN it is a ConfigError, and the watermark stays
    with pytest.raises(ConfigError, match="The MERGE"):
        run_merge(merged.client, layout, merged.refs.changes, merged.refs.mirror, **window)
    assert watermark(merged) == before
    assert merged.merge().inserted == 1


# --- class 4: the watermark never passes rows the MERGE did not read -------------------------


def test_a_merger_whose_clock_runs_ahead_does_not_skip_what_lands_next(merged: Replication) -> None:
    # GIVEN a merger whose clock is two hours ahead (BigQuery's and the writers' are right)
    layout = load_layout(merged.client, merged.refs)
    ahead = run_merge(
        merged.client,
        layout,
        merged.refs.changes,
        merged.refs.mirror,
        clock=lambda: now_micros() + 2 * HOUR_US,
        generations=merged.refs.generations,
    )
    # THEN the watermark it stores is no later than BigQuery's clock at the MERGE
    assert ahead.watermark_us <= now_micros() + 60_000_000
    assert watermark(merged) == str(ahead.watermark_us)
    # WHEN a change lands after that run  THEN the next run still merges it
    merged.write([stream_record("b", "INSERT", 2, status={"S": "new"})])
    assert merged.merge().inserted == 1
    assert mirror_keys(merged) == ["a", "b"]


def test_a_row_stamped_before_a_run_but_landing_after_it_is_merged_next(
    merged: Replication,
) -> None:
    # GIVEN a merge run, and then a row that a slow writer stamped ten minutes before the run
    # started (rows are stamped before they land)
    run = merged.merge()
    stamped = run.watermark_us - 10 * 60 * 1_000_000
    slow = bigquery_pipeline(
        merged.config,
        merged.sink.layout,
        merged.client,
        writer_for("insert_all", merged.config, merged.client, None),  # type: ignore[arg-type]
        ListDeadLetters(),
        clock=lambda: stamped,
    )
    written = slow.process(changes([stream_record("slow", "INSERT", 3)]), ordered=True)
    assert written.count("written") == 1
    # WHEN the next run comes  THEN the row is in the mirror: the run's read window covers
    # everything the one before could not see
    assert merged.merge().inserted == 1
    assert mirror_keys(merged) == ["a", "slow"]


@pytest.mark.parametrize("label", ["99999999999999999999", "future", "²"])
def test_a_stored_watermark_that_cannot_be_right_gives_a_full_merge(
    label: str, merged: Replication
) -> None:
    # GIVEN a watermark label from the future (beyond BigQuery's clock), or not a number
    stored = str(now_micros() + 24 * HOUR_US) if label == "future" else label
    table = merged.table()
    table.labels = {**table.labels, WATERMARK_LABEL: stored}
    merged.client.update_table(table, ["labels"], retry=merged.retry)
    # AND a change dated five days ago, which only a full merge reads
    merged.write([stream_record("old", "INSERT", 2, seconds_ago=5 * 86400)])
    # WHEN the mirror is merged  THEN the run is full and merges it; the label is a real time
    result = merged.merge()
    assert (result.full, result.inserted) == (True, 1)
    assert int(watermark(merged) or "0") == result.watermark_us <= now_micros()


# --- class 9: DynamoDB table names BigQuery refuses -------------------------------------------


@pytest.fixture
def separator_tables(dynamodb: Any) -> Iterator[list[str]]:
    """Three DynamoDB tables that differ only in their separator (``orders.v2``,
    ``orders-v2``, ``orders_v2``, made unique in the session); deleted afterwards."""
    stem = f"orders{uuid.uuid4().hex[:6]}"
    names = [f"{stem}.v2", f"{stem}-v2", f"{stem}_v2"]
    for name in names:
        create_source_table(dynamodb, name, [("pk", "S")], stream=False)
    yield names
    for name in names:
        dynamodb.delete_table(TableName=name)


@pytest.mark.parametrize("writer", ["insert_all", "storage_write"])
def test_tables_named_orders_dot_v2_dash_v2_and_underscore_v2_replicate_side_by_side(
    writer: str,
    separator_tables: list[str],
    tmp_path: Path,
    local_env: dict[str, str],
    dataset: bigquery.Dataset,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN one configuration per table, all into the same dataset, merge mirrors
    paths = {}
    for index, name in enumerate(separator_tables):
        folder = tmp_path / str(index)
        folder.mkdir()
        path = Path(write_config(folder / "ddb2bq.toml", name, dataset.dataset_id, mirror="merge"))
        text = path.read_text(encoding="utf-8").replace('"insert_all"', f'"{writer}"')
        path.write_text(text, encoding="utf-8")
        paths[name] = str(path)
    # WHEN `ddb2bq init` runs for each
    for path in paths.values():
        assert main(["init", "--config", path]) == 0
    out = capsys.readouterr()
    # THEN each has its own changelog, mirror and generations table, named by the rule
    assert "Traceback" not in out.err
    assert "created changelog" in out.out
    tables = {t.table_id for t in bq_client.list_tables(dataset.dataset_id, retry=bq_retry)}
    dotted, dashed, underscored = separator_tables
    bases = [bigquery_table_name(dotted), dashed, underscored]
    assert re.fullmatch(rf"{re.escape(underscored)}_[0-9a-f]{{8}}", bases[0])
    assert tables == {f"{b}{s}" for b in bases for s in ("", "_changes", "_generations")}
    # WHEN each pipeline, built as every runtime builds it, writes one item of its own
    for name, path in paths.items():
        settings = load_config(path)
        pipeline = pipeline_from_config(settings, ListDeadLetters())
        record = stream_record(f"from {name}", "INSERT", 1, status={"S": name})
        assert pipeline.process(changes([record]), ordered=True).count("written") == 1
        assert main(["merge", "--config", path]) == 0
    # THEN each mirror holds its own item only: the names did not collide
    for name, base in zip(separator_tables, bases, strict=True):
        ref = f"{bq_client.project}.{dataset.dataset_id}.{base}"
        job = bq_client.query(f"SELECT pk FROM `{ref}`", retry=bq_retry, job_retry=bq_retry)
        assert [r["pk"] for r in job.result(retry=bq_retry)] == [f"from {name}"]


@pytest.mark.parametrize(
    ("first", "mirror", "role"),
    [("plain", "merge", "the changelog"), ("suffixed", "view", "the mirror")],
)
def test_a_table_named_like_anothers_changelog_is_refused_not_shared(
    first: str,
    mirror: str,
    role: str,
    dynamodb: Any,
    tmp_path: Path,
    local_env: dict[str, str],
    dataset: bigquery.Dataset,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN DynamoDB tables T and T_changes replicated into one dataset, one of them first
    plain = f"orders_{uuid.uuid4().hex[:6]}"
    names = {"plain": plain, "suffixed": f"{plain}_changes"}
    paths = {}
    for key, name in names.items():
        create_source_table(dynamodb, name, [("pk", "S")], stream=False)
        (tmp_path / key).mkdir()
        paths[key] = write_config(tmp_path / key / "ddb2bq.toml", name, dataset.dataset_id,
                                  mirror=mirror)  # fmt: skip
    assert main(["init", "--config", paths[first]]) == 0
    capsys.readouterr()
    # WHEN the other one is initialised
    second = "suffixed" if first == "plain" else "plain"
    code = main(["init", "--config", paths[second]])
    # THEN it is refused with exit 2, naming the table and the fix, instead of sharing it
    err = capsys.readouterr().err
    assert code == 2
    assert f"{dataset.dataset_id}.{plain}_changes is {role} of another replication" in err
    assert "set [target] table" in err
    assert "Traceback" not in err
