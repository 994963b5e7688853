"""A changelog row's images as DynamoDB JSON again, whichever row format wrote them.

Two formats of changelog row exist:

==========  ===================================================================================
lean        ``item`` (the image as plain JSON, :func:`ddb2bq.convert.lean_item`) and
            ``item_types`` (its type sidecar, NULL when no value needs a tag); the old image, when
            ``[target] old_images = true``, as ``old_item`` and ``old_item_types``. Written since
            ddb2bq 0.2 (the changelog has an ``item_types`` column).
earlier     ``new_image`` and ``old_image``, DynamoDB JSON text, beside ``item``. Rows written
            before, and rows written to a changelog made before that ``ddb2bq init`` has not
            given an ``item_types`` column yet.
==========  ===================================================================================

:func:`new_image` and :func:`old_image` read either from one row, so every reader of the
changelog (verify, entity re-classification, a backfill's refused load jobs) meets rows of both
kinds alike. :func:`dynamodb_item` is the way back from the lean form:

>>> dynamodb_item({"id": "a", "tags": ["x"], "n": 1.5, "big": "12345678901234567890"},
...               {"tags": "SS", "big": "N"})
{'id': {'S': 'a'}, 'tags': {'SS': ['x']}, 'n': {'N': '1.5'}, 'big': {'N': '12345678901234567890'}}

Numbers come back as their exact decimal value (``1e+125`` for 1E+125), which DynamoDB compares
equal to any other spelling of it; sets come back sorted, which a set does not notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ddb2bq.exceptions import ConversionError
from ddb2bq.records import AttributeValue, Item, quote_value
from ddb2bq.schema import TableLayout

_SET_TAGS = ("SS", "NS", "BS")


def dynamodb_item(item: Mapping[str, Any], types: Mapping[str, Any] | None) -> Item:
    """The DynamoDB JSON item that ``item`` (plain JSON) and its sidecar ``types`` were made
    from; ConversionError naming the attribute when they cannot be such a pair."""
    if not isinstance(item, Mapping):
        raise ConversionError(f"the item {quote_value(item)} is not an object")
    return _members(item, _sidecar(types, ""), "")


def new_image(row: Mapping[str, Any]) -> Item | None:
    """The new image of a changelog row (as BigQuery or a load file gives it: JSON columns as
    text or parsed), None when it has none (a REMOVE, a KEYS_ONLY or OLD_IMAGE stream)."""
    return _image(row, "new_image", "item", "item_types")


def old_image(row: Mapping[str, Any]) -> Item | None:
    """The old image of a changelog row, None when it was not stored (the default since the
    lean format: ``[target] old_images``) or the stream had none."""
    return _image(row, "old_image", "old_item", "old_item_types")


def image_columns(layout: TableLayout, *, old: bool = False) -> list[str]:
    """The changelog columns that :func:`new_image` (and, with ``old``, :func:`old_image`) read
    in a changelog of ``layout``: what a query selects for them.

    >>> from ddb2bq.schema import build_layout
    >>> image_columns(build_layout([("pk", "S")]), old=True)
    ['item', 'item_types']
    """
    columns = ["item"]
    if layout.lean:
        columns.append("item_types")
        if old and layout.old_images:
            columns += ["old_item", "old_item_types"]
    if layout.has_earlier_images:
        columns += ["new_image", "old_image"] if old else ["new_image"]
    return columns


def _image(row: Mapping[str, Any], earlier: str, item: str, types: str) -> Item | None:
    image = _json(row.get(earlier), earlier)
    if image is not None:
        if not isinstance(image, dict):
            raise ConversionError(f"the row's {earlier} {quote_value(image)} is not an object")
        return image
    plain = _json(row.get(item), item)
    if plain is None:
        return None
    return dynamodb_item(plain, _json(row.get(types), types))


def _json(value: Any, column: str) -> Any:
    if isinstance(value, str | bytes | bytearray):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ConversionError(f"the row's {column} is not JSON: {exc}") from exc
    return value


def _sidecar(types: Any, path: str) -> Mapping[str, Any]:
    if types is None:
        return {}
    if not isinstance(types, Mapping):
        where = f" at {path}" if path else ""
        raise ConversionError(f"the type sidecar{where} {quote_value(types)} is not an object")
    return types


def _members(members: Mapping[str, Any], types: Mapping[str, Any], path: str) -> Item:
    return {
        name: _value(value, types.get(name), f"{path}.{name}" if path else name)
        for name, value in members.items()
    }


def _value(value: Any, tag: Any, path: str) -> AttributeValue:
    if isinstance(tag, str):
        return _tagged(value, tag, path)
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": number_text(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": _members(value, _sidecar(tag, path), path)}
    if isinstance(value, list):
        inner = _sidecar(tag, path)
        return {"L": [_value(v, inner.get(str(i)), f"{path}[{i}]") for i, v in enumerate(value)]}
    raise ConversionError(f"{quote_value(value)} is not a plain JSON value", path=path)


def _tagged(value: Any, tag: str, path: str) -> AttributeValue:
    """A value whose sidecar names its type."""
    if tag == "N" and isinstance(value, str | int | float) and not isinstance(value, bool):
        return {"N": number_text(value)}
    if tag == "B" and isinstance(value, str):
        return {"B": value}
    if tag in _SET_TAGS and isinstance(value, list) and value:
        if tag == "NS":
            return {"NS": [_set_number(v, path) for v in value]}
        if all(isinstance(v, str) for v in value):
            return {tag: list(value)}
    raise ConversionError(
        f"{quote_value(value)} cannot be a {tag} value (the type sidecar says it is)", path=path
    )


def _set_number(value: Any, path: str) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return number_text(value)
    raise ConversionError(f"NS member {quote_value(value)} is not a number", path=path)


def number_text(value: int | float | str) -> str:
    """A number of ``item`` as DynamoDB number text: exact (a float in ``item`` is one whose
    shortest text is the number's value; a string is the decimal itself).

    >>> number_text(12), number_text(0.1), number_text(1e125), number_text("0.1000000000000000000001")
    ('12', '0.1', '1e+125', '0.1000000000000000000001')
    """
    if isinstance(value, float):
        return repr(value)
    return str(value)
