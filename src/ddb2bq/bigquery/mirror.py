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

The watermark never passes a row the MERGE did not read. The next run reads every row stamped
after the new watermark minus the overlap, so the new watermark is a time no later than the
MERGE's own view of the changelog: the earlier of this machine's clock and BigQuery's
(``CURRENT_TIMESTAMP()``), both read before the MERGE starts (a merger whose clock runs ahead
would otherwise skip what lands meanwhile). A stored watermark later than BigQuery's clock cannot
be right, so that run is full. The window itself must reach behind the watermark: ``lookback``
and ``overlap`` above zero, ``lookback`` at least ``overlap`` (else rows stamped in the overlap
are touched but not read) and at most :data:`MAX_LOOKBACK`; anything else is a ConfigError.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ddb2bq.bigquery.generations import NO_GENERATION, current_filter, newest_complete
from ddb2bq.bigquery.sql import TableRef, param, quote, quote_all, run_query
from ddb2bq.exceptions import ConfigError
from ddb2bq.records import now_micros
from ddb2bq.schema import Column, TableLayout

if TYPE_CHECKING:
    from collections.abc import Callable

    from google.cloud import bigquery

logger = logging.getLogger(__name__)

WATERMARK_LABEL = "ddb2bq_merged_through"
"""The mirror table's label holding the start time (microseconds) of the last successful MERGE."""

DEFAULT_LOOKBACK = timedelta(days=2)
DEFAULT_OVERLAP = timedelta(minutes=30)
MAX_LOOKBACK = timedelta(days=3650)
"""The longest look-back (ten years): a longer one is a full merge (``full=True``)."""
DEFAULT_MAX_STALENESS_MINUTES = 15
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SINCE = "`changed_at` >= @since AND "  # the MERGE's partition window
_CLUSTERABLE = frozenset(("STRING", "INT64", "NUMERIC", "BIGNUMERIC", "BOOL", "TIMESTAMP", "DATE"))
_ENTITY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")


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
    def of(cls, layout: TableLayout, scope: MirrorScope | None = None) -> _Aliases:
        columns = (*layout.changelog_columns(), *mirror_columns(layout, scope))
        taken = {c.name.lower() for c in columns}

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


@dataclass(frozen=True, slots=True)
class ScopeColumn:
    """A column a scoped mirror has after its keys (a key part of an entity): its name, its
    type, and the SQL expression that computes it from a changelog row."""

    name: str
    type: str
    sql: str

    @property
    def column(self) -> Column:
        """The mirror column."""
        return Column(self.name, self.type)


@dataclass(frozen=True, slots=True)
class MirrorScope:
    """The keys one mirror holds when the table has entities, and the columns it adds.

    A key is in the mirror of the entity that its state row (its newest change that is not a
    REMOVE) names in ``_entity``: ``entity``, or None for the table's own mirror, which then
    holds the keys of no entity. A key deleted with no state row in the changelog is in no
    mirror: nothing says whose it was. Without a scope (``scope=None``, the default everywhere)
    a mirror holds every key and ``_entity`` is not read.

    The entity name reaches SQL as a string literal (a view cannot take query parameters), so it
    must be a table name of letters, digits and underscores, as ``[[entities]] name`` is.

    >>> MirrorScope("orders").holds("`source`.")
    "COALESCE(`source`.`_entity` = 'orders', FALSE)"
    >>> MirrorScope().holds()
    '`item` IS NOT NULL AND `_entity` IS NULL'
    """

    entity: str | None = None
    columns: tuple[ScopeColumn, ...] = ()

    def __post_init__(self) -> None:
        if self.entity is not None and not _ENTITY_NAME.fullmatch(self.entity):
            raise ValueError(
                f"The entity name {self.entity!r} cannot name a mirror: use letters, digits and "
                "underscores, not starting with a digit."
            )

    def holds(self, prefix: str = "") -> str:
        """The condition (TRUE or FALSE, never NULL) that a row with state columns and
        ``_entity`` (qualified by ``prefix``) is of this mirror."""
        if self.entity is None:
            return f"{prefix}`item` IS NOT NULL AND {prefix}`_entity` IS NULL"
        return f"COALESCE({prefix}`_entity` = '{self.entity}', FALSE)"


def mirror_columns(layout: TableLayout, scope: MirrorScope | None = None) -> list[Column]:
    """The columns of a mirror: ``layout``'s, with the scope's columns after the keys.

    >>> from ddb2bq.schema import build_layout
    >>> scope = MirrorScope("lines", (ScopeColumn("n", "INT64", "..."),))
    >>> [c.name for c in mirror_columns(build_layout([("pk", "S")]), scope)]
    ['pk', 'n', 'item', '_seq', '_changed_at']
    """
    columns = layout.mirror_columns()
    if scope is None:
        return columns
    keys = len(layout.keys)
    return [*columns[:keys], *(c.column for c in scope.columns), *columns[keys:]]


def clustering_columns(layout: TableLayout) -> list[str]:
    """The key columns BigQuery can cluster by (not BYTES), at most four."""
    return [c.name for c in layout.keys if c.type in _CLUSTERABLE][:4]


def view_sql(
    layout: TableLayout,
    changes: TableRef,
    *,
    as_of: bool = False,
    generations: TableRef | None = None,
    scope: MirrorScope | None = None,
) -> str:
    """The query of the ``view`` mirror: the newest change per key, per the delete mode.

    ``as_of``: the state as of the TIMESTAMP parameter ``@as_of`` instead, from the changes
    made until then (by ``changed_at``, DynamoDB's approximate change time, to the second).
    ``generations``: keep only keys whose newest change is of the newest complete generation or
    later (:mod:`ddb2bq.bigquery.generations`: no zombies after a lost stream).
    ``scope``: only the keys of one entity, or of none (:class:`MirrorScope`).
    """
    window = "`changed_at` <= @as_of AND " if as_of else ""
    latest = _latest_sql(layout, changes, window, scope=scope)
    names = quote_all(c.name for c in mirror_columns(layout, scope))
    held = [] if scope is None else [scope.holds()]
    current = [] if generations is None else [current_filter(generations)]
    if layout.soft_deletes:
        aliases = _Aliases.of(layout, scope)
        state = _with_state(layout, changes, latest, aliases, window, scope=scope)
        where = f"\nWHERE {' AND '.join([*held, *current])}" if held or current else ""
        return f"SELECT {names}\nFROM (\n{state}\n){where}"
    conditions = " AND ".join(["`op` != 'REMOVE'", *held, *current])
    return f"SELECT {names}\nFROM (\n{latest}\n)\nWHERE {conditions}"


def view_ddl(
    layout: TableLayout,
    changes: TableRef,
    mirror: TableRef,
    generations: TableRef | None = None,
    *,
    scope: MirrorScope | None = None,
) -> str:
    """``CREATE OR REPLACE VIEW`` for the ``view`` mirror (re-run when columns were added)."""
    sql = view_sql(layout, changes, generations=generations, scope=scope)
    return f"CREATE OR REPLACE VIEW {mirror.sql} AS\n{sql}"


def merge_sql(
    layout: TableLayout, changes: TableRef, mirror: TableRef, *, scope: MirrorScope | None = None
) -> str:
    """The incremental MERGE of the ``merge`` mirror; parameters ``@since`` (TIMESTAMP, the
    partition lower bound on ``changed_at``) and ``@after`` (TIMESTAMP, on ``ingested_at``).

    ``scope``: the mirror of one entity, or of none (:class:`MirrorScope`); a key whose newer
    state is of another scope is deleted from this mirror (it moved to that one's).
    """
    a = _Aliases.of(layout, scope)
    latest = _latest_sql(layout, changes, _SINCE, touched=True, scope=scope)
    if layout.soft_deletes:
        source = _with_state(layout, changes, latest, a, _SINCE, scope=scope)
        clauses = _soft_clauses(layout, a, scope)
    else:
        source, clauses = latest, _hard_clauses(layout, a, scope)
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
    scope: MirrorScope | None = None,
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the ``cdc`` mirror: primary key NOT ENFORCED on the
    keys, clustered by them, and ``max_staleness`` (how old a query's view of the UPSERTs may be:
    BigQuery applies them in the background at most this late, and merges at query time).
    ``scope`` adds its columns after the keys (an entity's key parts).
    """
    scoped = mirror_columns(layout, scope)
    columns = ",\n".join(f"  {quote(c.name)} {c.type}" for c in scoped)
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
    """``@since`` and ``@after`` for a MERGE from ``watermark_us`` (None: from the beginning).

    Raises ConfigError for a window that does not reach behind the watermark
    (:func:`check_window`).
    """
    check_window(lookback, overlap)
    if watermark_us is None:
        return [param("since", _BEGINNING), param("after", _BEGINNING)]
    watermark = _EPOCH + timedelta(microseconds=watermark_us)
    return [param("since", watermark - lookback), param("after", watermark - overlap)]


def check_window(lookback: timedelta, overlap: timedelta = DEFAULT_OVERLAP) -> None:
    """Refuse a MERGE window that would skip rows: ``lookback`` and ``overlap`` must be above
    zero, ``lookback`` at least ``overlap`` and at most :data:`MAX_LOOKBACK`.

    >>> check_window(timedelta(hours=-48))
    Traceback (most recent call last):
    ...
    ddb2bq.exceptions.ConfigError: The MERGE look-back is -2 days, 0:00:00; ...
    """
    for name, value in (("look-back", lookback), ("overlap", overlap)):
        if not isinstance(value, timedelta) or value <= timedelta(0):
            raise ConfigError(
                f"The MERGE {name} is {value}; give a duration above zero "
                "(`ddb2bq merge --lookback-hours` takes hours, 48 by default)."
            )
    if lookback < overlap:
        raise ConfigError(
            f"The MERGE look-back ({lookback}) is shorter than its overlap ({overlap}): rows "
            "stamped in the overlap would be touched but not read; give a look-back of at "
            "least the overlap (`--lookback-hours` 0.5 or more)."
        )
    if lookback > MAX_LOOKBACK:
        raise ConfigError(
            f"The MERGE look-back is {lookback}, more than {MAX_LOOKBACK.days} days; "
            "run `ddb2bq merge --full` to read the whole changelog."
        )


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
    scope: MirrorScope | None = None,
) -> MergeResult:
    """Run the incremental MERGE once, then move the watermark to this run's start time.

    ``layout`` must be the changelog's current layout: :func:`ddb2bq.bigquery.tables.merge_mirror`
    reads it first, and is what a scheduler or the runner should call.

    The watermark is a label on the mirror table, written only after the MERGE succeeded: a run
    that fails or is interrupted leaves it where it was, and the next run covers its rows again
    (harmless: the MERGE is idempotent). ``full`` ignores the watermark and reads every change.
    The start time is the earlier of ``clock`` and BigQuery's clock, read before the MERGE, so
    that the watermark never passes a row the MERGE did not see. A ``lookback`` or ``overlap``
    that would skip rows (:func:`check_window`) is a ConfigError, raised before anything runs.
    ``scope``: the mirror of one entity, or of the items of none (:class:`MirrorScope`); each
    mirror keeps its own watermark label.

    >>> run_merge(client, layout, TableRef("p", "d", "orders_changes"), TableRef("p", "d", "orders"))
    ... # doctest: +SKIP
    MergeResult(inserted=3, updated=1, deleted=0, watermark_us=..., full=False)
    """
    check_window(lookback, overlap)
    local_us = clock()
    bigquery_us = _bigquery_now_us(client)
    started_us = min(local_us, bigquery_us)
    table = client.get_table(mirror.api)
    stored = (table.labels or {}).get(WATERMARK_LABEL)
    watermark = None if full else _stored_watermark(stored, bigquery_us)
    params = merge_params(watermark, lookback=lookback, overlap=overlap)
    result = run_query(client, merge_sql(layout, changes, mirror, scope=scope), params)
    deleted = result.deleted
    if generations is not None and newest_complete(client, generations) != NO_GENERATION:
        zombies = f"DELETE FROM {mirror.sql} WHERE NOT ({current_filter(generations)})"
        deleted += run_query(client, zombies).affected
    table.labels = {**(table.labels or {}), WATERMARK_LABEL: str(started_us)}
    client.update_table(table, ["labels"])
    return MergeResult(result.inserted, result.updated, deleted, started_us, watermark is None)


def _bigquery_now_us(client: bigquery.Client) -> int:
    """BigQuery's clock, in microseconds since the epoch."""
    value = run_query(client, "SELECT CURRENT_TIMESTAMP() AS `now`").rows[0]["now"]
    now = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return (now - _EPOCH) // timedelta(microseconds=1)


def _stored_watermark(label: str | None, now_us: int) -> int | None:
    """The label's watermark; None (a full run) when there is none or it cannot be right: not
    a number of microseconds, or later than BigQuery's clock ``now_us``."""
    if not label or not (label.isascii() and label.isdigit()):
        return None
    if int(label) > now_us:
        logger.warning(
            "The stored MERGE watermark %s is later than BigQuery's clock (%s): merging the "
            "whole changelog.",
            label,
            now_us,
        )
        return None
    return int(label)


def _latest_sql(
    layout: TableLayout,
    changes: TableRef,
    window: str,
    *,
    touched: bool = False,
    scope: MirrorScope | None = None,
) -> str:
    """The newest mirror-relevant change per key among the changes in ``window`` (a condition
    on ``changed_at``), of the keys touched since ``@after`` when ``touched``."""
    keys = quote_all(c.name for c in layout.keys)
    columns = _read_state(layout, scope)
    recent = f"\n  AND MAX(`ingested_at`) OVER (PARTITION BY {keys}) > @after" if touched else ""
    return (
        f"  SELECT {keys}, {columns}, `op`, `seq` AS `_seq`, `changed_at` AS `_changed_at`\n"
        f"  FROM {changes.sql}\n  WHERE {window}(`op` = 'REMOVE' OR `item` IS NOT NULL)\n"
        f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY `seq` DESC) = 1{recent}"
    )


def _state_columns(layout: TableLayout, scope: MirrorScope | None = None) -> list[Column]:
    """The columns that carry an item's state: the scope's (key parts), promoted columns and
    ``item``."""
    scoped = [c.column for c in scope.columns] if scope is not None else []
    return [*scoped, *layout.promoted, Column("item", "JSON")]


def _read_state(layout: TableLayout, scope: MirrorScope | None) -> str:
    """The state columns as read from a changelog row, and with a scope its ``_entity``."""
    names = quote_all(c.name for c in _state_columns(layout))
    if scope is None:
        return names
    scoped = (f"{c.sql} AS {quote(c.name)}" for c in scope.columns)
    return ", ".join([*scoped, names, "`_entity`"])


def _with_state(
    layout: TableLayout,
    changes: TableRef,
    latest: str,
    a: _Aliases,
    window: str,
    *,
    scope: MirrorScope | None = None,
) -> str:
    """Soft deletes: the newest change per key, with the state of its newest non-REMOVE change
    in ``window`` (``item`` is NULL when there is none; with a scope, ``_entity`` too)."""
    keys = [c.name for c in layout.keys]
    carried = [c.name for c in _state_columns(layout, scope)]
    carried += [] if scope is None else ["_entity"]
    on = " AND ".join(f"{a.latest}.{quote(k)} = {a.state}.{quote(k)}" for k in keys)
    select = [
        *(f"{a.latest}.{quote(k)}" for k in keys),
        *(f"{a.state}.{quote(n)}" for n in carried),
        f"{a.latest}.`_seq`",
        f"{a.latest}.`_changed_at`",
        f"{a.latest}.`op` = 'REMOVE' AS `_deleted`",
    ]
    state = (
        f"  SELECT {quote_all(keys)}, {_read_state(layout, scope)}\n  FROM {changes.sql}\n"
        f"  WHERE {window}`op` != 'REMOVE' AND `item` IS NOT NULL\n"
        f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY {quote_all(keys)} ORDER BY `seq` DESC) = 1"
    )
    return (
        f"WITH {a.latest} AS (\n{latest}\n), {a.state} AS (\n{state}\n)\n"
        f"SELECT {', '.join(select)}\nFROM {a.latest} LEFT JOIN {a.state} ON {on}"
    )


def _hard_clauses(layout: TableLayout, a: _Aliases, scope: MirrorScope | None = None) -> list[str]:
    """A newer REMOVE deletes; a newer change updates; a new key is inserted unless removed.
    With a scope, a newer change of another scope deletes (the key moved) and only a change of
    this one is inserted."""
    newer = f"{a.source}.`_seq` > {a.target}.`_seq`"
    state = [c.name for c in _state_columns(layout, scope)]
    sets = ", ".join(f"{quote(n)} = {a.source}.{quote(n)}" for n in [*state, "_seq", "_changed_at"])
    inserted = [c.name for c in mirror_columns(layout, scope)]
    gone = f"{a.source}.`op` = 'REMOVE'"
    new = f"{a.source}.`op` != 'REMOVE'"
    if scope is not None:
        holds = scope.holds(a.source + ".")
        gone, new = f"({gone} OR NOT ({holds}))", f"{new} AND {holds}"
    return [
        f"WHEN MATCHED AND {newer} AND {gone} THEN DELETE",
        f"WHEN MATCHED AND {newer} THEN UPDATE SET {sets}",
        f"WHEN NOT MATCHED AND {new} THEN\n"
        f"  INSERT ({quote_all(inserted)})\n  VALUES ({_values(inserted, a)})",
    ]


def _soft_clauses(layout: TableLayout, a: _Aliases, scope: MirrorScope | None = None) -> list[str]:
    """A newer change updates or inserts, a REMOVE too (``_deleted``); a soft delete keeps the
    mirror's state when the window holds no newer one (a state row always has an ``item``, so a
    NULL ``item`` in the source means "no state"). With a scope, a newer state of another scope
    deletes (the key moved), and a key is inserted only with a state of this one: a REMOVE
    without one in the window leaves the key in whichever mirror holds it."""
    newer = f"{a.source}.`_seq` > {a.target}.`_seq`"
    state = [c.name for c in _state_columns(layout, scope)]
    has_state = f"{a.source}.`item` IS NOT NULL"
    kept = ", ".join(
        f"{quote(n)} = IF({has_state}, {a.source}.{quote(n)}, {a.target}.{quote(n)})" for n in state
    )
    tail = ", ".join(
        f"{quote(n)} = {a.source}.{quote(n)}" for n in ("_seq", "_changed_at", "_deleted")
    )
    inserted = [c.name for c in mirror_columns(layout, scope)]
    moved, held = [], ""
    if scope is not None:
        holds = scope.holds(a.source + ".")
        moved = [f"WHEN MATCHED AND {newer} AND {has_state} AND NOT ({holds}) THEN DELETE"]
        held = f" AND {holds}"
    return [
        *moved,
        f"WHEN MATCHED AND {newer} THEN UPDATE SET {kept}, {tail}",
        f"WHEN NOT MATCHED{held} THEN\n"
        f"  INSERT ({quote_all(inserted)})\n  VALUES ({_values(inserted, a)})",
    ]


def _values(names: Sequence[str], a: _Aliases) -> str:
    return ", ".join(f"{a.source}.{quote(n)}" for n in names)
