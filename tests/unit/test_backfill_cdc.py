"""The backfill into a cdc mirror, at the request level (the emulator does not apply CDC): each
page goes through the pipeline, so the changelog rows and the mirror's UPSERTs are written
together; zombie keys after a new generation become REMOVE changes of the new snapshot's seq."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddb2bq.backfill.run import Backfill, BackfillOptions
from ddb2bq.bigquery.generations import zombie_remove
from ddb2bq.config import Config, SourceConfig, TargetConfig
from ddb2bq.pipeline import Pipeline
from ddb2bq.records import snapshot_seq
from ddb2bq.schema import build_layout
from ddb2bq.state import SqliteStateStore
from tests.doubles.dead_letters import ListDeadLetters
from tests.doubles.writers import FakeWriter

CONFIG = Config(
    source=SourceConfig(table="orders"),
    target=TargetConfig(project="p", dataset="d", mirror="cdc", writer="storage_write"),
)
LAYOUT = build_layout([("pk", "S"), ("n", "N")])


class PagedTable:
    """A DynamoDB client whose table holds ``count`` items, scanned ``page`` at a time."""

    def __init__(self, count: int, page: int) -> None:
        self._items = [
            {"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "v": {"S": "x"}} for i in range(count)
        ]
        self._page = page

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {"Table": {"ItemCount": len(self._items), "TableSizeBytes": 1000}}

    def scan(self, **request: Any) -> dict[str, Any]:
        start = int(request.get("ExclusiveStartKey", {}).get("n", {}).get("N", "-1")) + 1
        items = self._items[start : start + self._page]
        more = start + self._page < len(self._items)
        last = {"pk": items[-1]["pk"], "n": items[-1]["n"]} if more else None
        return {"Items": items, **({"LastEvaluatedKey": last} if last else {})}


def test_a_cdc_backfill_writes_changelog_rows_and_mirror_upserts_page_by_page(
    tmp_path: Path,
) -> None:
    # GIVEN a 25-item table, pages of 10, and a cdc pipeline (changelog and mirror writers)
    changelog, mirror = FakeWriter(), FakeWriter()
    pipeline = Pipeline(CONFIG, LAYOUT, lambda layout: changelog, ListDeadLetters(),
                        mirror_writer_for=lambda layout: mirror)  # fmt: skip
    store = SqliteStateStore(tmp_path / "state.sqlite")
    backfill = Backfill(
        table="orders", dynamodb=PagedTable(25, 10), pipeline=pipeline, loader_client=None,
        changes_table="p.d.orders_changes", store=store, generation=3,
        spool_dir=tmp_path / "spool", options=BackfillOptions(segments=1, page_limit=10),
    )  # fmt: skip
    # WHEN it runs
    report = backfill.scan()
    # THEN every item went to both writers as a SNAPSHOT of generation 3, in three requests
    assert report.complete
    assert (report.items, report.load_jobs) == (25, 0)
    assert [len(batch) for batch in mirror.batches] == [10, 10, 5]
    rows = [r for batch in mirror.batches for r in batch]
    assert {r.change.op for r in rows} == {"SNAPSHOT"}
    assert {r.change.seq for r in rows} == {snapshot_seq(3)}
    assert len(changelog.written) == 25
    # AND the segment is saved as done
    (progress,) = store.backfill_progress("orders", 3).values()
    assert progress.done


def test_a_zombie_becomes_a_remove_that_outranks_every_older_row() -> None:
    # GIVEN a cdc mirror row of generation 0 left after generation 1's snapshot completed
    change = zombie_remove(LAYOUT, {"pk": "gone", "n": 12}, 1, "orders", 5)
    # THEN it is a REMOVE of that key whose seq is generation 1's snapshot seq
    assert change.op == "REMOVE"
    assert change.keys == {"pk": {"S": "gone"}, "n": {"N": "12"}}
    assert change.seq == snapshot_seq(1) > "0000000000000000/ffffffffffffffff"
    # AND the pipeline writes it as a changelog row and a mirror row (a cdc DELETE)
    changelog, mirror = FakeWriter(), FakeWriter()
    pipeline = Pipeline(CONFIG, LAYOUT, lambda layout: changelog, ListDeadLetters(),
                        mirror_writer_for=lambda layout: mirror)  # fmt: skip
    result = pipeline.process([change], ordered=False)
    assert result.count("written") == 1
    assert mirror.batches[0][0].change.op == "REMOVE"
    assert changelog.batches[0][0].changelog["op"] == "REMOVE"
