"""Re-checking differences: a change still in flight is not a loss.

A Scan takes minutes and the mirror is read at another moment; a change made meanwhile reaches
the mirror after the replication lag. So each difference found is read again on both sides, after
a wait, by key: the item with a strongly consistent BatchGetItem, the mirror row with a keyed
query. A difference that is gone then (both sides equal, or both without the key) was a change
in flight; one that persists is reported, classified again from what the sides hold now. A key
written continuously may still differ at every look: it is reported, and a second run tells.

>>> from ddb2bq.verify.mirror import MirrorItem
>>> key = {"pk": {"S": "a"}}
>>> classify('{"pk":{"S":"a"}}', {**key, "n": {"N": "1"}}, [MirrorItem(key, {**key, "n": {"N": "1.0"}})])
>>> classify('{"pk":{"S":"a"}}', {**key, "n": {"N": "1"}}, [MirrorItem(key, {**key, "n": {"S": "1"}})])
Difference(kind='different', key_json='{"pk":{"S":"a"}}', reason="attribute 'n' differs")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

from ddb2bq.records import Item
from ddb2bq.verify.buckets import Difference
from ddb2bq.verify.canonical import (
    first_difference,
    item_digest,
    key_digest,
    key_from_text,
    key_of,
)
from ddb2bq.verify.mirror import MirrorItem

BATCH = 100
"""Keys re-checked per BatchGetItem call and per keyed mirror query."""

ReadTable = Callable[[Sequence[Item]], list[Item]]
ReadMirror = Callable[[Sequence[Item]], list[MirrorItem]]


def recheck(
    differences: Iterable[Difference],
    key_names: Sequence[str],
    read_table: ReadTable,
    read_mirror: ReadMirror,
) -> Iterator[tuple[Difference, Difference | None]]:
    """Each difference, and what it is now: None when it was a change in flight.

    ``read_table`` and ``read_mirror`` take keys in boto3's form (B as ``bytes``), at most
    :data:`BATCH` at a time.
    """
    pending = iter(differences)
    while batch := list(islice(pending, BATCH)):
        keys = [key_from_text(d.key_json) for d in batch]
        items = {key_digest(key_of(i, key_names)): i for i in read_table(keys)}
        rows: dict[bytes, list[MirrorItem]] = {}
        for row in read_mirror(keys):
            rows.setdefault(key_digest(row.key), []).append(row)
        for difference, key in zip(batch, keys, strict=True):
            digest = key_digest(key)
            yield difference, classify(difference.key_json, items.get(digest), rows.get(digest, []))


def classify(key_json: str, item: Item | None, rows: Sequence[MirrorItem]) -> Difference | None:
    """What one key's table item and mirror rows make of it: None when they agree."""
    if len(rows) > 1:
        return Difference("different", key_json, f"the mirror holds it {len(rows)} times")
    if not rows:
        return None if item is None else Difference("missing", key_json)
    held = rows[0].item
    if item is None:
        return Difference("extra", key_json)
    if held is None:
        return Difference("different", key_json, "the mirror's item cannot be read")
    if item_digest(item) == item_digest(held):
        return None
    path = first_difference(item, held)
    return Difference("different", key_json, f"attribute {path!r} differs" if path else "")
