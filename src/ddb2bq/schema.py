"""The BigQuery layout of a replicated table: column names, column types, and their evolution.

Column names. DynamoDB attribute names are any UTF-8 text; BigQuery column names are letters,
digits and underscores, start with a letter or underscore, are compared case-insensitively and
are at most 300 characters. One rule maps the first to the second, deterministically:

1. every character other than ``A-Z a-z 0-9 _`` becomes ``_``; a name starting with a digit (or
   empty) gets a leading ``_``; a name starting with a prefix BigQuery reserves (``_CHANGE_``,
   ``_PARTITION``, ``_TABLE_``, ``_FILE_``, ``_ROW_TIMESTAMP``, ``_COLIDENTIFIER``) gets a
   leading ``a``;
2. an attribute whose name changed in step 1, is longer than 300 characters, or collides
   (case-insensitively) with a column already taken gets ``_`` and 8 hex digits of the SHA-256
   of its original name appended (the name cut to fit 300 characters);
3. attributes are named in code-point order of their original names, after the columns that
   already exist, so existing columns never change name and a new one never steals a name.

``first name`` -> ``first_name_1b836d86``; ``Status`` and ``status`` -> ``Status`` and
``status_<hash>``; ``item`` -> ``item_<hash>`` (``item`` is one of ddb2bq's own columns).

Types. A promoted attribute's column type is configured, or inferred from sample items: S ->
STRING, B -> BYTES, BOOL -> BOOL, N -> the narrowest of INT64 -> NUMERIC -> BIGNUMERIC ->
STRING holding every value seen, SS/NS/BS -> ARRAY of the element type, M and L -> JSON; a mix
of kinds -> JSON. Evolution is additive only: new columns, never a changed or dropped one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import Protocol

from ddb2bq.classes import data_class
from ddb2bq.config import Config, check_column_types
from ddb2bq.convert import number_kind, parse_number, plain, widen
from ddb2bq.exceptions import ConfigError, ConversionError
from ddb2bq.records import AttributeValue, Change, Item

MAX_NAME = 300
RESERVED_PREFIXES = (
    "_change_",
    "_partition",
    "_table_",
    "_file_",
    "_row_timestamp",
    "_colidentifier",
)
_INVALID = re.compile(r"[^A-Za-z0-9_]")

ENTITY_COLUMNS = ("_entity", "_parts")
"""The changelog's columns of a table with entities: the change's entity and its key parts."""
EARLIER_IMAGE_COLUMNS = ("new_image", "old_image")
"""The images as DynamoDB JSON, in changelogs made before the lean row (:mod:`ddb2bq.images`)."""
CHANGELOG_COLUMNS = (
    "event_id", "op", "seq", "changed_at", "ingested_at", *EARLIER_IMAGE_COLUMNS,
    "is_ttl_delete", "item", "item_types", "old_item", "old_item_types", *ENTITY_COLUMNS,
)  # fmt: skip
MIRROR_COLUMNS = ("item", "_seq", "_changed_at", "_deleted")
KEY_TYPES = {"S": "STRING", "N": "BIGNUMERIC", "B": "BYTES"}
_SCALAR_TYPES = {"S": "STRING", "B": "BYTES", "BOOL": "BOOL", "M": "JSON", "L": "JSON"}
_SET_TYPES = {"SS": "STRING", "BS": "BYTES"}


@data_class(frozen=True, slots=True)
class Column:
    """One BigQuery column: ``type`` is ``STRING``, ``NUMERIC``, ``ARRAY<STRING>``, ..."""

    name: str
    type: str
    attribute: str | None = None
    mode: str = "NULLABLE"

    @property
    def field_type(self) -> str:
        """The element type for ``ARRAY<...>`` columns, else the type."""
        return self.type[6:-1] if self.type.startswith("ARRAY<") else self.type

    @property
    def field_mode(self) -> str:
        """REPEATED for ``ARRAY<...>`` columns, else the column's mode."""
        return "REPEATED" if self.type.startswith("ARRAY<") else self.mode


class Named(Protocol):
    """What a classified change names: its entity."""

    @property
    def name(self) -> str: ...


class Classifier(Protocol):
    """The entities of a table (:class:`ddb2bq.entities.Entities`), as the row builder uses
    them: an image's entity and typed key parts, or None when it is of none."""

    def __len__(self) -> int: ...

    def classify(self, image: Item) -> tuple[Named, dict[str, object]] | None: ...

    def classify_keys(
        self, keys: Item, key_names: Sequence[str]
    ) -> tuple[Named, dict[str, object]] | None: ...


@data_class(frozen=True, slots=True)
class TableLayout:
    """The columns of one replicated table's changelog and mirror.

    ``keys`` are the key columns (hash key first), ``promoted`` the promoted attribute columns.
    ``entities``: the table's entities (single-table design), when it has any; the changelog
    then has the columns ``_entity`` and ``_parts`` (:data:`ENTITY_COLUMNS`).

    The images (:mod:`ddb2bq.images`): ``lean`` rows hold the new image as ``item`` and
    ``item_types``, and the old image, with ``old_images``, as ``old_item`` and
    ``old_item_types``. A changelog made before the lean row has ``new_image`` and ``old_image``
    (``earlier_images``); until ``ddb2bq init`` adds ``item_types`` to it (``lean`` False) rows
    are written to it as before, so that a new package never sends a column the table lacks.
    """

    keys: tuple[Column, ...]
    promoted: tuple[Column, ...] = ()
    soft_deletes: bool = False
    key_types: Mapping[str, str] = field(default_factory=dict)
    entities: Classifier | None = None
    old_images: bool = False
    lean: bool = True
    earlier_images: bool = False

    @property
    def has_earlier_images(self) -> bool:
        """Whether the changelog has ``new_image`` and ``old_image``: made before the lean row,
        or not yet given ``item_types`` (then its rows are written there)."""
        return self.earlier_images or not self.lean

    @property
    def has_entities(self) -> bool:
        """Whether changes are classified into entities (``_entity`` and ``_parts``)."""
        return self.entities is not None and len(self.entities) > 0

    def with_entities(self, entities: Classifier | None) -> TableLayout:
        """This layout, its changes classified by ``entities``."""
        return dataclasses.replace(self, entities=entities)

    @property
    def key_names(self) -> tuple[str, ...]:
        """The DynamoDB key attribute names, hash key first."""
        return tuple(c.attribute or c.name for c in self.keys)

    def changelog_columns(self) -> list[Column]:
        """The changelog's columns, in order."""
        fixed = [
            Column("event_id", "STRING", mode="REQUIRED"),
            Column("op", "STRING", mode="REQUIRED"),
            Column("seq", "STRING", mode="REQUIRED"),
            Column("changed_at", "TIMESTAMP", mode="REQUIRED"),
            Column("ingested_at", "TIMESTAMP"),
        ]
        images = []
        if self.has_earlier_images:
            images += [Column("new_image", "JSON"), Column("old_image", "JSON")]
        images += [Column("is_ttl_delete", "BOOL"), Column("item", "JSON")]
        if self.lean:
            images.append(Column("item_types", "JSON"))
            if self.old_images:
                images += [Column("old_item", "JSON"), Column("old_item_types", "JSON")]
        if self.has_entities:
            images += [Column("_entity", "STRING"), Column("_parts", "JSON")]
        return [*fixed, *self.keys, *images, *self.promoted]

    def mirror_columns(self) -> list[Column]:
        """The mirror's columns, in order."""
        tail = [
            Column("item", "JSON"),
            Column("_seq", "STRING"),
            Column("_changed_at", "TIMESTAMP"),
        ]
        if self.soft_deletes:
            tail.append(Column("_deleted", "BOOL"))
        return [*self.keys, *self.promoted, *tail]

    def with_promoted(self, attributes: Mapping[str, str]) -> TableLayout:
        """This layout plus columns for ``attributes`` (name -> type) not promoted yet."""
        known = {c.attribute for c in self.promoted}
        new = {a: t for a, t in attributes.items() if a not in known and a not in self.key_names}
        if not new:
            return self
        taken = [c.name for c in (*self.changelog_columns(), *self.mirror_columns())]
        names = assign_names(new, taken=taken)
        added = tuple(Column(names[a], new[a], attribute=a) for a in sorted(new))
        return dataclasses.replace(self, promoted=self.promoted + added)


def build_layout(
    key_schema: Sequence[tuple[str, str]],
    *,
    promoted: Mapping[str, str] | None = None,
    soft_deletes: bool = False,
    key_column_types: Mapping[str, str] | None = None,
    old_images: bool = False,
) -> TableLayout:
    """The layout for a table whose key is ``key_schema`` (``[(attribute, "S"|"N"|"B"), ...]``).

    ``promoted`` maps attribute names to column types; ``key_column_types`` overrides the
    BigQuery type of a key column (default: S -> STRING, N -> BIGNUMERIC, B -> BYTES);
    ``old_images``: the changelog stores old images too (``[target] old_images``).

    >>> layout = build_layout([("Id", "N")], promoted={"status": "STRING"})
    >>> [c.name for c in layout.mirror_columns()]
    ['Id', 'status', 'item', '_seq', '_changed_at']
    """
    overrides = key_column_types or {}
    for attribute, kind in key_schema:
        if kind not in KEY_TYPES:
            raise ConfigError(f"Key attribute {attribute!r} has type {kind!r}; keys are S, N or B.")
    taken = [*CHANGELOG_COLUMNS, *MIRROR_COLUMNS]
    names = assign_names([a for a, _ in key_schema], taken=taken, keep_order=True)
    keys = tuple(
        Column(names[a], overrides.get(a, KEY_TYPES[k]).upper(), attribute=a) for a, k in key_schema
    )
    key_types = {a: k for a, k in key_schema}
    layout = TableLayout(
        keys=keys, soft_deletes=soft_deletes, key_types=key_types, old_images=old_images
    )
    return layout.with_promoted({a: t.upper() for a, t in (promoted or {}).items()})


def column_base_name(attribute: str) -> str:
    """Step 1 of the naming rule: a name BigQuery accepts (it may still collide)."""
    name = _INVALID.sub("_", attribute)
    if not name or name[0].isdigit():
        name = "_" + name
    if name.lower().startswith(RESERVED_PREFIXES):
        name = "a" + name
    return name


def assign_names(
    attributes: Iterable[str], *, taken: Iterable[str] = (), keep_order: bool = False
) -> dict[str, str]:
    """Column names for ``attributes``, none colliding with ``taken`` or each other.

    >>> assign_names(["Status", "status", "first name", "_CHANGE_TYPE"])
    {'Status': 'Status', '_CHANGE_TYPE': 'a_CHANGE_TYPE_5c129770', 'first name': 'first_name_1b836d86', 'status': 'status_073c1634'}
    """
    used = {name.lower() for name in taken}
    result = {}
    for attribute in attributes if keep_order else sorted(attributes):
        name = column_base_name(attribute)
        if name != attribute or len(name) > MAX_NAME or name.lower() in used:
            name = _hashed(name, attribute, used)
        used.add(name.lower())
        result[attribute] = name
    return result


def _hashed(name: str, attribute: str, used: set[str]) -> str:
    import hashlib  # noqa: PLC0415 (lazy: its OpenSSL library costs a cold start ~3 ms)

    digest = hashlib.sha256(attribute.encode("utf-8", "surrogatepass")).hexdigest()
    for width in (8, 16, 32, 64):
        candidate = f"{name[: MAX_NAME - width - 1]}_{digest[:width]}"
        if candidate.lower() not in used:
            return candidate
    raise ConfigError(
        f"Cannot find a free column name for attribute {attribute!r}."
    )  # pragma: no cover


def infer_type(values: Iterable[AttributeValue]) -> str | None:
    """The column type holding every one of ``values``; None when all are NULL or there are none.

    Values that are not DynamoDB values (two type tags, a number outside DynamoDB's domain) are
    left out: building their change's rows refuses them, naming the record.

    >>> infer_type([{"N": "1"}, {"N": "2.5"}]), infer_type([{"S": "a"}, {"N": "1"}])
    ('NUMERIC', 'JSON')
    """
    inferred: str | None = None
    for value in values:
        kind = _value_type(value)
        if kind is None:
            continue
        if inferred is None or inferred == kind:
            inferred = kind
        elif _is_number(inferred) and _is_number(kind):
            inferred = _widen_types(inferred, kind)
        else:
            return "JSON"
    return None if inferred is None else inferred.replace("N:", "")


def infer_types(items: Iterable[Item], attributes: Iterable[str]) -> dict[str, str]:
    """Inferred column types of ``attributes`` over sample ``items`` (attributes never seen
    with a non-NULL value are left out)."""
    wanted = list(attributes)
    samples: dict[str, list[AttributeValue]] = {a: [] for a in wanted}
    for item in items:
        for attribute in wanted:
            if attribute in item:
                samples[attribute].append(item[attribute])
    inferred = {a: infer_type(v) for a, v in samples.items()}
    return {a: t for a, t in inferred.items() if t is not None}


def _is_number(column_type: str) -> bool:
    return column_type.startswith(("N:", "ARRAY<N:"))


def _widen_types(a: str, b: str) -> str:
    if a.startswith("ARRAY<") != b.startswith("ARRAY<"):
        return "JSON"
    if a.startswith("ARRAY<"):
        return f"ARRAY<N:{widen(a[8:-1], b[8:-1])}>"
    return f"N:{widen(a[2:], b[2:])}"


def _value_type(value: AttributeValue) -> str | None:
    if type(value) is not dict or len(value) != 1:
        return None
    ((tag, raw),) = value.items()
    if tag in _SCALAR_TYPES:
        return _SCALAR_TYPES[tag]
    if tag in _SET_TYPES:
        return f"ARRAY<{_SET_TYPES[tag]}>"
    try:
        if tag == "N":
            return f"N:{number_kind(parse_number(raw))}"
        if tag == "NS" and type(raw) is list:
            kind = "INT64"
            for member in raw:
                kind = widen(kind, number_kind(parse_number(member)))
            return f"ARRAY<N:{kind}>"
    except ConversionError:
        return None
    return None


def _key_kinds(keys: Item, names: Sequence[str]) -> list[str] | None:
    """The DynamoDB types (S, N, B) of the key attributes ``names`` in ``keys``, or None when
    one is not a valid S, N or B value."""
    kinds = []
    for name in names:
        value = keys.get(name)
        kind = next(iter(value), None) if type(value) is dict and len(value) == 1 else None
        if kind not in KEY_TYPES or not _converts(value):
            return None
        kinds.append(str(kind))
    return kinds


def _converts(value: AttributeValue | None) -> bool:
    """True when ``value`` is a valid DynamoDB value (its contents checked)."""
    if value is None:
        return False
    try:
        plain(value)
    except ConversionError:
        return False
    return True


def layout_for_changes(
    changes: Sequence[Change], config: Config, *, key_names: Sequence[str] = ()
) -> TableLayout:
    """A layout for ``changes`` read offline, without DescribeTable.

    Key attribute names come from ``key_names`` (else the first change's ``Keys``) and their
    types from the first change that has them all as S, N or B values (else STRING); promoted
    column types from ``[columns] types``, else inferred from the new images. A change that does
    not fit this layout is refused when its rows are built, by name, alone.
    """
    names = list(key_names) or list(changes[0].keys)
    check_column_types(config.columns, names, config.promoted_attributes)
    kinds = next(
        (k for k in (_key_kinds(c.keys, names) for c in changes) if k is not None),
        ["S"] * len(names),
    )
    key_schema = list(zip(names, kinds, strict=True))
    configured = {a: t.upper() for a, t in config.columns.types.items()}
    untyped = [a for a in config.promoted_attributes if a not in configured]
    images = (c.new_image for c in changes if c.new_image is not None)
    promoted = {**infer_types(images, untyped), **configured}
    key_types = {a: t for a, t in configured.items() if a in names}
    promoted = {a: t for a, t in promoted.items() if a not in names}
    return build_layout(
        key_schema,
        promoted=promoted,
        soft_deletes=config.target.deletes == "soft",
        key_column_types=key_types,
        old_images=config.target.old_images,
    )


def bigquery_table_name(dynamodb_table: str) -> str:
    """The BigQuery name of the mirror of DynamoDB table ``dynamodb_table`` (the changelog and
    generations tables add ``_changes`` and ``_generations`` to it).

    BigQuery table names are letters, marks, digits, connectors (``_``), dashes and spaces, at
    most 1,024 bytes; DynamoDB's also allow ``.``. A name BigQuery accepts (and that leaves room
    for ``_generations``) is kept as it is, so an existing replication keeps its tables. Any
    other, like a column name (step 2 of the rule above), has each refused character replaced by
    ``_`` (:func:`ddb2bq.config.table_name_characters`) and gets ``_`` and 8 hex digits of the
    SHA-256 of the original name appended, cut to fit: ``orders.v2``, ``orders-v2`` and
    ``orders_v2`` stay three tables.

    >>> bigquery_table_name("orders-v2"), bigquery_table_name("orders.v2")
    ('orders-v2', 'orders_v2_ace4ce8e')
    """
    from ddb2bq.config import MAX_TABLE_NAME_BYTES, table_name_characters  # noqa: PLC0415

    name = table_name_characters(dynamodb_table)
    if name == dynamodb_table and 0 < len(name.encode("utf-8")) <= MAX_TABLE_NAME_BYTES:
        return name
    import hashlib  # noqa: PLC0415 (lazy: its OpenSSL library costs a cold start ~3 ms)

    digest = hashlib.sha256(dynamodb_table.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    head = name.encode("utf-8")[: MAX_TABLE_NAME_BYTES - 9].decode("utf-8", "ignore")
    return f"{head}_{digest}"
