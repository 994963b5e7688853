"""``D.T_generations``: when each generation's snapshot was complete, so that items deleted while
the stream was lost do not linger in the mirror as zombies.

A new generation starts when the stream lost changes (a gap): its backfill writes every item
that exists, and the stream is read again. An item deleted during the gap has its last changelog
row in the old generation and none in the new one. Once the new snapshot is complete (a row here),
every mirror mode counts only the keys whose newest row belongs to the newest complete generation
or a later one; until then the mirror keeps serving the old generation's rows (the view filters
on it, the MERGE deletes what falls below it after each run). The ``cdc`` mirror cannot be
filtered by DML (BigQuery refuses DML on a table that received UPSERTs): :func:`zombie_removes`
finds its keys below the newest complete generation, as REMOVE changes of that generation's
snapshot ``seq`` that the pipeline writes (a changelog row and a cdc DELETE each).

========== ========= ===========================================================
column     type      meaning
========== ========= ===========================================================
generation STRING    the generation as the first of ``seq``'s sections (16 hex)
completed  TIMESTAMP when its snapshot was complete (every item loaded)
snapshot   TIMESTAMP when the snapshot began (the Scan start, or the export time)
========== ========= ===========================================================
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery.sql import TableRef, api_error, api_errors, api_retry, quote
from ddb2bq.records import Change, snapshot_event_id, snapshot_seq
from ddb2bq.schema import TableLayout

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


def zombie_removes(
    client: bigquery.Client,
    mirror: TableRef,
    generations: TableRef,
    layout: TableLayout,
    *,
    generation: int,
    table: str,
    now_us: int,
    page_size: int = 5000,
) -> Iterator[Change]:
    """A REMOVE change for each key of the ``cdc`` mirror whose row is older than the newest
    complete generation (``generation``): an item deleted while the stream was lost."""
    from google.cloud import bigquery  # noqa: PLC0415 (heavy)

    keys = [c.name for c in layout.keys]
    sql = (
        f"SELECT {', '.join(quote(k) for k in keys)} FROM {mirror.sql} "
        f"WHERE NOT ({current_filter(generations)})"
    )
    try:
        job = client.query(sql, job_config=bigquery.QueryJobConfig(), retry=api_retry())
        for row in job.result(page_size=page_size, retry=api_retry()):
            yield zombie_remove(layout, dict(row.items()), generation, table, now_us)
    except api_errors() as exc:
        raise api_error(exc, str(mirror)) from exc


def zombie_remove(
    layout: TableLayout, row: dict[str, Any], generation: int, table: str, now_us: int
) -> Change:
    """The REMOVE change of one zombie key (``row``: the mirror's key columns).

    >>> from ddb2bq.schema import build_layout
    >>> change = zombie_remove(build_layout([("pk", "S"), ("n", "N")]), {"pk": "a", "n": 7}, 2, "t", 0)
    >>> change.op, change.keys, change.seq
    ('REMOVE', {'pk': {'S': 'a'}, 'n': {'N': '7'}}, '0000000000000002/0000000000000000/0000000000000000/0000000000000000')
    """
    keys = {}
    for column in layout.keys:
        attribute = column.attribute or column.name
        keys[attribute] = _key_value(layout.key_types.get(attribute, "S"), row[column.name])
    return Change(
        op="REMOVE",
        keys=keys,
        new_image=None,
        old_image=None,
        seq=snapshot_seq(generation),
        changed_at_us=now_us,
        event_id=f"zombie-{snapshot_event_id(generation, keys)}",
        table=table,
    )


def _key_value(kind: str, value: Any) -> dict[str, str]:
    if kind == "B":
        raw = value if isinstance(value, bytes) else base64.b64decode(value)
        return {"B": base64.b64encode(raw).decode()}
    if kind == "N":
        return {"N": format(value, "f") if isinstance(value, Decimal) else str(value)}
    return {"S": str(value)}
