"""The mirror ``D.T``: one row per item, kept in one of three modes, and the SQL for each.

=========  ===============================================================================
``view``   a view over the changelog: the newest change per key by ``seq``. Nothing to write
           or schedule, always exact; each query reads the whole changelog.
``merge``  a table kept by an incremental MERGE from the changelog (:func:`run_merge`, or
           ``ddb2bq merge``): cheap to query, as fresh as the last run.
``cdc``    a table with ``PRIMARY KEY (...) NOT ENFORCED`` and ``max_staleness``, written with
           Storage Write UPSERT/DELETE rows (``_CHANGE_SEQUENCE_NUMBER`` = ``seq``); here only
           its DDL (:func:`cdc_table_ddl`). BigQuery refuses DML on such a table.
=========  ===============================================================================

Which changelog rows count. A change without a new image (KEYS_ONLY or OLD_IMAGE streams) says
that the item changed but not into what: the mirror ignores it, as :class:`ddb2bq.rows.RowBuilder`
does. Of the rest, the one with the highest ``seq`` per key is the item's state; duplicates
(the same change delivered twice) have the same ``seq`` and the same values.

Deletes. ``hard``: a key whose newest change is a REMOVE is absent. ``soft``: it is present with
``_deleted = TRUE``, and its ``item`` and promoted columns are the last known state: those of its
newest non-REMOVE change (a REMOVE row has no new image, so the state comes from the change
before it; NULL when the changelog holds none, e.g. an item deleted before replication began and
never backfilled). ``_seq``/``_changed_at`` are the REMOVE's.

Incremental MERGE. The changelog rows to look at are those with ``ingested_at`` after the
watermark (the start time of the last successful run) minus an overlap (``overlap``, 30 minutes by
default): rows are stamped by the writer's clock before they land, so a row may become visible a
little after a later-stamped one. Changes of the touched keys are read back ``lookback`` (2 days by
default) before the watermark by ``changed_at``, the partition column, so the MERGE prunes
partitions, and so that a replayed old change still meets the newer change (a REMOVE, say) that
beats it. A change whose ``changed_at`` is older than that window (a dead letter replayed days
later) needs ``ddb2bq merge --full``. Applying a change only when its ``seq`` is above the mirror's
``_seq`` makes every run idempotent: running it twice, or over overlapping windows, changes
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ddb2bq.bigquery.generations import NO_GENERATION, current_filter, newest_complete
from ddb2bq.bigquery.sql import TableRef, param, quote, quote_all, run_query
from ddb2bq.records import now_micros
from ddb2bq.schema import Column, TableLayout

if TYPE_CHECKING:
    from collections.abc import Callable

    from google.cloud import bigquery

WATERMARK_LABEL = "ddb2bq_merged_through"
"""The mirror table's label holding the start time (microseconds) of the last successful MERGE."""

DEFAULT_LOOKBACK = timedelta(days=2)
DEFAULT_OVERLAP = timedelta(minutes=30)
DEFAULT_MAX_STALENESS_MINUTES = 15
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
_SINCE = "`changed_at` >= @since AND "  # the MERGE's partition window
_CLUSTERABLE = frozenset(("STRING", "INT64", "NUMERIC", "BIGNUMERIC", "BOOL", "TIMESTAMP", "DATE"))


@dataclass(frozen=True, slots=True)
class _Aliases:
    """Table aliases that are no column's name: a column named ``target`` (attribute names are
    user data) must not be read as the table ``target``. Each is a plain word, since the
    emulator's MERGE accepts nothing else, with ``_`` appended until it is free."""

    target: str
    source: str
    latest: str
    state: str

    @classmethod
    def of(cls, layout: TableLayout) -> _Aliases:
        taken = {c.name.lower() for c in (*layout.changelog_columns(), *layout.mirror_columns())}

        def free(word: str) -> str:
            while word in taken:
                word += "_"
            return quote(word)

        return cls(free("target"), free("source"), free("latest"), free("state"))


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What one MERGE did, and the watermark it stored."""

    inserted: int
    updated: int
    deleted: int
    watermark_us: int
    full: bool


def clustering_columns(layout: TableLayout) -> list[str]:
    """The key columns BigQuery can cluster by (not BYTES), at most four."""
    return [c.name for c in layout.keys if c.type in _CLUSTERABLE][:4]


def view_sql(
    layout: TableLayout,
    changes: TableRef,
    *,
    as_of: bool = False,
    generations: TableRef | None = None,
) -> str:
    """The query of the ``view`` mirror: the newest change per key, per the delete mode.

    ``as_of``: the state as of the TIMESTAMP parameter ``@as_of`` instead, from the changes
    made until then (by ``changed_at``, DynamoDB's approximate change time, to the second).
    ``generations``: keep only keys whose newest change is of the newest complete generation or
    later (:mod:`ddb2bq.bigquery.generations`: no zombies after a lost stream).
    """
    window = "`changed_at` <= @as_of AND " if as_of else ""
    latest = _latest_sql(layout, changes, window)
    names = quote_all(c.name for c in layout.mirror_columns())
    current = [] if generations is None else [current_filter(generations)]
    if layout.soft_deletes:
        state = _with_state(layout, changes, latest, _Aliases.of(layout), window)
        where = f"\nWHERE {current[0]}" if current else ""
        return f"SELECT {names}\nFROM (\n{state}\n){where}"
    conditions = " AND ".join(["`op` != 'REMOVE'", *current])
    return f"SELECT {names}\nFROM (\n{latest}\n)\nWHERE {conditions}"


def view_ddl(
    layout: TableLayout, changes: TableRef, mirror: TableRef, generations: TableRef | None = None
) -> str:
    """``CREATE OR REPLACE VIEW`` for the ``view`` mirror (re-run when columns were added)."""
    sql = view_sql(layout, changes, generations=generations)
    return f"CREATE OR REPLACE VIEW {mirror.sql} AS\n{sql}"


def merge_sql(layout: TableLayout, changes: TableRef, mirror: TableRef) -> str:
    """The incremental MERGE of the ``merge`` mirror; parameters ``@since`` (TIMESTAMP, the
    partition lower bound on ``changed_at``) and ``@after`` (TIMESTAMP, on ``ingested_at``)."""
    a = _Aliases.of(layout)
    latest = _latest_sql(layout, changes, _SINCE, touched=True)
    if layout.soft_deletes:
        source = _with_state(layout, changes, latest, a, _SINCE)
        clauses = _soft_clauses(layout, a)
    else:
        source, clauses = latest, _hard_clauses(layout, a)
    on = " AND ".join(
        f"{a.target}.{quote(k.name)} = {a.source}.{quote(k.name)}" for k in layout.keys
    )
    head = f"MERGE {mirror.sql} AS {a.target}\nUSING (\n{source}\n) AS {a.source}\nON {on}\n"
    return head + "\n".join(clauses)


def cdc_table_ddl(
    layout: TableLayout,
    mirror: TableRef,
    *,
    max_staleness_minutes: int = DEFAULT_MAX_STALENESS_MINUTES,
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the ``cdc`` mirror: primary key NOT ENFORCED on the
    keys, clustered by them, and ``max_staleness`` (how old a query's view of the UPSERTs may be:
    BigQuery applies them in the background at most this late, and merges at query time).
    """
    columns = ",\n".join(f"  {quote(c.name)} {c.type}" for c in layout.mirror_columns())
    keys = quote_all(c.name for c in layout.keys)
    cluster = clustering_columns(layout)
    cluster_by = f"\nCLUSTER BY {quote_all(cluster)}" if cluster else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {mirror.sql} (\n{columns},\n"
        f"  PRIMARY KEY ({keys}) NOT ENFORCED\n){cluster_by}\n"
        f"OPTIONS (max_staleness = INTERVAL {int(max_staleness_minutes)} MINUTE)"
    )


def merge_params(
    watermark_us: int | None,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> list[bigquery.ScalarQueryParameter]:
    """``@since`` and ``@after`` for a MERGE from ``watermark_us`` (None: from the beginning)."""
    if watermark_us is None:
        return [param("since", _BEGINNING), param("after", _BEGINNING)]
    watermark = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=watermark_us)
    return [param("since", watermark - lookback), param("after", watermark - overlap)]


def run_merge(
    client: bigquery.Client,
    layout: TableLayout,
    changes: TableRef,
    mirror: TableRef,
    *,
    full: bool = False,
    lookback: timedelta = DEFAULT_LOOKBACK,
    overlap: timedelta = DEFAULT_OVERLAP,
    clock: Callable[[], int] = now_micros,
    generations: TableRef | None = None,
) -> MergeResult:
    """Run the incremental MERGE once, then move the watermark to this run's start time.

    ``layout`` must be the changelog's current layout: :func:`ddb2bq.bigquery.tables.merge_mirror`
    reads it first, and is what a scheduler or the runner should call.

    The watermark is a label on the mirror table, written only after the MERGE succeeded: a run
    that fails or is interrupted leaves it where it was, and the next run covers its rows again
    (harmless: the MERGE is idempotent). ``full`` ignores the watermark and reads every change.

    >>> run_merge(client, layout, TableRef("p", "d", "orders_changes"), TableRef("p", "d", "orders"))
    ... # doctest: +SKIP
    MergeResult(inserted=3, updated=1, deleted=0, watermark_us=..., full=False)
    """
    started_us = clock()
    table = client.get_table(mirror.api)
    stored = (table.labels or {}).get(WATERMARK_LABEL)
    watermark = None if full or not stored or not stored.isdigit() else int(stored)
    params = merge_params(watermark, lookback=lookback, overlap=overlap)
    result = run_query(client, merge_sql(layout, changes, mirror), params)
    deleted = result.deleted
    if generations is not None and newest_complete(client, generations) != NO_GENERATION:
        zombies = f"DELETE FROM {mirror.sql} WHERE NOT ({current_filter(generations)})"
        deleted += run_query(client, zombies).affected
    table.labels = {**(table.labels or {}), WATERMARK_LABEL: str(started_us)}
    client.update_table(table, ["labels"])
    return MergeResult(result.inserted, result.updated, deleted, started_us, watermark is None)


def _latest_sql(
    layout: TableLayout, changes: TableRef, window: str, *, touched: bool = False
) -> str:
    """The newest mirror-relevant change per key among the changes in ``window`` (a condition
    on ``changed_at``), of the keys touched since ``@after`` when ``touched``."""
    keys = quote_all(c.name for c in layout.keys)
    columns = quote_all(c.name for c in _state_columns(layout))
    recent = f"\n  AND MAX(`ingested_at`) OVER (PARTITION BY {keys}) > @after" if touched else ""
    return (
        f"  SELECT {keys}, {columns}, `op`, `seq` AS `_seq`, `changed_at` AS `_changed_at`\n"
        f"  FROM {changes.sql}\n  WHERE {window}(`op` = 'REMOVE' OR `item` IS NOT NULL)\n"
        f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY `seq` DESC) = 1{recent}"
    )


def _state_columns(layout: TableLayout) -> list[Column]:
    """The columns that carry an item's state: promoted columns and ``item``."""
    return [*layout.promoted, Column("item", "JSON")]


def _with_state(
    layout: TableLayout, changes: TableRef, latest: str, a: _Aliases, window: str
) -> str:
    """Soft deletes: the newest change per key, with the state of its newest non-REMOVE change
    in ``window`` (``item`` is NULL when there is none)."""
    keys = [c.name for c in layout.keys]
    state_names = [c.name for c in _state_columns(layout)]
    on = " AND ".join(f"{a.latest}.{quote(k)} = {a.state}.{quote(k)}" for k in keys)
    select = [
        *(f"{a.latest}.{quote(k)}" for k in keys),
        *(f"{a.state}.{quote(n)}" for n in state_names),
        f"{a.latest}.`_seq`",
        f"{a.latest}.`_changed_at`",
        f"{a.latest}.`op` = 'REMOVE' AS `_deleted`",
    ]
    state = (
        f"  SELECT {quote_all(keys)}, {quote_all(state_names)}\n  FROM {changes.sql}\n"
        f"  WHERE {window}`op` != 'REMOVE' AND `item` IS NOT NULL\n"
        f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY {quote_all(keys)} ORDER BY `seq` DESC) = 1"
    )
    return (
        f"WITH {a.latest} AS (\n{latest}\n), {a.state} AS (\n{state}\n)\n"
        f"SELECT {', '.join(select)}\nFROM {a.latest} LEFT JOIN {a.state} ON {on}"
    )


def _hard_clauses(layout: TableLayout, a: _Aliases) -> list[str]:
    """A newer REMOVE deletes; a newer change updates; a new key is inserted unless removed."""
    newer = f"{a.source}.`_seq` > {a.target}.`_seq`"
    state = [c.name for c in _state_columns(layout)]
    sets = ", ".join(f"{quote(n)} = {a.source}.{quote(n)}" for n in [*state, "_seq", "_changed_at"])
    inserted = [c.name for c in layout.mirror_columns()]
    return [
        f"WHEN MATCHED AND {newer} AND {a.source}.`op` = 'REMOVE' THEN DELETE",
        f"WHEN MATCHED AND {newer} THEN UPDATE SET {sets}",
        f"WHEN NOT MATCHED AND {a.source}.`op` != 'REMOVE' THEN\n"
        f"  INSERT ({quote_all(inserted)})\n  VALUES ({_values(inserted, a)})",
    ]


def _soft_clauses(layout: TableLayout, a: _Aliases) -> list[str]:
    """A newer change updates or inserts, a REMOVE too (``_deleted``); a soft delete keeps the
    mirror's state when the window holds no newer one (a state row always has an ``item``, so a
    NULL ``item`` in the source means "no state")."""
    newer = f"{a.source}.`_seq` > {a.target}.`_seq`"
    state = [c.name for c in _state_columns(layout)]
    has_state = f"{a.source}.`item` IS NOT NULL"
    kept = ", ".join(
        f"{quote(n)} = IF({has_state}, {a.source}.{quote(n)}, {a.target}.{quote(n)})" for n in state
    )
    tail = ", ".join(
        f"{quote(n)} = {a.source}.{quote(n)}" for n in ("_seq", "_changed_at", "_deleted")
    )
    inserted = [c.name for c in layout.mirror_columns()]
    return [
        f"WHEN MATCHED AND {newer} THEN UPDATE SET {kept}, {tail}",
        f"WHEN NOT MATCHED THEN\n  INSERT ({quote_all(inserted)})\n  VALUES ({_values(inserted, a)})",
    ]


def _values(names: Sequence[str], a: _Aliases) -> str:
    return ", ".join(f"{a.source}.{quote(n)}" for n in names)
