"""Classifying the changelog's rows again, after an entity was added: from the changelog alone.

A change converted before its entity existed has ``_entity`` NULL (and ``_parts`` NULL), so it
stays in the table's own mirror. Its row still holds the whole change (``item`` and
``item_types`` rebuild its new image, :mod:`ddb2bq.images`; the old image is there with
``[target] old_images``; rows written before the lean format have ``new_image`` and
``old_image``; the key columns are its keys), so the entity it has now is decided in Python with
the same rules as the converter (:class:`~ddb2bq.entities.Entities`), without reading DynamoDB,
and written back in one statement:

1. read ``event_id``, ``seq``, ``op``, the keys and both images of the rows whose ``_entity`` IS
   NULL (one query over the changelog);
2. classify each (:func:`ddb2bq.rows.change_entity`: an INSERT or MODIFY by its new image, a REMOVE by its
   old image, else by its keys when they decide);
3. load the rows that are now of an entity into a scratch table (a load job: no streaming buffer)
   and MERGE them into the changelog by ``event_id`` and ``seq``, only where ``_entity`` is still
   NULL; drop the scratch table.

BigQuery refuses DML on rows still in the streaming buffer of ``insertAll`` (up to about 30
minutes after they landed), so such rows keep NULL in this run; the run is idempotent, run it
again later (``ddb2bq init`` runs it each time). Rows written since the entity was configured are
classified already. A ``merge`` mirror then needs ``ddb2bq merge --full`` (the rows changed are
older than its watermark); views show the result at once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery.sql import TableRef, quote, run_query
from ddb2bq.entities import Entities
from ddb2bq.exceptions import ConversionError
from ddb2bq.images import image_columns, new_image, old_image
from ddb2bq.records import Item
from ddb2bq.rows import change_entity
from ddb2bq.schema import TableLayout

if TYPE_CHECKING:
    from google.cloud import bigquery

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReclassifyResult:
    """How many rows of no entity were read, and how many are of an entity now."""

    read: int
    classified: int


def reclassify(
    client: bigquery.Client, changes: TableRef, layout: TableLayout, entities: Entities
) -> ReclassifyResult:
    """Give the changelog rows whose ``_entity`` is NULL the entity they are of now."""
    if not len(entities):
        return ReclassifyResult(0, 0)
    rows = _unclassified(client, changes, layout)
    found = []
    for row in rows:
        keys = _string_keys(row, layout)
        decided = change_entity(
            entities,
            row["op"],
            new_image=row["_new"],
            old_image=row["_old"],
            keys=keys,
            key_names=layout.key_names,
        )
        if decided is not None:
            found.append(
                {
                    "event_id": row["event_id"],
                    "seq": row["seq"],
                    "_entity": decided[0],
                    "_parts": json.dumps(decided[1], separators=(",", ":")),
                }
            )
    if found:
        _apply(client, changes, found)
    return ReclassifyResult(len(rows), len(found))


def _unclassified(
    client: bigquery.Client, changes: TableRef, layout: TableLayout
) -> list[dict[str, Any]]:
    keys = ", ".join(f"{quote(c.name)} AS {quote(f'k{i}')}" for i, c in enumerate(layout.keys))
    images = ", ".join(
        f"TO_JSON_STRING({quote(c)}) AS {quote(c)}" for c in image_columns(layout, old=True)
    )
    sql = (
        f"SELECT `event_id`, `seq`, `op`, {keys}, {images} FROM {changes.sql} "
        "WHERE `_entity` IS NULL"
    )
    rows = run_query(client, sql).rows
    for row in rows:
        row["_new"], row["_old"] = _readable(new_image, row), _readable(old_image, row)
    return rows


def _readable(
    read: Callable[[Mapping[str, Any]], Item | None], row: Mapping[str, Any]
) -> Item | None:
    """An image of ``row``; None (decided by the keys, if they can) when it cannot be rebuilt."""
    try:
        return read(row)
    except ConversionError as exc:
        logger.warning("Changelog row %s (seq %s): %s", row["event_id"], row["seq"], exc)
        return None


def _string_keys(row: Mapping[str, Any], layout: TableLayout) -> dict[str, dict[str, Any]]:
    """The keys as DynamoDB values, as far as templates read them (string keys only)."""
    keys = {}
    for index, column in enumerate(layout.keys):
        attribute = column.attribute or column.name
        value = row[f"k{index}"]
        if layout.key_types.get(attribute, "S") == "S" and isinstance(value, str):
            keys[attribute] = {"S": value}
    return keys


def _apply(client: bigquery.Client, changes: TableRef, found: list[dict[str, Any]]) -> None:
    from google.cloud import bigquery  # noqa: PLC0415 (heavy: only this command needs it)

    scratch = TableRef(
        changes.project, changes.dataset, f"{changes.table}_reclassify_{uuid.uuid4().hex[:12]}"
    )
    config = bigquery.LoadJobConfig(
        schema=[
            bigquery.SchemaField(name, "STRING", mode="REQUIRED")
            for name in ("event_id", "seq", "_entity", "_parts")
        ],
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
    )
    try:
        client.load_table_from_json(found, scratch.api, job_config=config).result()
        run_query(
            client,
            f"MERGE {changes.sql} `target` USING {scratch.sql} `source` "
            "ON `target`.`event_id` = `source`.`event_id` AND `target`.`seq` = `source`.`seq` "
            "WHEN MATCHED AND `target`.`_entity` IS NULL THEN UPDATE SET "
            "`_entity` = `source`.`_entity`, `_parts` = PARSE_JSON(`source`.`_parts`)",
        )
    finally:
        client.delete_table(scratch.api, not_found_ok=True)
