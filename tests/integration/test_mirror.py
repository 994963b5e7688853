"""The mirror in ``view`` and ``merge`` mode equals the source's final state, for hard and soft
deletes, whichever writer filled the changelog: inserts, modifies, removes, a re-insert, a
duplicate delivery and out-of-order replays of old changes. A second MERGE changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.bigquery.mirror import WATERMARK_LABEL, view_sql
from ddb2bq.bigquery.sql import param, run_query
from ddb2bq.records import make_seq
from tests.integration.mirror_support import NOW_S, WRITERS, config, replicate, stream_record

FIRST = [  # one batch as a stream delivers it
    stream_record("a", "INSERT", 101, status={"S": "new"}),
    stream_record("a", "MODIFY", 102, status={"S": "paid"}),
    stream_record("a", "REMOVE", 103, status={"S": "paid"}),
    stream_record("a", "INSERT", 104, status={"S": "again"}),  # re-insert after a delete
    stream_record("b", "INSERT", 201, status={"S": "new"}),
    stream_record("b", "MODIFY", 202, status={"S": "shipped"}),
    stream_record("b", "REMOVE", 203, status={"S": "shipped"}),
    stream_record("c", "INSERT", 301, status={"S": "new"}),
    stream_record("c", "INSERT", 301, status={"S": "new"}),  # duplicate delivery
    stream_record("d", "INSERT", 401, status={"S": "new"}),
    stream_record("d", "MODIFY", 402, status={"S": "paid"}),
    stream_record("e", "INSERT", 501, status={"S": "new"}),
    stream_record("e", "REMOVE", 502, status={"S": "new"}),
]
SECOND = [  # a later batch: replays of old changes, and a pair out of order
    stream_record("d", "INSERT", 401, status={"S": "new"}),  # old change replayed
    stream_record("c", "INSERT", 301, status={"S": "new"}),  # duplicate, again
    stream_record("e", "INSERT", 501, status={"S": "new"}),  # replayed after its REMOVE
    stream_record("f", "MODIFY", 602, status={"S": "later"}),
    stream_record("f", "INSERT", 601, status={"S": "late"}),
]


def expected(soft: bool) -> list[dict[str, Any]]:
    """The source's final state, as mirror rows."""
    live = [("a", "again", 104), ("c", "new", 301), ("d", "paid", 402), ("f", "later", 602)]
    gone = [("b", "shipped", 203), ("e", "new", 502)]
    rows = [row(key, status, seq, soft, deleted=False) for key, status, seq in live]
    if soft:  # deleted items stay, flagged, with their last known state
        rows += [row(key, status, seq, soft, deleted=True) for key, status, seq in gone]
    return sorted(rows, key=lambda r: r["pk"])


def row(key: str, status: str, seq: int, soft: bool, *, deleted: bool) -> dict[str, Any]:
    mirror_row = {
        "pk": key,
        "status": status,
        "item": {"pk": key, "status": status},
        "_seq": make_seq(0, seq),
    }
    return {**mirror_row, "_deleted": deleted} if soft else mirror_row


def state(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "_changed_at"} for r in rows]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("deletes", ["hard", "soft"])
def test_view_mirror_equals_the_final_state(
    writer: str,
    deletes: str,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a view mirror over a changelog filled by the writer
    settings = config(dataset, mirror="view", deletes=deletes, writer=writer, promote=["status"],
                      types={"status": "STRING"})  # fmt: skip
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    # WHEN the scripted history arrives in two batches
    replication.write(FIRST)
    replication.write(SECOND)
    # THEN every change is in the changelog (insertAll may drop a re-sent event id, storage
    # write keeps each copy: the mirror does not care), and the view is the final state
    logged = [r["event_id"] for r in replication.rows("changes")]
    assert set(logged) == {r["eventID"] for r in FIRST + SECOND}
    assert len(set(logged)) <= len(logged) <= len(FIRST) + len(SECOND)
    assert state(replication.rows()) == expected(deletes == "soft")
    assert replication.dead_letters.letters == []


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("deletes", ["hard", "soft"])
def test_merge_mirror_equals_the_final_state_and_a_second_merge_changes_nothing(
    writer: str,
    deletes: str,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a merge mirror
    settings = config(dataset, mirror="merge", deletes=deletes, writer=writer, promote=["status"],
                      types={"status": "STRING"})  # fmt: skip
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    soft = deletes == "soft"
    # WHEN the first batch is merged, then the replays, then the merge runs once more
    replication.write(FIRST)
    first = replication.merge()
    replication.write(SECOND)
    second = replication.merge()
    after_second = replication.rows()
    third = replication.merge()
    # THEN the mirror is the final state
    assert state(after_second) == expected(soft)
    assert first.full
    assert not second.full
    assert (first.inserted, first.deleted) == ((5, 0) if soft else (3, 0))
    # AND the replays of old changes changed nothing; only the new item f arrived
    assert (second.inserted, second.updated, second.deleted) == (1, 0, 0)
    # AND the third run changed nothing at all
    assert (third.inserted, third.updated, third.deleted) == (0, 0, 0)
    assert replication.rows() == after_second
    assert replication.table().labels[WATERMARK_LABEL] == str(third.watermark_us)


def test_merge_applies_deletes_and_updates_to_rows_merged_before(
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN items merged into the mirror
    settings = config(dataset, mirror="merge", promote=["status"], types={"status": "STRING"})
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    replication.write([stream_record(k, "INSERT", n, status={"S": "new"}) for n, k in
                       enumerate("xyz", start=1)])  # fmt: skip
    replication.merge()
    # WHEN later changes modify one and remove another, and an old insert of the removed one is
    # replayed in the same batch
    replication.write(
        [
            stream_record("x", "MODIFY", 10, status={"S": "paid"}),
            stream_record("y", "REMOVE", 11, status={"S": "new"}),
            stream_record("y", "INSERT", 2, status={"S": "new"}),
        ]
    )
    result = replication.merge()
    # THEN one row is updated and one deleted
    assert (result.inserted, result.updated, result.deleted) == (0, 1, 1)
    assert [(r["pk"], r["status"]) for r in replication.rows()] == [("x", "paid"), ("z", "new")]


def test_a_change_older_than_the_lookback_needs_a_full_merge(
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a merged mirror
    settings = config(dataset, mirror="merge")
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    replication.write([stream_record("a", "INSERT", 1)])
    replication.merge()
    # WHEN a change dated 5 days ago arrives (a dead letter replayed late)
    replication.write([stream_record("old", "INSERT", 2, seconds_ago=5 * 86400)])
    incremental = replication.merge()
    full = replication.merge(full=True)
    # THEN the incremental MERGE does not see it (partition pruning) and a full one does
    assert incremental.inserted == 0
    assert (full.full, full.inserted) == (True, 1)
    assert [r["pk"] for r in replication.rows()] == ["a", "old"]


@pytest.mark.parametrize("deletes", ["hard", "soft"])
def test_state_as_of_a_time_is_a_filter_on_the_changelog(
    deletes: str,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a history over the last three hours: a inserted, paid, removed; b inserted
    settings = config(dataset, deletes=deletes, promote=["status"], types={"status": "STRING"})
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    hour = 3600
    replication.write(
        [
            stream_record("a", "INSERT", 1, seconds_ago=3 * hour, status={"S": "new"}),
            stream_record("b", "INSERT", 2, seconds_ago=3 * hour - 1, status={"S": "new"}),
            stream_record("a", "MODIFY", 3, seconds_ago=2 * hour, status={"S": "paid"}),
            stream_record("a", "REMOVE", 4, seconds_ago=1 * hour, status={"S": "paid"}),
        ]
    )
    layout = replication.sink.layout

    def as_of(seconds_ago: int) -> list[tuple[str, str, bool]]:
        when = datetime.fromtimestamp(NOW_S - seconds_ago, tz=UTC)
        sql = view_sql(layout, replication.refs.changes, as_of=True) + " ORDER BY `pk`"
        rows = run_query(bq_client, sql, [param("as_of", when)]).rows
        return [(r["pk"], r["status"], r.get("_deleted", False)) for r in rows]

    # WHEN the state is read as of 150 minutes, 90 minutes and no time ago
    # THEN each is the state the source had then
    assert as_of(150 * 60) == [("a", "new", False), ("b", "new", False)]
    assert as_of(90 * 60) == [("a", "paid", False), ("b", "new", False)]
    now = [("a", "paid", True), ("b", "new", False)] if deletes == "soft" else [("b", "new", False)]
    assert as_of(0) == now
