"""``D.T_generations``: when each generation's snapshot was complete, so that items deleted while
the stream was lost do not linger in the mirror as zombies.

A new generation starts when the stream lost changes (a gap): its backfill writes every item
that exists, and the stream is read again. An item deleted during the gap has its last changelog
row in the old generation and none in the new one. Once the new snapshot is complete (a row here),
every mirror mode counts only the keys whose newest row belongs to the newest complete generation
or a later one; until then the mirror keeps serving the old generation's rows (the view filters
on it, the MERGE deletes what falls below it after each run). The ``cdc`` mirror cannot be
filtered this way (BigQuery refuses DML on it); its zombies need a DELETE row per key: not built.

========== ========= ===========================================================
column     type      meaning
========== ========= ===========================================================
generation STRING    the generation as the first of ``seq``'s sections (16 hex)
completed  TIMESTAMP when its snapshot was complete (every item loaded)
snapshot   TIMESTAMP when the snapshot began (the Scan start, or the export time)
========== ========= ===========================================================
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery.sql import TableRef, api_error, api_errors, api_retry

if TYPE_CHECKING:
    from google.cloud import bigquery

NO_GENERATION = "0" * 16


def generations_ref(changes: TableRef) -> TableRef:
    """The generations table beside the changelog ``T_changes``: ``T_generations``.

    >>> generations_ref(TableRef("p", "d", "orders_changes")).table
    'orders_generations'
    """
    return TableRef(
        changes.project, changes.dataset, changes.table[: -len("_changes")] + "_generations"
    )


def newest_complete_sql(generations: TableRef) -> str:
    """The newest complete generation as ``seq``'s first section (zeros when none is)."""
    return f"(SELECT COALESCE(MAX(`generation`), '{NO_GENERATION}') FROM {generations.sql})"


def current_filter(generations: TableRef, seq: str = "`_seq`") -> str:
    """A condition keeping rows of the newest complete generation or later.

    >>> current_filter(TableRef("p", "d", "t_generations"))
    "SUBSTR(`_seq`, 1, 16) >= (SELECT COALESCE(MAX(`generation`), '0000000000000000') FROM `p`.`d`.`t_generations`)"
    """
    return f"SUBSTR({seq}, 1, 16) >= {newest_complete_sql(generations)}"


def newest_complete(client: bigquery.Client, generations: TableRef) -> str:
    """The newest complete generation (``seq``'s first section), zeros when none is."""
    from ddb2bq.bigquery.sql import run_query  # noqa: PLC0415

    result = run_query(client, f"SELECT {newest_complete_sql(generations)} AS `g`")
    return str(result.rows[0]["g"]) if result.rows else NO_GENERATION


def ensure_table(client: bigquery.Client, generations: TableRef) -> bool:
    """Create the generations table when it is missing; True when it was created."""
    from google.api_core.exceptions import NotFound  # noqa: PLC0415 (heavy)
    from google.cloud import bigquery  # noqa: PLC0415

    try:
        client.get_table(generations.api, retry=api_retry())
        return False
    except NotFound:
        pass
    except api_errors() as exc:
        raise api_error(exc, str(generations)) from exc
    schema = [
        bigquery.SchemaField("generation", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("completed", "TIMESTAMP", mode="REQUIRED"),
        bigquery.SchemaField("snapshot", "TIMESTAMP"),
    ]
    table = bigquery.Table(generations.api, schema=schema)
    table.description = "ddb2bq: when each generation's snapshot was complete."
    try:
        client.create_table(table, exists_ok=True, retry=api_retry())
    except api_errors() as exc:
        raise api_error(exc, str(generations)) from exc
    return True


def record_complete(client: Any, ref: TableRef, generation: int, snapshot_us: int) -> None:
    """Record in ``ref`` (``T_generations``) that ``generation``'s snapshot is complete."""
    ensure_table(client, ref)
    row = {
        "generation": f"{generation:016x}",
        "completed": datetime.now(UTC).isoformat(),
        "snapshot": (
            datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=snapshot_us)
        ).isoformat(),
    }
    try:
        errors = client.insert_rows_json(ref.api, [row], retry=api_retry())
    except api_errors() as exc:
        raise api_error(exc, str(ref)) from exc
    if errors:
        raise api_error(RuntimeError(str(errors)), str(ref))
