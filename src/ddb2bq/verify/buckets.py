"""Comparing two streams of (key, item hash) with flat memory: bucket files on disk.

Each side's entries are spread by their key's hash over ``count`` bucket files (appends only:
each bucket's lines are buffered in memory up to a small share of :data:`BUFFER_BYTES`, then
appended to its file, so no more than that is held however long the stream is, and no file stays
open). Then the sides are compared bucket by bucket: a key is in the same bucket on both sides,
so one bucket of each side in memory at a time is enough. Memory: the buffers, plus the two
largest buckets as dicts (about 250 bytes an entry); :func:`bucket_count` aims at
:data:`BUCKET_ENTRIES` entries a bucket. Disk: one line an entry, about 70 bytes plus the key's
JSON text.

A line is ``<key hash hex> <item hash hex> <key JSON>`` (space-separated; JSON text holds no raw
newline, and the key JSON comes last, so it may hold spaces). An empty item hash (``-``) stands
for an item that could not be read back exactly: it equals nothing.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     table, mirror = Buckets(folder, "table", 4), Buckets(folder, "mirror", 4)
...     table.add(Entry(b"k1", b"h1", '{"pk":{"S":"a"}}'))
...     mirror.add(Entry(b"k1", b"h2", '{"pk":{"S":"a"}}'))
...     result = compare(table, mirror)
>>> result.different, [d.kind for d in result.differences]
(1, ['different'])
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DifferenceKind = Literal["missing", "extra", "different"]

BUCKET_ENTRIES = 50_000
"""Entries per bucket that :func:`bucket_count` aims at (two buckets of it: ~25 MB)."""
MIN_BUCKETS, MAX_BUCKETS = 16, 4096
BUFFER_BYTES = 16 << 20
"""All buckets' write buffers together hold at most this much (16 MiB)."""
UNREADABLE = b""


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of one side: the hash of its key, the hash of the item, the key as JSON text."""

    key: bytes
    digest: bytes
    key_json: str


@dataclass(frozen=True, slots=True)
class Difference:
    """A key whose item is absent from one side (``missing``: from the mirror; ``extra``: from
    the table) or differs; ``reason`` says why when the hashes alone do not."""

    kind: DifferenceKind
    key_json: str
    reason: str = ""


@dataclass
class Comparison:
    """Counts of one comparison and its differences (a list here; verify streams them)."""

    equal: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    differences: list[Difference] = field(default_factory=list)


def bucket_count(estimated_entries: int) -> int:
    """A power of two of buckets, so that each holds about :data:`BUCKET_ENTRIES` entries.

    >>> bucket_count(0), bucket_count(20_000), bucket_count(10_000_000), bucket_count(10**12)
    (16, 16, 256, 4096)
    """
    wanted = max(1, math.ceil(estimated_entries / BUCKET_ENTRIES))
    return max(MIN_BUCKETS, min(MAX_BUCKETS, 1 << (wanted - 1).bit_length()))


class Buckets:
    """One side's entries, spread over ``count`` files ``<side>-<n>`` in ``folder``."""

    def __init__(self, folder: str | Path, side: str, count: int) -> None:
        self.folder = Path(folder)
        self.side = side
        self.count = count
        self.entries = 0
        self._buffers = [bytearray() for _ in range(count)]
        self._flush_at = max(4096, BUFFER_BYTES // count)

    def add(self, entry: Entry) -> None:
        """Append ``entry`` to its bucket."""
        index = int.from_bytes(entry.key[:4], "big") % self.count
        buffer = self._buffers[index]
        digest = entry.digest.hex() or "-"
        buffer += f"{entry.key.hex()} {digest} {entry.key_json}\n".encode("utf-8", "surrogatepass")
        self.entries += 1
        if len(buffer) >= self._flush_at:
            self._flush(index)

    def close(self) -> None:
        """Write what the buffers hold."""
        for index in range(self.count):
            self._flush(index)

    def read(self, index: int) -> Iterator[Entry]:
        """The entries of bucket ``index`` (after :meth:`close`)."""
        path = self._path(index)
        if not path.exists():
            return
        with path.open("rb") as lines:
            for line in lines:
                key, digest, key_json = line.rstrip(b"\n").split(b" ", 2)
                yield Entry(
                    bytes.fromhex(key.decode()),
                    UNREADABLE if digest == b"-" else bytes.fromhex(digest.decode()),
                    key_json.decode("utf-8", "surrogatepass"),
                )

    def _flush(self, index: int) -> None:
        buffer = self._buffers[index]
        if buffer:
            with self._path(index).open("ab") as out:
                out.write(buffer)
            buffer.clear()

    def _path(self, index: int) -> Path:
        return self.folder / f"{self.side}-{index:04d}"


def compare(table: Buckets, mirror: Buckets) -> Comparison:
    """Compare the two sides (closed first here), bucket by bucket; differences in key order
    of neither side (bucket order)."""
    result = Comparison()
    for difference in compare_streaming(table, mirror, result):
        result.differences.append(difference)
    return result


def compare_streaming(table: Buckets, mirror: Buckets, counts: Comparison) -> Iterator[Difference]:
    """:func:`compare`, yielding each difference instead of keeping it; ``counts`` is updated
    as the buckets are compared."""
    if table.count != mirror.count:
        raise ValueError("Both sides need the same number of buckets.")
    table.close()
    mirror.close()
    for index in range(table.count):
        yield from _compare_bucket(table.read(index), mirror.read(index), counts)


def _compare_bucket(
    table: Iterator[Entry], mirror: Iterator[Entry], counts: Comparison
) -> Iterator[Difference]:
    expected = {entry.key: entry for entry in table}
    held: dict[bytes, tuple[Entry, int]] = {}
    for entry in mirror:
        _, copies = held.get(entry.key, (entry, 0))
        held[entry.key] = (entry, copies + 1)
    for key, (entry, copies) in held.items():
        wanted = expected.pop(key, None)
        if copies > 1:
            found = Difference("different", entry.key_json, f"the mirror holds it {copies} times")
        elif wanted is None:
            found = Difference("extra", entry.key_json)
        elif entry.digest == UNREADABLE:
            found = Difference("different", entry.key_json, "the mirror's item cannot be read")
        elif entry.digest != wanted.digest:
            found = Difference("different", entry.key_json)
        else:
            counts.equal += 1
            continue
        setattr(counts, found.kind, getattr(counts, found.kind) + 1)
        yield found
    for entry in expected.values():
        counts.missing += 1
        yield Difference("missing", entry.key_json)
