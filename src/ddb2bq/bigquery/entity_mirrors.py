"""The mirrors of a table with entities (single-table design): ``D.<entity>`` for each entity and
``D.T`` for the items of none, all over the one changelog ``D.T_changes``.

The changelog records, for each change, the entity decided when it was converted (``_entity``)
and that entity's typed key parts as one JSON object (``_parts``). Which mirror holds a key is
:class:`~ddb2bq.bigquery.mirror.MirrorScope`'s rule: the entity of its state row, so an item whose
``type`` changes moves from one mirror to the other, and a REMOVE removes (or, with soft deletes,
flags) the key in whichever mirror holds it, whatever its own ``_entity`` says. The mirror SQL is
:mod:`ddb2bq.bigquery.mirror`'s, given a scope; this module builds the scope and the layout of
each mirror.

An entity's mirror has the key columns, the key parts as typed columns
(:meth:`~ddb2bq.entities.Entity.columns`), the entity's promoted columns, ``item``, ``_seq`` and
``_changed_at`` (and ``_deleted``). Each part is read back from ``_parts`` exactly:

=========== ============================================= ====================================
type        SQL for part ``p``                            the JSON value in ``_parts``
=========== ============================================= ====================================
STRING      ``JSON_VALUE(`_parts`, '$.p')``               string
INT64       ``CAST(JSON_VALUE(`_parts`, '$.p') AS INT64)`` integer (exact to -2^63 .. 2^63-1)
NUMERIC     ``CAST(... AS NUMERIC)``                      string, the exact decimal
BIGNUMERIC  ``CAST(... AS BIGNUMERIC)``                   string, the exact decimal
DATE        ``CAST(... AS DATE)``                         string ``YYYY-MM-DD``
TIMESTAMP   ``CAST(... AS TIMESTAMP)``                    string, the instant in UTC (``...Z``)
BOOL        ``CAST(... AS BOOL)``                         boolean
=========== ============================================= ====================================

``JSON_VALUE`` gives a JSON number's digits as they are, so the cast is exact (``LAX_INT64`` is
not, on the local emulator, near 2^63). ``CAST``, not ``SAFE_CAST``: the converter writes every
part in its type's canonical spelling, so a part that did not cast would be a bug to see, not a
NULL to hide. Part names are column names (letters, digits, underscores), so the JSON path is
plain text; any other name is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ddb2bq.bigquery.mirror import (
    MirrorScope,
    ScopeColumn,
    cdc_table_ddl,
    merge_sql,
    mirror_columns,
    view_ddl,
)
from ddb2bq.bigquery.sql import TableRef
from ddb2bq.entities import PART_TYPES, Entities, Entity
from ddb2bq.exceptions import ConfigError
from ddb2bq.schema import Column, TableLayout

PARTS_COLUMN = "_parts"
ENTITY_COLUMN = "_entity"
DEFAULT_SCOPE = MirrorScope()
"""The scope of the table's own mirror when the table has entities: the keys of no entity."""

_PART_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def part_sql(column: Column) -> str:
    """The SQL reading key part ``column`` (a column of :meth:`Entity.columns`) from ``_parts``.

    >>> part_sql(Column("order_id", "INT64"))
    "CAST(JSON_VALUE(`_parts`, '$.order_id') AS INT64)"
    >>> part_sql(Column("user_id", "STRING"))
    "JSON_VALUE(`_parts`, '$.user_id')"
    """
    if not _PART_NAME.fullmatch(column.name):
        raise ValueError(
            f"The key part {column.name!r} is no column name: use letters, digits and "
            "underscores, not starting with a digit."
        )
    if column.type not in PART_TYPES:
        raise ValueError(
            f"The key part {column.name!r} has the type {column.type!r}, no part type."
        )
    value = f"JSON_VALUE(`{PARTS_COLUMN}`, '$.{column.name}')"
    return value if column.type == "STRING" else f"CAST({value} AS {column.type})"


def entity_scope(entity: Entity) -> MirrorScope:
    """The scope of ``entity``'s mirror: its keys, and its key parts as typed columns.

    >>> orders = Entity("orders", {"sk": "ORDER#{order_id}"}, {"order_id": "INT64"})
    >>> [(c.name, c.type) for c in entity_scope(orders).columns]
    [('order_id', 'INT64')]
    """
    columns = tuple(ScopeColumn(c.name, c.type, part_sql(c)) for c in entity.columns())
    return MirrorScope(entity.name, columns)


def entity_layout(entity: Entity, layout: TableLayout) -> TableLayout:
    """The layout of ``entity``'s mirror from the changelog's ``layout``: the keys, the delete
    mode, and the promoted columns of the entity's ``promote`` attributes that have a column
    yet (one appears once a value shows its type, as for the table's mirror).

    Raises ConfigError when a key part has the name of another column of the mirror.
    """
    promoted = tuple(c for c in layout.promoted if (c.attribute or c.name) in entity.promote)
    taken = {c.name.lower(): c.name for c in (*layout.keys, *promoted)}
    for part in entity.columns():
        if part.name.lower() in taken:
            raise ConfigError(
                f"Entity {entity.name!r}: the key part {{{part.name}}} would be a second column "
                f"named {taken[part.name.lower()]!r} of its mirror; rename the placeholder."
            )
    return TableLayout(layout.keys, promoted, layout.soft_deletes, layout.key_types)


def default_layout(
    layout: TableLayout, entities: Entities, promote: Sequence[str] = ()
) -> TableLayout:
    """The layout of the table's own mirror when it has entities: ``layout`` without the
    columns that only entities promote (``promote``: the table's ``[columns] promote``)."""
    only_entities = {a for e in entities for a in e.promote} - set(promote)
    promoted = tuple(c for c in layout.promoted if (c.attribute or c.name) not in only_entities)
    return TableLayout(layout.keys, promoted, layout.soft_deletes, layout.key_types)


@dataclass(frozen=True, slots=True)
class ScopedMirror:
    """One mirror of a table: where it is, its layout, and its scope (None: the only mirror
    of a table without entities, which holds every key)."""

    ref: TableRef
    layout: TableLayout
    scope: MirrorScope | None

    def columns(self) -> list[Column]:
        """The mirror's columns, in order (a ``merge`` table's schema)."""
        return mirror_columns(self.layout, self.scope)

    def view_ddl(self, changes: TableRef, generations: TableRef | None = None) -> str:
        """``CREATE OR REPLACE VIEW`` of this mirror in ``view`` mode."""
        return view_ddl(self.layout, changes, self.ref, generations, scope=self.scope)

    def merge_sql(self, changes: TableRef) -> str:
        """The incremental MERGE of this mirror in ``merge`` mode (``@since``, ``@after``)."""
        return merge_sql(self.layout, changes, self.ref, scope=self.scope)

    def cdc_table_ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` of this mirror in ``cdc`` mode."""
        return cdc_table_ddl(self.layout, self.ref, scope=self.scope)


def scoped_mirrors(
    layout: TableLayout, mirror: TableRef, entities: Entities, *, promote: Sequence[str] = ()
) -> list[ScopedMirror]:
    """Every mirror of the table whose changelog has ``layout`` and whose own mirror is
    ``mirror``: that one first, then one per entity (``D.<entity name>``), in rule order.
    Without entities, ``mirror`` alone, unscoped: exactly the mirror of a table without them.

    >>> from ddb2bq.schema import build_layout
    >>> users = Entity("users", {"pk": "USER#{user_id}"})
    >>> mirrors = scoped_mirrors(build_layout([("pk", "S")]), TableRef("p", "d", "shop"),
    ...                          Entities((users,)))
    >>> [(m.ref.table, [c.name for c in m.columns()]) for m in mirrors]
    [('shop', ['pk', 'item', '_seq', '_changed_at']), ('users', ['pk', 'user_id', 'item', '_seq', '_changed_at'])]
    """
    if not len(entities):
        return [ScopedMirror(mirror, layout, None)]
    own = ScopedMirror(mirror, default_layout(layout, entities, promote), DEFAULT_SCOPE)
    return [own, *(_entity_mirror(e, layout, mirror) for e in entities)]


def _entity_mirror(entity: Entity, layout: TableLayout, mirror: TableRef) -> ScopedMirror:
    ref = TableRef(mirror.project, mirror.dataset, entity.name)
    return ScopedMirror(ref, entity_layout(entity, layout), entity_scope(entity))
