"""A changelog made before the lean row, against moto and local-bigquery: the new package keeps
writing the rows that table can hold, ``ddb2bq init`` gives it ``item_types``, rows of both
formats then sit side by side, and every reader (verify, replay of a dead letter written before)
reads both."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from ddb2bq.bigquery.tables import TableRefs, schema_field
from ddb2bq.cli import main
from ddb2bq.config import load_config
from ddb2bq.schema import TableLayout, build_layout
from tests.integration.config_support import write_config
from tests.integration.dynamodb_support import create_source_table

KEYS = (("pk", "S"), ("sk", "N"))
N38 = "12345678901234567890123456789012345678"


def item(n: int, note: str = "first") -> dict[str, Any]:
    """An item of every type, numbers plain JSON cannot hold included."""
    return {
        "pk": {"S": f"k{n}"},
        "sk": {"N": str(n)},
        "note": {"S": note},
        "n38": {"N": N38},
        "tiny": {"N": "1E-130"},
        "b": {"B": bytes([n % 256, 0, 255])},
        "yes": {"BOOL": n % 2 == 0},
        "nothing": {"NULL": True},
        "ss": {"SS": ["a", str(n)]},
        "ns": {"NS": ["2.5", N38]},
        "bs": {"BS": [b"\x00", bytes([1, n % 256])]},
        "l": {"L": [{"B": b"\x01"}, {"M": {"deep": {"NS": ["1"]}}}]},
        "m": {"M": {"x": {"N": "-0.5"}}},
    }


def earlier_changelog(client: bigquery.Client, config_path: str) -> None:
    """Re-create the changelog as ddb2bq made it before the lean row: DynamoDB JSON images
    beside ``item``, no ``item_types``."""
    config = load_config(config_path)
    refs = TableRefs.from_config(config, client.project)
    earlier = TableLayout(build_layout(list(KEYS)).keys, lean=False)
    client.delete_table(refs.changes.api)
    schema = [schema_field(c) for c in earlier.changelog_columns()]
    client.create_table(bigquery.Table(refs.changes.api, schema=schema))


def initialised(
    tmp_path: Path, dynamodb: Any, dataset: bigquery.Dataset, prefix: str
) -> tuple[str, str]:
    """A moto table and its replication's ddb2bq.toml (insertAll), after `ddb2bq init`."""
    table = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_source_table(dynamodb, table, KEYS)
    path = write_config(tmp_path / "ddb2bq.toml", table, dataset.dataset_id)
    assert main(["init", "--config", path]) == 0
    return table, path


def changelog(client: bigquery.Client, config_path: str) -> list[dict[str, Any]]:
    refs = TableRefs.from_config(load_config(config_path), client.project)
    rows = client.query(f"SELECT * FROM {refs.changes.sql} ORDER BY `seq`").result()
    return [dict(row.items()) for row in rows]


@pytest.mark.parametrize("writer", ["insert_all", "storage_write"])
def test_a_changelog_made_before_the_lean_row_is_upgraded_and_read_whole(
    writer: str,
    tmp_path: Path,
    dynamodb: Any,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    local_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a replication whose changelog was made by the earlier ddb2bq
    table, path = initialised(tmp_path, dynamodb, dataset, "formats")
    text = Path(path).read_text().replace('writer = "insert_all"', f'writer = "{writer}"')
    Path(path).write_text(text)
    earlier_changelog(bq_client, path)
    # WHEN changes are replicated before `ddb2bq init` runs again
    for n in range(6):
        dynamodb.put_item(TableName=table, Item=item(n))
    assert main(["run", "--config", path, "--until-caught-up"]) == 0
    # THEN they are written as the table can hold them, and the log says why
    rows = changelog(bq_client, path)
    assert len(rows) == 6
    assert all(row["new_image"] is not None for row in rows)
    assert "item_types" not in rows[0]
    assert "was made before the lean row" in capsys.readouterr().err

    # WHEN init runs, and later changes (updates and a delete of earlier items) are replicated
    capsys.readouterr()
    assert main(["init", "--config", path]) == 0
    assert "added columns item_types" in capsys.readouterr().out
    for n in (1, 2):
        dynamodb.put_item(TableName=table, Item=item(n, note="updated"))
    dynamodb.put_item(TableName=table, Item=item(10))
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "k3"}, "sk": {"N": "3"}})
    assert main(["run", "--config", path, "--until-caught-up"]) == 0
    # THEN the new rows are lean: the item once, with its types, and no DynamoDB JSON
    rows = changelog(bq_client, path)
    lean = [row for row in rows if row["new_image"] is None and row["op"] != "REMOVE"]
    assert len(lean) == 3
    assert all(row["item_types"] is not None for row in lean)
    types = lean[0]["item_types"]
    types = json.loads(types) if isinstance(types, str) else types
    assert types == {
        "n38": "N", "b": "B", "ss": "SS", "ns": "NS", "bs": "BS", "l": {"0": "B", "1": {"deep": "NS"}},
    }  # fmt: skip
    # AND verify, which rebuilds each mirror item from its changelog row, finds the table and
    # the mirror equal over rows of both formats
    capsys.readouterr()
    assert main(["verify", "--config", path, "--recheck-after", "0"]) == 0
    out = capsys.readouterr().out
    assert "6 items in the table" in out
    assert "6 equal, 0 missing, 0 extra, 0 different." in out


def test_a_dead_letter_written_before_the_lean_row_replays_into_a_lean_changelog(
    tmp_path: Path,
    dynamodb: Any,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    local_env: dict[str, str],
) -> None:
    # GIVEN a lean changelog and a dead-letter file as the earlier ddb2bq wrote it
    table, path = initialised(tmp_path, dynamodb, dataset, "letters")
    letters = tmp_path / "dead-letters" / table  # the earlier name: <table>/<day>.jsonl
    letters.mkdir(parents=True)
    record = {
        "eventID": "old-1",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "ApproximateCreationDateTime": 1714564800,
            "Keys": {"pk": {"S": "k1"}, "sk": {"N": "1"}},
            "NewImage": {"pk": {"S": "k1"}, "sk": {"N": "1"}, "ss": {"SS": ["a"]}, "n": {"N": N38}},
            "SequenceNumber": "111",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    letter = {
        "table": table,
        "error": "BigQuery rejected the row (earlier ddb2bq)",
        "failed_at": "2024-05-01T12:00:00.000000Z",
        "failed_at_us": 1714564800000000,
        "source": "lambda",
        "event_id": "old-1",
        "keys": record["dynamodb"]["Keys"],  # type: ignore[index]
        "seq": None,
        "record": record,
    }
    (letters / "2024-05-01.jsonl").write_text(json.dumps(letter) + "\n")
    # WHEN it is replayed
    assert main(["replay-dead-letters", "--config", path]) == 0
    # THEN the change lands as a lean row that rebuilds the item exactly
    (row,) = changelog(bq_client, path)
    item = row["item"] if isinstance(row["item"], dict) else json.loads(row["item"])
    types = (
        row["item_types"] if isinstance(row["item_types"], dict) else json.loads(row["item_types"])
    )
    assert item == {"pk": "k1", "sk": 1, "ss": ["a"], "n": N38}
    assert types == {"ss": "SS", "n": "N"}
    assert "new_image" not in row


def test_old_images_are_stored_lean_once_init_has_added_their_columns(
    tmp_path: Path,
    dynamodb: Any,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    local_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a replication set up without old images, which then turns them on
    table, path = initialised(tmp_path, dynamodb, dataset, "old_images")
    config = Path(path)
    config.write_text(config.read_text().replace("[target]\n", "[target]\nold_images = true\n"))
    dynamodb.put_item(TableName=table, Item=item(1))
    dynamodb.put_item(TableName=table, Item=item(1, note="updated"))
    capsys.readouterr()
    # WHEN the runner starts before `ddb2bq init`  THEN it refuses, naming the fix, writing nothing
    assert main(["run", "--config", path, "--until-caught-up"]) == 2
    assert "run `ddb2bq init`" in capsys.readouterr().err
    assert changelog(bq_client, path) == []
    # WHEN init runs and the runner again
    assert main(["init", "--config", path]) == 0
    assert "added columns old_item, old_item_types" in capsys.readouterr().out
    assert main(["run", "--config", path, "--until-caught-up"]) == 0
    # THEN the MODIFY holds the image before it, lean: the item and its types
    rows = changelog(bq_client, path)
    assert [row["op"] for row in rows] == ["INSERT", "MODIFY"]
    assert rows[0]["old_item"] is None
    old = rows[1]["old_item"]
    old = json.loads(old) if isinstance(old, str) else old
    assert old["note"] == "first"
    assert old["n38"] == N38
    types = rows[1]["old_item_types"]
    assert (json.loads(types) if isinstance(types, str) else types)["ss"] == "SS"
