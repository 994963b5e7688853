"""Change -> the changelog row and the mirror row the BigQuery sink sends.

Both rows are plain dicts keyed by column name, with values as BigQuery's JSON APIs take them:
TIMESTAMP as RFC 3339 text in UTC, JSON columns as JSON text, NUMERIC/BIGNUMERIC as exact
decimal text, BYTES as base64 text, ARRAY columns as lists.

The changelog row is lean and lossless: the new image once, as the plain ``item`` analysts query,
with ``item_types``, the DynamoDB types plain JSON cannot tell (:func:`ddb2bq.convert.lean_item`;
:mod:`ddb2bq.images` reads it back), and the promoted columns, so that the ``view`` and ``merge``
mirrors are plain SQL over the changelog and never re-convert values in SQL. The old image only
with ``[target] old_images = true`` (``old_item``, ``old_item_types``): the key's previous change
holds it already. A changelog made before the lean row keeps getting ``new_image`` and
``old_image`` until ``ddb2bq init`` gives it ``item_types`` (:class:`~ddb2bq.schema.TableLayout`).

With entities (single-table design, ``layout.entities``) the changelog row also names the
change's entity (``_entity``) and carries its typed key parts as compact JSON text (``_parts``):
an INSERT or MODIFY is classified by its new image; a REMOVE by its old image when the stream
has one, else by its keys alone when they decide
(:meth:`~ddb2bq.entities.Entities.classify_keys`), else not at all (NULL: the mirror SQL takes
the entity of the key's previous change). :attr:`Rows.entity` and :attr:`Rows.parts` say the
same, for a writer that routes mirror rows by entity.

The mirror row is the state of the item after the change, or None when the item is gone (a hard
delete) or when the change carries no new image (KEYS_ONLY and OLD_IMAGE streams: the changelog
records the change; the mirror needs NEW_IMAGE or NEW_AND_OLD_IMAGES).

A change whose rows cannot be built, for whatever reason its input gives, raises a
ConversionError naming the record (:func:`~ddb2bq.records.describe_change`) and the attribute; the
caller dead-letters that one change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from ddb2bq.convert import Conflict, column_converter, lean_item, plain_item
from ddb2bq.exceptions import ConversionError
from ddb2bq.records import (
    INPUT_ERRORS,
    UNCHECKED,
    Change,
    Item,
    describe_change,
    now_micros,
    quote_value,
)
from ddb2bq.schema import Classifier, TableLayout

Row = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Rows:
    """What one change becomes: its changelog row, its mirror row, and the type conflicts met
    (a value, as :class:`~ddb2bq.records.Change`, and not frozen for the same reason).

    ``conflicts`` holds ``(column, reason)`` for promoted columns left NULL because the value
    did not fit; the value is still in ``item``.
    """

    change: Change
    changelog: Row
    mirror: Row | None
    conflicts: tuple[tuple[str, str], ...] = ()
    entity: str | None = None
    parts: Row | None = None


class RowBuilder:
    """Builds rows for one table layout.

    >>> from ddb2bq.records import Change
    >>> from ddb2bq.schema import build_layout
    >>> builder = RowBuilder(build_layout([("Id", "N")]), clock=lambda: 0)
    >>> change = Change("INSERT", {"Id": {"N": "1"}}, {"Id": {"N": "1"}}, None, "0/0/0/1", 0, "e1")
    >>> builder.build(change).mirror
    {'Id': '1', 'item': '{"Id":1}', '_seq': '0/0/0/1', '_changed_at': '1970-01-01T00:00:00.000000Z'}
    """

    def __init__(self, layout: TableLayout, *, clock: Callable[[], int] = now_micros) -> None:
        self.layout = layout
        self._clock = clock
        self._soft_deletes = layout.soft_deletes
        self._lean = layout.lean
        self._old_images = layout.old_images
        self._entities = layout.entities if layout.has_entities else None
        self._keys = [(c, c.attribute or c.name, column_converter(c.type)) for c in layout.keys]
        self._promoted = [
            (c.name, c.attribute or c.name, column_converter(c.type), c.field_mode == "REPEATED")
            for c in layout.promoted
        ]

    def build(self, change: Change) -> Rows:
        """The rows of one change; raises ConversionError naming the record and the key or
        attribute."""
        try:
            return self._build(change)
        except ConversionError as exc:
            raise _named(exc, change) from None
        except INPUT_ERRORS as exc:  # a shape no check caught first: still this change's error
            unexpected = ConversionError(
                f"{type(exc).__name__} while building its rows ({UNCHECKED}): {exc}",
                record=describe_change(change),
            )
            raise unexpected from exc

    def _build(self, change: Change) -> Rows:
        if type(change.keys) is not dict:
            raise ConversionError(
                f"the change's keys are {quote_value(change.keys)}, not an object"
            )
        new_image = change.new_image
        key_values = self._key_values(change)
        item, types = (None, None) if new_image is None else lean_item(new_image)
        promoted, conflicts = self._promoted_values(new_image)
        mirror_old = (
            self._soft_deleted(change, key_values)
            if self._soft_deletes and change.op == "REMOVE"
            else None
        )
        changed_at = timestamp_text(change.changed_at_us)
        item_text = None if item is None else _json_text(item, "the item")
        changelog = {
            "event_id": change.event_id,
            "op": change.op,
            "seq": change.seq,
            "changed_at": changed_at,
            "ingested_at": timestamp_text(self._clock()),
            **key_values,
            "is_ttl_delete": change.is_ttl_delete,
            "item": item_text,
        }
        if self._lean:
            changelog["item_types"] = None if types is None else _json_text(types, "the types")
            if self._old_images:
                changelog.update(self._old_item(change.old_image))
        else:  # a changelog made before the lean row, not given its columns yet
            changelog["new_image"] = _image_text(new_image, "the new image")
            changelog["old_image"] = _image_text(change.old_image, "the old image")
        changelog.update(promoted)
        entity = parts = None
        if self._entities is not None:
            entity, parts = self._entity_of(change)
            changelog["_entity"] = entity
            changelog["_parts"] = None if parts is None else _json_text(parts, "the key parts")
        if mirror_old is not None:
            mirror: Row | None = {
                **mirror_old,
                "_seq": change.seq,
                "_changed_at": changed_at,
                "_deleted": True,
            }
        elif change.op == "REMOVE" or item_text is None:
            mirror = None
        else:
            mirror = {
                **key_values,
                **promoted,
                "item": item_text,
                "_seq": change.seq,
                "_changed_at": changed_at,
            }
            if self._soft_deletes:
                mirror["_deleted"] = False
        return Rows(change, changelog, mirror, conflicts, entity, parts)

    def _entity_of(self, change: Change) -> tuple[str | None, Row | None]:
        """The change's entity and key parts (None, None: of no entity, or unknown)."""
        if self._entities is None:
            return None, None
        found = change_entity(
            self._entities,
            change.op,
            new_image=change.new_image,
            old_image=change.old_image,
            keys=change.keys,
            key_names=self.layout.key_names,
        )
        return (None, None) if found is None else found

    def build_all(self, changes: Iterable[Change]) -> list[Rows]:
        """The rows of several changes, in order."""
        return [self.build(change) for change in changes]

    def _soft_deleted(self, change: Change, keys: Row) -> Row | None:
        """The mirror row of a soft-deleted item: its last known state, flagged."""
        if change.op != "REMOVE" or not self.layout.soft_deletes:
            return None
        last, _ = self._promoted_values(change.old_image)
        old = None if change.old_image is None else plain_item(change.old_image)
        return {**keys, **last, "item": None if old is None else _json_text(old, "the old item")}

    @staticmethod
    def _old_item(image: Item | None) -> Row:
        """The ``old_item`` and ``old_item_types`` columns of an old image."""
        if image is None:
            return {"old_item": None, "old_item_types": None}
        old, types = lean_item(image)
        return {
            "old_item": _json_text(old, "the old item"),
            "old_item_types": None if types is None else _json_text(types, "the old types"),
        }

    def _key_values(self, change: Change) -> Row:
        values = {}
        keys = change.keys
        for column, attribute, convert in self._keys:
            value = keys.get(attribute)
            if value is None:
                raise ConversionError(f"the change has no value for key attribute {attribute!r}")
            try:
                converted = convert(value)
            except ConversionError as exc:
                raise _within(exc, attribute) from None
            if isinstance(converted, Conflict):
                raise ConversionError(
                    f"key {attribute!r} = {quote_value(value)} does not fit key column "
                    f"{column.name!r} ({column.type}); set its type in [columns] types, for example "
                    f'{attribute} = "STRING"',
                    path=attribute,
                )
            values[column.name] = converted
        return values

    def _promoted_values(self, image: Item | None) -> tuple[Row, tuple[tuple[str, str], ...]]:
        values: Row = {}
        conflicts: tuple[tuple[str, str], ...] = ()  # a new tuple only for a change with one
        for name, attribute, convert, repeated in self._promoted:
            value = None if image is None else image.get(attribute)
            if value is None:
                converted = None
            else:
                try:
                    converted = convert(value)
                except ConversionError as exc:
                    raise _within(exc, attribute) from None
                if type(converted) is Conflict:
                    conflicts += ((name, converted.reason),)
                    converted = None
            if converted is None and repeated:
                converted = []  # BigQuery arrays are never NULL: an absent set is an empty array
            values[name] = converted
        return values, conflicts


def change_entity(
    entities: Classifier,
    op: str,
    *,
    new_image: Item | None,
    old_image: Item | None,
    keys: Item,
    key_names: Sequence[str],
) -> tuple[str, Row] | None:
    """The entity and typed key parts of one change, or None (of no entity, or a REMOVE whose
    keys cannot tell): an INSERT or MODIFY by its new image, a REMOVE by its old image, else by
    its keys (:meth:`~ddb2bq.entities.Entities.classify_keys`)."""
    if op != "REMOVE":
        found = None if new_image is None else entities.classify(new_image)
    elif old_image is not None:
        found = entities.classify(old_image)
    else:
        found = entities.classify_keys(keys, key_names)
    return None if found is None else (found[0].name, found[1])


def timestamp_text(micros: int) -> str:
    """RFC 3339 UTC text of a time in microseconds since the epoch.

    >>> timestamp_text(1479499740_000000)
    '2016-11-18T20:09:00.000000Z'
    """
    if type(micros) is not int:
        return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second_text(seconds)}.{fraction:06d}Z"


@lru_cache(maxsize=1024)
def _second_text(seconds: int) -> str:
    """The text of a whole second, cached: the changes of a batch share a few seconds."""
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if len(_SECONDS) >= _MAX_SECONDS:
        _SECONDS.clear()
    _SECONDS[text] = seconds
    return text


_SECONDS: dict[str, int] = {}  # the seconds _second_text wrote, by their text
_MAX_SECONDS = 4096


def second_of(text: str) -> int | None:
    """The second (since the epoch) of the ``YYYY-MM-DDTHH:MM:SS`` text that
    :func:`timestamp_text` wrote for it lately, else None: the way back without parsing, for a
    writer that sends timestamps as numbers (Storage Write).

    >>> second_of(timestamp_text(1479499740_000001)[:19])
    1479499740
    """
    return _SECONDS.get(text)


def _image_text(image: Item | None, what: str) -> str | None:
    return None if image is None else _json_text(image, what)


def _json_text(document: dict[str, Any], what: str) -> str:
    """``document`` as JSON text; an error names the attribute JSON cannot hold (such as text
    with a lone surrogate, which JSON input can spell and DynamoDB never stores)."""
    try:
        return orjson.dumps(document).decode()
    except TypeError as exc:
        for name, value in document.items():
            try:
                orjson.dumps(value)
            except TypeError:
                message = f"{what} cannot be written as JSON: {exc}"
                raise ConversionError(message, path=str(name)) from exc
        raise ConversionError(f"{what} cannot be written as JSON: {exc}") from exc


def _named(exc: ConversionError, change: Change) -> ConversionError:
    """``exc`` again, naming the change (its message and attribute path kept)."""
    named = ConversionError(str(exc), record=describe_change(change))
    named.path = exc.path
    return named


def _within(exc: ConversionError, attribute: str) -> ConversionError:
    """``exc`` of a value inside ``attribute``: the path starts at the attribute."""
    prefix = f"attribute {exc.path!r}: " if exc.path else ""
    message = str(exc).removeprefix(prefix)
    inner = exc.path
    path = attribute if not inner else f"{attribute}{'' if inner[0] == '[' else '.'}{inner}"
    return ConversionError(message, path=path)
