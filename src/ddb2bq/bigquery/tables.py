"""The BigQuery dataset and tables of a replicated table: creating them, reading them, evolving them.

For DynamoDB table ``T`` in dataset ``D`` (see DESIGN.md):

- ``D.T_changes``, the changelog: partitioned by ``DATE(changed_at)``, clustered by the key
  columns (BigQuery clusters by at most four columns, and not by BYTES);
- ``D.T``, the mirror: a view (``view``), a table clustered by the keys (``merge``), or a table
  with ``PRIMARY KEY (...) NOT ENFORCED`` and ``max_staleness`` (``cdc``).

:func:`init_tables` (``ddb2bq init``) is idempotent: it creates what is missing, adds columns that
are missing, re-creates the view, and changes nothing else.

The changelog's schema is the record of the layout: each key and promoted column carries its
DynamoDB attribute name in its description (``DynamoDB attribute: <name>``), so
:func:`load_layout` rebuilds the exact layout, with the column names the naming rule gave when
each column was added, on any machine. Evolution is additive (:func:`evolve`): new promoted
attributes become new NULLABLE columns on the changelog and on the mirror, before any row that
needs them is written; no column is ever dropped or re-typed. A column that already exists keeps
its type, even when a later batch would have inferred another: values that do not fit stay in
``item`` (a type conflict).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery.errors import BigQueryHTTPError
from ddb2bq.bigquery.rest import RestClient
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.sql import (
    DEFAULT_DEADLINE,
    TableRef,
    api_error,
    api_errors,
    api_retry,
    run_query,
)
from ddb2bq.classes import data_class
from ddb2bq.config import Config, check_column_types, check_table_name
from ddb2bq.exceptions import ConfigError, RetryableError
from ddb2bq.schema import (
    CHANGELOG_COLUMNS,
    ENTITY_COLUMNS,
    Column,
    TableLayout,
    bigquery_table_name,
    build_layout,
)

if TYPE_CHECKING:
    from google.cloud import bigquery

    from ddb2bq.bigquery.entity_mirrors import ScopedMirror
    from ddb2bq.bigquery.mirror import MergeResult
    from ddb2bq.entities import Entities

# A cold Lambda container's first write imports this module for TableRefs and load_layout; what
# only init, schema evolution, the MERGE and entities need (the mirror's SQL, the generations
# table, the entity rules: about 10 ms of imports) is imported where it is used.

logger = logging.getLogger(__name__)

DESCRIPTION_PREFIX = "DynamoDB attribute: "
MAX_DESCRIPTION = 1024
_API_TYPES = {"INTEGER": "INT64", "BOOLEAN": "BOOL", "FLOAT": "FLOAT64", "RECORD": "STRUCT"}
_SCHEMA_TRIES = 3
_CHANGELOG_NOTE = "ddb2bq changelog:"  # the start of each table's description: what it is
_MIRROR_NOTE = "ddb2bq mirror:"
_KINDS = {"STRING": "S", "BYTES": "B"}
_METADATA_RETRY = RetryPolicy(max_attempts=10, initial=1.0, maximum=60.0, deadline=DEFAULT_DEADLINE)
"""The light client's retry of ``get_table``: the full client's ``api_retry()`` bounds."""

SchemaJson = Sequence[Mapping[str, Any]]
"""A table schema's ``fields`` as the REST API spells them (``SchemaField.to_api_repr()``)."""


@data_class(frozen=True, slots=True)
class TableRefs:
    """The changelog and the mirror of one replicated table."""

    changes: TableRef
    mirror: TableRef

    @property
    def generations(self) -> TableRef:
        """``T_generations``: when each generation's snapshot was complete."""
        from ddb2bq.bigquery.generations import generations_ref  # noqa: PLC0415 (see above)

        return generations_ref(self.changes)

    @classmethod
    def from_config(cls, config: Config, project: str | None = None) -> TableRefs:
        """``[target] project.dataset.table`` and its ``_changes`` table.

        The table is ``[target] table``, else the DynamoDB table's name made a BigQuery name by
        :func:`ddb2bq.schema.bigquery_table_name` (``orders.v2`` -> ``orders_v2_ace4ce8e``).
        A ``[target] table`` BigQuery refuses is a ConfigError that names one it accepts.

        >>> from ddb2bq.config import load_config
        >>> config = load_config(environ={"DDB2BQ_SOURCE_TABLE": "orders.v2",
        ...     "DDB2BQ_TARGET_PROJECT": "p", "DDB2BQ_TARGET_DATASET": "d"})
        >>> TableRefs.from_config(config).changes.api
        'p.d.orders_v2_ace4ce8e_changes'
        """
        project = config.target.project or project or ""
        for value, setting in ((project, "project"), (config.target.dataset, "dataset")):
            if not value:
                raise ConfigError(f"Set [target] {setting}: the BigQuery {setting} to write to.")
        table = _mirror_name(config)
        dataset = config.target.dataset
        return cls(
            TableRef(project, dataset, f"{table}_changes"), TableRef(project, dataset, table)
        )


def _mirror_name(config: Config) -> str:
    """The mirror's BigQuery name (see :meth:`TableRefs.from_config`)."""
    if config.target.table:
        check_table_name(config.target.table)
        return config.target.table
    if not config.source.table:
        raise ConfigError("Set [source] table (or [target] table): the table to replicate.")
    return bigquery_table_name(config.source.table)


def config_entities(config: Config, layout: TableLayout) -> Entities:
    """The ``[[entities]]`` of ``config`` for the table whose changelog has ``layout`` (its
    keys); raises ConfigError naming the entity and the setting (docs/entities.md)."""
    from ddb2bq.entities import Entities  # noqa: PLC0415 (see above)

    return Entities.from_config(
        list(config.entities),
        table=_mirror_name(config),
        keys=layout.key_names,
        key_types=layout.key_types,
    )


def with_config_entities(config: Config, layout: TableLayout) -> TableLayout:
    """``layout`` with the entities of ``config`` (none: ``layout`` unchanged)."""
    if not config.entities:
        return layout
    return layout.with_entities(config_entities(config, layout))


def mirrors_of(config: Config, refs: TableRefs, layout: TableLayout) -> list[ScopedMirror]:
    """Every mirror of the table: its own (``refs.mirror``), then one per entity, in rule order
    (:func:`~ddb2bq.bigquery.entity_mirrors.scoped_mirrors`); without entities, its own alone."""
    from ddb2bq.bigquery.entity_mirrors import scoped_mirrors  # noqa: PLC0415 (see above)
    from ddb2bq.entities import Entities  # noqa: PLC0415

    entities = config_entities(config, layout) if config.entities else Entities()
    return scoped_mirrors(layout, refs.mirror, entities, promote=config.columns.promote)


@data_class()
class InitReport:
    """What :func:`init_tables` did, one sentence per step, and the resulting layout."""

    layout: TableLayout
    actions: list[str] = field(default_factory=list)


def initial_layout(config: Config, key_schema: Sequence[tuple[str, str]]) -> TableLayout:
    """The layout before any item is seen: keys, and promoted attributes whose type is configured
    (the others get a column once a value shows their type).

    Raises ConfigError when ``[columns] types`` names an attribute that is neither promoted nor
    a key: no column would ever have that type.
    """
    key_names = {name for name, _ in key_schema}
    check_column_types(config.columns, [name for name, _ in key_schema], config.promoted_attributes)
    types = {a: t.upper() for a, t in config.columns.types.items()}
    promote = config.promoted_attributes
    promoted = {a: t for a, t in types.items() if a in promote and a not in key_names}
    layout = build_layout(
        key_schema,
        promoted=promoted,
        soft_deletes=config.target.deletes == "soft",
        key_column_types={a: t for a, t in types.items() if a in key_names},
        old_images=config.target.old_images,
    )
    return with_config_entities(config, layout)


def load_layout(
    client: bigquery.Client | RestClient,
    refs: TableRefs,
    base: TableLayout | None = None,
    *,
    soft: bool = False,
    entities: bool = False,
    old_images: bool = False,
) -> TableLayout:
    """The layout recorded in the changelog's schema.

    ``base`` gives the keys and the delete mode; without it the keys are the columns between
    ``ingested_at`` and ``new_image`` (where the changelog puts them) and ``soft`` the delete
    mode, so that ``ddb2bq merge`` needs no DynamoDB access. Raises ConfigError when the
    changelog does not exist yet: run ``ddb2bq init`` first. ``client`` is the full client or
    the light :class:`~ddb2bq.bigquery.rest.RestClient` (the Lambda's), with the same result.
    ``entities``: the configuration has ``[[entities]]``, so the changelog must have the
    ``_entity`` and ``_parts`` columns (else every row would be refused: ConfigError).
    ``old_images``: ``[target] old_images`` is on, so a lean changelog must have ``old_item``
    and ``old_item_types`` (ConfigError: run ``ddb2bq init``). The layout says whether the
    changelog is lean (:class:`~ddb2bq.schema.TableLayout`), as its schema shows.
    """
    fields = _schema_json(client, refs.changes)
    if fields is None:
        raise ConfigError(f"The changelog table {refs.changes} does not exist; run `ddb2bq init`.")
    if entities and not set(ENTITY_COLUMNS) <= {str(f.get("name")) for f in fields}:
        raise ConfigError(
            f"The changelog table {refs.changes} has no _entity and _parts columns, which "
            "[[entities]] needs: run `ddb2bq init` (it adds them and classifies the rows "
            "written before), then start the replication again."
        )
    layout = layout_from_schema_json(fields, base or _stored_keys(fields, soft))
    if old_images and not layout.old_images:
        layout = dataclasses.replace(layout, old_images=True)
    if layout.lean and layout.old_images and "old_item" not in {f.get("name") for f in fields}:
        raise ConfigError(
            f"The changelog table {refs.changes} has no old_item and old_item_types columns, "
            "which [target] old_images = true needs: run `ddb2bq init` (it adds them), then "
            "start the replication again."
        )
    return layout


def _schema_json(client: bigquery.Client | RestClient, ref: TableRef) -> SchemaJson | None:
    """The table's schema fields as JSON, or None when the table does not exist."""
    if not isinstance(client, RestClient):
        table = _get_table(client, ref)
        return None if table is None else [f.to_api_repr() for f in table.schema]
    outcome = _METADATA_RETRY.call(lambda: client.get_table(ref.api))
    error = outcome.error
    if error is None:
        fields: SchemaJson = (outcome.value or {}).get("schema", {}).get("fields", [])
        return fields
    if isinstance(error, BigQueryHTTPError) and error.code == 404:
        return None
    raise api_error(error, str(ref)) from error


def _stored_keys(fields: SchemaJson, soft: bool) -> TableLayout:
    names = [str(f["name"]) for f in fields]
    try:
        start = names.index("ingested_at") + 1
        end = names.index("new_image" if "new_image" in names else "is_ttl_delete")
    except ValueError as exc:
        raise ConfigError(f"{names} is not the schema of a ddb2bq changelog.") from exc
    keys = tuple(column_of_json(f) for f in fields[start:end])
    kinds = {c.attribute or c.name: _KINDS.get(c.type, "N") for c in keys}
    return TableLayout(keys, soft_deletes=soft, key_types=kinds)


def layout_from_schema(fields: Sequence[bigquery.SchemaField], base: TableLayout) -> TableLayout:
    """``base`` with its key column types and promoted columns read from a changelog schema."""
    return layout_from_schema_json([f.to_api_repr() for f in fields], base)


def layout_from_schema_json(fields: SchemaJson, base: TableLayout) -> TableLayout:
    """:func:`layout_from_schema` from the schema as the REST API returns it
    (``tables.get``'s ``schema.fields``), for the light client.

    >>> base = TableLayout((Column("Id", "BIGNUMERIC", "Id"),))
    >>> fields = [{"name": "Id", "type": "STRING"}, {"name": "status", "type": "STRING",
    ...            "description": "DynamoDB attribute: Status"}]
    >>> layout = layout_from_schema_json(fields, base)
    >>> layout.keys[0].type, layout.promoted
    ('STRING', (Column(name='status', type='STRING', attribute='Status', mode='NULLABLE'),))
    """
    by_name = {str(f["name"]).lower(): f for f in fields}
    keys = tuple(_key_column(key, by_name.get(key.name.lower())) for key in base.keys)
    fixed = {n.lower() for n in (*CHANGELOG_COLUMNS, *(k.name for k in keys))}
    promoted = tuple(column_of_json(f) for f in fields if not _is_fixed(f, fixed))
    names = {str(f["name"]) for f in fields}
    return dataclasses.replace(
        base,
        keys=keys,
        promoted=promoted,
        lean="item_types" in names,
        earlier_images="new_image" in names,
    )


def _is_fixed(field: Mapping[str, Any], fixed: set[str]) -> bool:
    """Whether ``field`` is one of ddb2bq's own changelog columns (or a key). ``_entity`` and
    ``_parts`` are, unless an attribute's description says that it is a promoted column."""
    name = str(field["name"])
    if name in ENTITY_COLUMNS and str(field.get("description") or "").startswith(
        DESCRIPTION_PREFIX
    ):
        return False
    return name.lower() in fixed


def _key_column(key: Column, found: Mapping[str, Any] | None) -> Column:
    """A key column with the type its table has (it may be configured, e.g. STRING for N)."""
    return key if found is None else Column(key.name, column_of_json(found).type, key.attribute)


def column_of(schema_field: bigquery.SchemaField) -> Column:
    """The layout column of a BigQuery schema field (its attribute read from the description)."""
    return column_of_json(schema_field.to_api_repr())


def column_of_json(field: Mapping[str, Any]) -> Column:
    """:func:`column_of` from a schema field as the REST API spells it.

    >>> column_of_json({"name": "tags", "type": "STRING", "mode": "REPEATED"})
    Column(name='tags', type='ARRAY<STRING>', attribute='tags', mode='NULLABLE')
    """
    name = str(field["name"])
    kind = str(field.get("type", "")).upper()
    kind = _API_TYPES.get(kind, kind)
    description = str(field.get("description") or "")
    attribute = (
        description[len(DESCRIPTION_PREFIX) :]
        if description.startswith(DESCRIPTION_PREFIX)
        else name
    )
    mode = str(field.get("mode") or "NULLABLE").upper()
    if mode == "REPEATED":
        return Column(name, f"ARRAY<{kind}>", attribute=attribute)
    return Column(name, kind, attribute=attribute, mode=mode)


def schema_field(column: Column) -> bigquery.SchemaField:
    """The BigQuery schema field of a layout column; an attribute's column names it."""
    from google.cloud import bigquery  # noqa: PLC0415 (lazy: the Lambda's light path)

    if column.attribute is None:
        return bigquery.SchemaField(column.name, column.field_type, mode=column.field_mode)
    description = DESCRIPTION_PREFIX + column.attribute
    if len(description) > MAX_DESCRIPTION:
        raise ConfigError(
            f"Attribute {column.attribute[:40]!r}... has a name too long to promote to a "
            "column (over 1000 characters); remove it from [columns] promote."
        )
    return bigquery.SchemaField(
        column.name, column.field_type, mode=column.field_mode, description=description
    )


def init_tables(client: bigquery.Client, config: Config, layout: TableLayout) -> InitReport:
    """Create the dataset, the changelog and the mirror of ``config`` when missing; add missing
    columns; re-create the view. Safe to run again at any time.

    Example (with a client and a configuration)::

        report = init_tables(client, config, initial_layout(config, key_schema))
        report.actions
        # ['created dataset p.d', 'created changelog p.d.orders_changes', 'created view p.d.orders']
    """
    refs = TableRefs.from_config(config, client.project)
    report = InitReport(layout)
    _ensure_dataset(client, refs.changes, config.target.location, report)
    existing = _get_table(client, refs.changes)
    if existing is not None and (
        existing.table_type == "VIEW" or (existing.description or "").startswith(_MIRROR_NOTE)
    ):
        raise _taken(refs.changes, "the mirror")
    if existing is None:
        _create_changelog(client, refs.changes, layout)
        report.actions.append(f"created changelog {refs.changes}")
    else:
        report.layout = layout_from_schema(existing.schema, layout)
        report.actions.append(f"kept changelog {refs.changes}")
    if existing is not None:  # the columns a newer ddb2bq or a changed configuration needs
        report.layout = dataclasses.replace(report.layout, lean=True)
        added = add_columns(client, refs.changes, report.layout.changelog_columns())
        if added:
            report.actions.append(f"added columns {', '.join(added)} to {refs.changes}")
    wanted = {c.attribute or c.name: c.type for c in layout.promoted}
    report.layout = _add_promoted(client, refs.changes, report.layout, wanted, report.actions)
    from ddb2bq.bigquery.generations import ensure_table  # noqa: PLC0415 (see above)

    if ensure_table(client, refs.generations):
        report.actions.append(f"created generations table {refs.generations}")
    _ensure_mirror(client, config, refs, report)
    return report


def evolve(
    client: bigquery.Client,
    config: Config,
    layout: TableLayout,
    attributes: Mapping[str, str],
) -> TableLayout:
    """Add columns for promoted ``attributes`` (name -> type) to the changelog and the mirror.

    Starts from the changelog's current schema (another worker may have added columns), so the
    result is the table's true layout; attributes that already have a column keep it.
    """
    refs = TableRefs.from_config(config, client.project)
    current = load_layout(client, refs, layout)
    actions: list[str] = []
    evolved = _add_promoted(client, refs.changes, current, attributes, actions)
    if evolved != layout or actions:
        sync_mirror(client, config, refs, evolved)
        for action in actions:
            logger.info("Schema evolution: %s.", action)
    return evolved


def merge_mirror(
    client: bigquery.Client,
    config: Config,
    *,
    full: bool = False,
    lookback: timedelta | None = None,
) -> MergeResult:
    """Run the ``merge`` mirror's MERGE once, with the layout the changelog has now.

    A writer may have added columns since this process read the layout; a MERGE built from an
    older layout would leave them NULL in the mirror for good (later runs skip rows whose ``seq``
    is not newer). So the layout is read from the changelog, and the mirror given its columns,
    before each run. ``lookback`` defaults to :data:`ddb2bq.bigquery.mirror.DEFAULT_LOOKBACK`.
    """
    from ddb2bq.bigquery.mirror import DEFAULT_LOOKBACK, run_merge  # noqa: PLC0415 (see above)

    refs = TableRefs.from_config(config, client.project)
    layout = load_layout(client, refs, soft=config.target.deletes == "soft")
    sync_mirror(client, config, refs, layout)
    results = [
        run_merge(
            client,
            mirror.layout,
            refs.changes,
            mirror.ref,
            full=full,
            lookback=DEFAULT_LOOKBACK if lookback is None else lookback,
            generations=refs.generations,
            scope=mirror.scope,
        )
        for mirror in mirrors_of(config, refs, layout)
    ]
    return _total(results)


def _total(results: Sequence[MergeResult]) -> MergeResult:
    """The MERGEs of a table's mirrors as one: the rows summed, the earliest watermark."""
    if len(results) == 1:
        return results[0]
    from ddb2bq.bigquery.mirror import MergeResult  # noqa: PLC0415 (see above)

    return MergeResult(
        sum(r.inserted for r in results),
        sum(r.updated for r in results),
        sum(r.deleted for r in results),
        min(r.watermark_us for r in results),
        any(r.full for r in results),
    )


def sync_mirror(
    client: bigquery.Client, config: Config, refs: TableRefs, layout: TableLayout
) -> list[str]:
    """Bring the mirror to ``layout``: re-create the view, or add the missing table columns
    (and create ``T_generations`` when a mirror made by an older ddb2bq lacks it)."""
    from ddb2bq.bigquery.generations import ensure_table  # noqa: PLC0415 (see above)

    created = ensure_table(client, refs.generations)
    actions = [f"created generations table {refs.generations}"] if created else []
    for mirror in mirrors_of(config, refs, layout):
        actions += _sync_one(client, config, refs, mirror)
    return actions


def _sync_one(
    client: bigquery.Client, config: Config, refs: TableRefs, mirror: ScopedMirror
) -> list[str]:
    if config.target.mirror == "view":
        run_query(client, mirror.view_ddl(refs.changes, refs.generations))
        return [f"replaced view {mirror.ref}"]
    added = add_columns(client, mirror.ref, mirror.columns())
    return [f"added columns {', '.join(added)} to {mirror.ref}"] if added else []


def add_columns(client: bigquery.Client, ref: TableRef, columns: Sequence[Column]) -> list[str]:
    """Append the ``columns`` a table lacks (compared case-insensitively) as NULLABLE columns.

    Never drops or re-types a column. Retries when another writer changed the schema meanwhile
    (the update carries the table's etag). Returns the names added.
    """
    from google.api_core.exceptions import PreconditionFailed  # noqa: PLC0415 (lazy, as above)

    for _ in range(_SCHEMA_TRIES):
        table = _get_table(client, ref)
        if table is None:
            raise ConfigError(f"The table {ref} does not exist; run `ddb2bq init`.")
        present = {f.name.lower() for f in table.schema}
        missing = [c for c in columns if c.name.lower() not in present]
        if not missing:
            return []
        table.schema = [*table.schema, *(schema_field(_nullable(c)) for c in missing)]
        try:
            client.update_table(table, ["schema"], retry=api_retry())
        except PreconditionFailed:
            continue
        except api_errors() as exc:
            raise api_error(exc, f"adding columns to {ref}") from exc
        return [c.name for c in missing]
    raise RetryableError(
        f"The schema of {ref} changed under each of {_SCHEMA_TRIES} tries to add columns."
    )


def _add_promoted(
    client: bigquery.Client,
    ref: TableRef,
    layout: TableLayout,
    attributes: Mapping[str, str],
    actions: list[str],
) -> TableLayout:
    """Add the columns ``attributes`` need; return the layout the table has afterwards.

    Read back rather than assumed: a worker racing this one may have taken a name first (say
    ``Status`` while this one adds ``status``); the table's descriptions then say whose column it
    is, and the attribute left without one gets its own on its next appearance.
    """
    wanted = layout.with_promoted(attributes)
    if wanted == layout:
        return layout
    added = add_columns(client, ref, wanted.changelog_columns())
    if added:
        actions.append(f"added columns {', '.join(added)} to {ref}")
    table = _get_table(client, ref)
    return wanted if table is None else layout_from_schema(table.schema, layout)


def _nullable(column: Column) -> Column:
    mode = "REPEATED" if column.type.startswith("ARRAY<") else "NULLABLE"
    return Column(column.name, column.type, column.attribute, mode)


def _ensure_dataset(
    client: bigquery.Client, ref: TableRef, location: str, report: InitReport
) -> None:
    from google.api_core.exceptions import NotFound  # noqa: PLC0415 (lazy, as above)
    from google.cloud import bigquery  # noqa: PLC0415

    dataset = bigquery.Dataset(ref.dataset_id)
    dataset.location = location
    try:
        existing = _call(lambda: client.get_dataset(ref.dataset_id, retry=api_retry()), ref)
    except NotFound:
        _call(lambda: client.create_dataset(dataset, exists_ok=True, retry=api_retry()), ref)
        report.actions.append(f"created dataset {ref.dataset_id} in {location}")
        return
    if (existing.location or "").lower() != location.lower():
        raise ConfigError(
            f"The dataset {ref.dataset_id} exists in {existing.location}, not in {location} "
            "([target] location); set [target] location to the dataset's location."
        )
    report.actions.append(f"kept dataset {ref.dataset_id}")


def _create_changelog(client: bigquery.Client, ref: TableRef, layout: TableLayout) -> None:
    from google.cloud import bigquery  # noqa: PLC0415 (lazy, as above)

    from ddb2bq.bigquery.mirror import clustering_columns  # noqa: PLC0415 (see above)

    table = bigquery.Table(ref.api, schema=[schema_field(c) for c in layout.changelog_columns()])
    table.time_partitioning = bigquery.TimePartitioning(field="changed_at")
    table.clustering_fields = clustering_columns(layout) or None
    table.description = f"{_CHANGELOG_NOTE} one row per change, append-only."
    _call(lambda: client.create_table(table, exists_ok=True, retry=api_retry()), ref)


def _ensure_mirror(
    client: bigquery.Client, config: Config, refs: TableRefs, report: InitReport
) -> None:
    for mirror in mirrors_of(config, refs, report.layout):
        report.actions += _ensure_one(client, config, refs, mirror)


def _ensure_one(
    client: bigquery.Client, config: Config, refs: TableRefs, mirror: ScopedMirror
) -> list[str]:
    """Create one mirror (the table's own, or an entity's) when missing, else bring it to its
    layout."""
    mode, ref = config.target.mirror, mirror.ref
    existing = _get_table(client, ref)
    if existing is not None and (existing.description or "").startswith(_CHANGELOG_NOTE):
        raise _taken(ref, "the changelog")
    kind = "VIEW" if mode == "view" else "TABLE"
    if existing is not None and existing.table_type != kind:
        raise ConfigError(
            f"{ref} exists as a {existing.table_type}, but [target] mirror = {mode!r} needs a "
            f"{kind}; drop it (the changelog holds every change) or choose another mode."
        )
    if existing is not None and mode != "view":
        return [f"kept mirror table {ref}", *_sync_one(client, config, refs, mirror)]
    if mode == "view":
        return _sync_one(client, config, refs, mirror)
    if mode == "cdc":
        run_query(client, mirror.cdc_table_ddl())
        return [f"created cdc mirror table {ref}"]
    _create_merge_mirror(client, ref, mirror)
    return [f"created mirror table {ref}"]


def _create_merge_mirror(client: bigquery.Client, ref: TableRef, mirror: ScopedMirror) -> None:
    from google.cloud import bigquery  # noqa: PLC0415 (lazy, as above)

    from ddb2bq.bigquery.mirror import clustering_columns  # noqa: PLC0415 (see above)

    table = bigquery.Table(ref.api, schema=[schema_field(c) for c in mirror.columns()])
    table.clustering_fields = clustering_columns(mirror.layout) or None
    table.description = f"{_MIRROR_NOTE} one row per item, kept by `ddb2bq merge`."
    _call(lambda: client.create_table(table, exists_ok=True, retry=api_retry()), ref)


def _taken(ref: TableRef, role: str) -> ConfigError:
    """``ref`` already serves another replication in the dataset as ``role``: a DynamoDB table
    ``T_changes`` beside ``T`` would share tables with it."""
    return ConfigError(
        f"{ref} is {role} of another replication in this dataset; set [target] table to "
        "another name, or replicate into another [target] dataset."
    )


def _get_table(client: bigquery.Client, ref: TableRef) -> bigquery.Table | None:
    from google.api_core.exceptions import NotFound  # noqa: PLC0415 (lazy, as above)

    try:
        table: bigquery.Table = _call(lambda: client.get_table(ref.api, retry=api_retry()), ref)
    except NotFound:
        return None
    return table


def _call(call: Any, ref: TableRef) -> Any:
    """Run a client call; NotFound passes through, other failures become ddb2bq errors."""
    from google.api_core.exceptions import NotFound  # noqa: PLC0415 (lazy, as above)

    try:
        return call()
    except NotFound:
        raise
    except api_errors() as exc:
        raise api_error(exc, str(ref)) from exc
