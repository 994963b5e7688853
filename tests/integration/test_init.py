"""``ddb2bq init`` and ``ddb2bq merge`` from the command line, against moto and the emulator:
the tables of each mirror mode are created as DESIGN.md draws them, a second run changes
nothing, and a mismatch is refused with a message that says what to do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.bigquery.sql import TableRef
from ddb2bq.cli import main
from tests.integration.dynamodb_support import create_source_table


@pytest.fixture
def source_table(dynamodb: Any) -> str:
    """A DynamoDB table keyed by customer (S) and order (N), with a stream."""
    name = f"orders_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, name, [("customer", "S"), ("order", "N")], stream=False)
    return name


@pytest.fixture
def write_config(tmp_path: Path, local_env: dict[str, str]) -> Any:
    """Writes a ddb2bq.toml; the servers' endpoints come from the environment (local_env)."""

    def write(table: str, dataset: str, mirror: str = "view", **extra: str) -> str:
        lines = [
            "[source]",
            f'table = "{table}"',
            "[target]",
            f'dataset = "{dataset}"',
            f'mirror = "{mirror}"',
            *(f'{key} = "{value}"' for key, value in extra.items()),
            "[columns]",
            'promote = ["status"]',
            'types = { status = "STRING" }',
        ]
        path = tmp_path / f"{mirror}.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def new_dataset(bq_client: bigquery.Client, bq_retry: Retry) -> Iterator[str]:
    """A dataset name nobody created yet; deleted afterwards if init created it."""
    name = f"init_{uuid.uuid4().hex[:12]}"
    yield name
    bq_client.delete_dataset(name, delete_contents=True, not_found_ok=True, retry=bq_retry)


@pytest.mark.parametrize("mirror", ["view", "merge", "cdc"])
def test_init_creates_the_tables_of_each_mode_once(
    mirror: str,
    source_table: str,
    new_dataset: str,
    write_config: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a DynamoDB table and a configuration naming a dataset that does not exist yet
    path = write_config(source_table, new_dataset, mirror)
    # WHEN `ddb2bq init` runs twice
    first = main(["init", "--config", path])
    first_out = capsys.readouterr().out
    second = main(["init", "--config", path])
    second_out = capsys.readouterr().out
    # THEN the first creates the dataset and both tables, the second only keeps them
    assert (first, second) == (0, 0)
    assert f"created dataset {bq_client.project}.{new_dataset} in US" in first_out
    assert "created" not in second_out.replace("replaced view", "")
    changes = bq_client.get_table(f"{new_dataset}.{source_table}_changes", retry=bq_retry)
    mirror_table = bq_client.get_table(f"{new_dataset}.{source_table}", retry=bq_retry)
    # AND the changelog is partitioned by changed_at, clustered by the keys, keys typed
    assert changes.time_partitioning.field == "changed_at"
    assert changes.clustering_fields == ["customer", "order"]
    fields = {f.name: (f.field_type, f.mode) for f in changes.schema}
    assert fields["customer"] == ("STRING", "NULLABLE")
    assert fields["order"] == ("BIGNUMERIC", "NULLABLE")
    assert fields["changed_at"] == ("TIMESTAMP", "REQUIRED")
    assert fields["status"] == ("STRING", "NULLABLE")
    assert [f.description for f in changes.schema if f.name == "status"] == [
        "DynamoDB attribute: status"
    ]
    # AND the mirror is what its mode asks for
    names = [f.name for f in mirror_table.schema]
    assert names == ["customer", "order", "status", "item", "_seq", "_changed_at"]
    if mirror == "view":
        assert mirror_table.table_type == "VIEW"
        assert "QUALIFY ROW_NUMBER()" in mirror_table.view_query
    else:
        assert mirror_table.table_type == "TABLE"
        assert mirror_table.clustering_fields == ["customer", "order"]
    if mirror == "cdc":
        primary_key = mirror_table.table_constraints.primary_key
        assert primary_key is not None
        assert primary_key.columns == ["customer", "order"]


def test_init_refuses_a_mirror_of_another_kind(
    source_table: str,
    dataset: bigquery.Dataset,
    write_config: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN tables created for the view mode
    assert main(["init", "--config", write_config(source_table, dataset.dataset_id)]) == 0
    capsys.readouterr()
    # WHEN init runs for the merge mode THEN it refuses, naming the table and what to do
    merge_config = write_config(source_table, dataset.dataset_id, "merge")
    assert main(["init", "--config", merge_config]) == 2
    error = capsys.readouterr().err
    assert f"{source_table} exists as a VIEW" in error
    assert "drop it" in error


def test_init_names_a_missing_dynamodb_table(
    dataset: bigquery.Dataset, write_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--config", write_config("no_such_table", dataset.dataset_id)]) == 2
    assert "'no_such_table' does not exist" in capsys.readouterr().err


def test_init_refuses_a_dataset_in_another_location(
    source_table: str,
    dataset: bigquery.Dataset,
    write_config: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(source_table, dataset.dataset_id, location="EU")
    assert main(["init", "--config", path]) == 2
    assert "set [target] location" in capsys.readouterr().err


def test_merge_command_prints_what_it_did_and_a_rerun_changes_nothing(
    source_table: str,
    dataset: bigquery.Dataset,
    write_config: Any,
    bq_client: bigquery.Client,
    bq_retry: Retry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN merge-mode tables and two changes in the changelog
    path = write_config(source_table, dataset.dataset_id, "merge")
    assert main(["init", "--config", path]) == 0
    changes = TableRef(bq_client.project, dataset.dataset_id, f"{source_table}_changes")
    rows = [
        {"event_id": "e1", "op": "INSERT", "seq": "0/0/0/1", "changed_at": "2030-01-01T00:00:00Z",
         "ingested_at": "2030-01-01T00:00:01Z", "customer": "c1", "order": "1",
         "item": '{"customer":"c1","order":1}'},
        {"event_id": "e2", "op": "INSERT", "seq": "0/0/0/2", "changed_at": "2030-01-01T00:00:00Z",
         "ingested_at": "2030-01-01T00:00:01Z", "customer": "c2", "order": "2",
         "item": '{"customer":"c2","order":2}'},
    ]  # fmt: skip
    assert bq_client.insert_rows_json(changes.api, rows, retry=bq_retry) == []
    capsys.readouterr()
    # WHEN `ddb2bq merge` runs twice
    assert main(["merge", "--config", path]) == 0
    first = capsys.readouterr().out
    assert main(["merge", "--config", path, "--lookback-hours", "1"]) == 0
    second = capsys.readouterr().out
    # THEN the first inserts both, the second changes nothing
    assert first.strip().endswith(": 2 inserted, 0 updated, 0 deleted (full)")
    assert second.strip().endswith(": 0 inserted, 0 updated, 0 deleted (incremental)")


def test_merge_command_refuses_other_modes(
    dataset: bigquery.Dataset, write_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["merge", "--config", write_config("orders", dataset.dataset_id, "view")]) == 2
    assert "keeps a 'merge' mirror" in capsys.readouterr().err
