"""The BigQuery side of verify: the mirror's items, exactly, as DynamoDB JSON.

The mirror's ``item`` column is plain JSON and loses types (a string set reads as a list, binary
as a string, some numbers as strings). The exact item a mirror row holds is the new image of the
changelog row it came from: the one with the same keys and ``seq = _seq``, whose ``item`` and
``item_types`` rebuild it (:mod:`ddb2bq.images`; a row written before the lean format has it as
``new_image``). So the mirror's items are a join of the mirror (live rows only: ``_deleted`` rows
skipped with soft deletes) with the changelog's images; a mirror row without its changelog row
reads as an item that cannot be read back (a difference), as does a changelog row whose image
cannot be rebuilt. The changelog may hold a change twice (a re-delivered record: same ``seq``,
same image): the join takes one.

This module is the one place in verify that knows where the exact items live: :func:`mirror_sql`
selects the image columns the changelog has, and :func:`_image_of` rebuilds the item from them.

Identifiers are the layout's column names (the naming rule's, never raw attribute names),
backtick-quoted; key values travel as query parameters. Rows stream in pages
(``result(page_size=...)``): the Storage Read API would be faster on big mirrors, but decoding
its Avro or Arrow rows needs fastavro or pyarrow, which ddb2bq does not depend on.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ddb2bq.bigquery.sql import (
    DEFAULT_DEADLINE,
    TableRef,
    api_errors,
    api_retry,
    param,
    query_error,
    quote,
)
from ddb2bq.bigquery.tables import TableRefs
from ddb2bq.convert import Conflict, column_converter
from ddb2bq.exceptions import ConversionError
from ddb2bq.images import image_columns, new_image
from ddb2bq.records import Item, encode_binary
from ddb2bq.schema import Column, TableLayout

if TYPE_CHECKING:
    from google.cloud import bigquery

PAGE_SIZE = 5000
READ_DEADLINE = 900.0
"""Seconds the full read's query may take to run (and its calls to be retried)."""
_NUMBER_TYPES = ("INT64", "NUMERIC", "BIGNUMERIC")


@dataclass(frozen=True, slots=True)
class MirrorItem:
    """One live row of the mirror: its key (DynamoDB JSON) and its item, None when the row's
    changelog image cannot be found."""

    key: Item
    item: Item | None


def mirror_items(
    client: bigquery.Client,
    refs: TableRefs,
    layout: TableLayout,
    key_kinds: Mapping[str, str],
    *,
    page_size: int = PAGE_SIZE,
    mirrors: Sequence[TableRef] = (),
) -> Generator[MirrorItem, None, None]:
    """Every live item of the mirror, streamed page by page (in no order).

    ``key_kinds`` maps each key attribute to ``S``, ``N`` or ``B`` (DescribeTable's key schema).
    ``mirrors``: the tables that together hold the items (with entities, the table's own mirror
    and one per entity); default ``refs.mirror`` alone.

    >>> for row in mirror_items(client, refs, layout, {"pk": "S"}):  # doctest: +SKIP
    ...     print(row.key, row.item)
    """
    sql = mirror_sql(layout, refs, mirrors=mirrors)
    rows = _query(client, sql, [], page_size=page_size, deadline=READ_DEADLINE)
    for row in rows:
        yield _mirror_item(row, layout, key_kinds)


def mirror_items_for_keys(
    client: bigquery.Client,
    refs: TableRefs,
    layout: TableLayout,
    key_kinds: Mapping[str, str],
    keys: Sequence[Item],
    *,
    mirrors: Sequence[TableRef] = (),
) -> list[MirrorItem]:
    """The live mirror rows of ``keys`` (DynamoDB JSON, B as base64 text or ``bytes``): one
    keyed query; a key the mirrors hold twice comes back twice."""
    params: list[bigquery.ScalarQueryParameter] = []
    matches = []
    for number, key in enumerate(keys):
        terms = _key_terms(layout.keys, encode_binary(key), number, params)
        if terms is not None:
            matches.append(terms)
    if not matches:
        return []
    sql = mirror_sql(layout, refs, where=" OR ".join(matches), mirrors=mirrors)
    rows = _query(client, sql, params, page_size=PAGE_SIZE, deadline=DEFAULT_DEADLINE)
    return [_mirror_item(row, layout, key_kinds) for row in rows]


def mirror_sql(
    layout: TableLayout, refs: TableRefs, *, where: str = "", mirrors: Sequence[TableRef] = ()
) -> str:
    """The query of the mirror's live rows with their changelog image: key columns as
    ``_k0``, ``_k1``, the image as ``_image``; ``where`` (a condition on the key columns)
    restricts both tables to some keys; ``mirrors`` (default ``refs.mirror``) are read as one.

    >>> from ddb2bq.bigquery.sql import TableRef
    >>> from ddb2bq.schema import build_layout
    >>> refs = TableRefs(TableRef("p", "d", "t_changes"), TableRef("p", "d", "t"))
    >>> print(mirror_sql(build_layout([("pk", "S")]), refs))
    WITH `_mirror` AS (
      SELECT `pk` AS `_k0`, `_seq` AS `_s` FROM `p`.`d`.`t`
      WHERE TRUE
    ), `_images` AS (
      SELECT `pk` AS `_k0`, `seq` AS `_s`, `item`, `item_types` FROM `p`.`d`.`t_changes`
      WHERE `item` IS NOT NULL
      QUALIFY ROW_NUMBER() OVER (PARTITION BY `pk`, `seq` ORDER BY `event_id`) = 1
    )
    SELECT `_k0`, `item`, `item_types` FROM `_mirror` LEFT JOIN `_images` USING (`_k0`, `_s`)
    """
    aliases = [f"`_k{i}`" for i in range(len(layout.keys))]
    selected = ", ".join(
        f"{quote(c.name)} AS {a}" for c, a in zip(layout.keys, aliases, strict=True)
    )
    keys = ", ".join(quote(c.name) for c in layout.keys)
    live = " AND `_deleted` IS NOT TRUE" if layout.soft_deletes else ""
    restrict = f" AND ({where})" if where else ""
    union = "\n  UNION ALL\n".join(
        f"  SELECT {selected}, `_seq` AS `_s` FROM {ref.sql}\n  WHERE TRUE{live}{restrict}"
        for ref in (mirrors or (refs.mirror,))
    )
    images = ", ".join(quote(c) for c in image_columns(layout))
    return (
        f"WITH `_mirror` AS (\n{union}\n"
        f"), `_images` AS (\n"
        f"  SELECT {selected}, `seq` AS `_s`, {images} FROM {refs.changes.sql}\n"
        f"  WHERE `item` IS NOT NULL{restrict}\n"
        f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys}, `seq` ORDER BY `event_id`) = 1\n)\n"
        f"SELECT {', '.join(aliases)}, {images} FROM `_mirror` "
        f"LEFT JOIN `_images` USING ({', '.join(aliases)}, `_s`)"
    )


def _mirror_item(row: Any, layout: TableLayout, key_kinds: Mapping[str, str]) -> MirrorItem:
    item = _image_of(row)
    names = layout.key_names
    if item is not None and all(name in item for name in names):
        return MirrorItem({name: item[name] for name in names}, item)
    values = [row[f"_k{i}"] for i in range(len(layout.keys))]
    key = {
        name: _key_value(v, key_kinds.get(name, "S")) for name, v in zip(names, values, strict=True)
    }
    return MirrorItem(key, item)


def _image_of(row: Any) -> Item | None:
    """The row's item as DynamoDB JSON (B as base64 text), None when it has none or it cannot
    be rebuilt (verify reports that item as a difference)."""
    try:
        return new_image(row)  # a query's Row reads like a mapping (``get``), as a dict does
    except ConversionError:
        return None


def _key_value(value: Any, kind: str) -> dict[str, Any]:
    """A key column's value as a DynamoDB attribute value of the key's type."""
    if kind == "B":
        return {"B": bytes(value) if isinstance(value, bytes | bytearray) else value}
    if kind == "N":
        return {"N": _plain_number(value)}
    return {"S": str(value)}


def _plain_number(value: Any) -> str:
    """``Decimal('1.500000000000000000')`` (a BIGNUMERIC column's value) as ``1.5``."""
    text = format(Decimal(str(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _key_terms(
    columns: Sequence[Column],
    key: Item,
    number: int,
    params: list[bigquery.ScalarQueryParameter],
) -> str | None:
    """``(`k` = @k0_3 AND ...)`` for key number ``number``, its parameters appended to
    ``params``; None when a value cannot be in its column (no row can have it)."""
    terms, added = [], []
    for index, column in enumerate(columns):
        value = key.get(column.attribute or column.name)
        converted = None if value is None else column_converter(column.type)(value)
        if converted is None or isinstance(converted, Conflict):
            return None
        name = f"k{index}_{number}"
        added.append(param(name, _param_value(converted, column.type), column.type))
        terms.append(f"{quote(column.name)} = @{name}")
    params.extend(added)
    return "(" + " AND ".join(terms) + ")"


def _param_value(converted: Any, column_type: str) -> Any:
    """A converted key value (as BigQuery's JSON API takes it) as the client's parameter value."""
    if column_type == "BYTES":
        return base64.b64decode(converted)
    if column_type == "INT64":
        return int(converted)
    if column_type in _NUMBER_TYPES:
        return Decimal(str(converted))
    return str(converted)


def _query(
    client: bigquery.Client,
    sql: str,
    params: Sequence[bigquery.ScalarQueryParameter],
    *,
    page_size: int,
    deadline: float,
) -> Iterator[Any]:
    """The rows of a query, fetched a page at a time; errors become ddb2bq errors."""
    from google.cloud import bigquery  # noqa: PLC0415 (heavy: lazy, as in ddb2bq.bigquery.sql)

    retry = api_retry(deadline)
    job_retry = bigquery.retry.DEFAULT_JOB_RETRY.with_timeout(deadline)
    config = bigquery.QueryJobConfig(query_parameters=list(params))
    try:
        job = client.query(sql, job_config=config, retry=retry, job_retry=job_retry)
        yield from job.result(page_size=page_size, retry=retry, timeout=deadline)
    except api_errors() as exc:
        raise query_error(exc, sql) from exc
