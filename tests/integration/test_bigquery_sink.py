"""The BigQuery sink end to end on the emulator: a change BigQuery refuses goes whole to the dead
letters on disk, the rest of its batch lands, and the mirror shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

from ddb2bq.dead_letters.local import LocalDeadLetters
from tests.integration.mirror_support import (
    WRITERS,
    bigquery_pipeline,
    changes,
    config,
    replicate,
    stream_record,
    writer_for,
)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_refused_change_is_dead_lettered_whole_and_its_batch_lands(
    writer: str,
    tmp_path: Path,
    bq_client: bigquery.Client,
    bq_write_client: BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a sink writing to local dead letters, and a BIGNUMERIC column. The emulator keeps
    # BIGNUMERIC as DECIMAL(38, 18) (BigQuery: 76 digits), so it refuses 10^21: a stand-in for
    # any row BigQuery refuses
    settings = config(dataset, writer=writer, promote=["rate"], types={"rate": "BIGNUMERIC"})
    replication = replicate(settings, bq_client, bq_write_client, bq_retry)
    dead_letters = LocalDeadLetters(tmp_path)
    sink = bigquery_pipeline(
        settings,
        replication.sink.layout,
        bq_client,
        writer_for(writer, settings, bq_client, bq_write_client),
        dead_letters,
    )
    records = [
        stream_record("a", "INSERT", 1, rate={"N": "1.5"}),
        stream_record("b", "INSERT", 2, rate={"N": "1000000000000000000000"}),
        stream_record("c", "INSERT", 3, rate={"N": "2"}),
    ]
    # WHEN the batch is written
    result = sink.process(changes(records), ordered=False)
    # THEN b is dead-lettered with its whole original record and BigQuery's reason
    assert [o.status for o in result.outcomes] == ["written", "dead_lettered", "written"]
    (letter,) = list(dead_letters.read())
    assert letter.record == records[1]
    assert (letter.table, letter.event_id) == ("orders", "b-2")
    assert "bignumeric" in letter.error.lower()
    # AND the others are in the changelog and the mirror
    assert [r["pk"] for r in replication.rows("changes")] == ["a", "c"]
    assert [(r["pk"], str(r["rate"])) for r in replication.rows()] == [("a", "1.5"), ("c", "2")]
