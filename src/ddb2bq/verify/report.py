"""What verify found, and how it reads: a summary line, then the first keys of each kind.

>>> report = VerifyReport("orders", "p.d.orders", table_items=3, mirror_rows=3, equal=2)
>>> report.add(Difference("different", '{"pk":{"S":"b"}}', "attribute 'n' differs"))
>>> print("\\n".join(report.lines()))
orders: 3 items in the table, 3 rows in p.d.orders: 2 equal, 0 missing, 0 extra, 1 different.
different (1):
  {"pk":{"S":"b"}}  attribute 'n' differs
>>> report.equal_everywhere
False
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ddb2bq.verify.buckets import Difference, DifferenceKind

SHOWN = 20
"""Keys listed of each kind; the counts are always complete."""

_TITLES: dict[DifferenceKind, str] = {
    "missing": "missing from the mirror",
    "extra": "extra in the mirror",
    "different": "different",
}


@dataclass
class Differences:
    """How many keys of one kind, and the first :data:`SHOWN` of them."""

    count: int = 0
    first: list[Difference] = field(default_factory=list)


@dataclass
class VerifyReport:
    """The outcome of one verify run: counts from both reads, then the differences that
    persisted after the re-check (``settled`` were changes in flight)."""

    table: str
    mirror: str
    table_items: int = 0
    mirror_rows: int = 0
    equal: int = 0
    settled: int = 0
    rechecked: int = 0
    waited: float = 0.0
    sample: float = 1.0
    seed: int = 0
    shown: int = SHOWN
    kinds: dict[DifferenceKind, Differences] = field(
        default_factory=lambda: {kind: Differences() for kind in _TITLES}
    )

    @property
    def equal_everywhere(self) -> bool:
        """True when no difference persisted: the mirror holds exactly the table."""
        return all(kind.count == 0 for kind in self.kinds.values())

    def add(self, difference: Difference) -> None:
        """Count a difference that persisted; keep it when it is among the first shown."""
        kind = self.kinds[difference.kind]
        kind.count += 1
        if len(kind.first) < self.shown:
            kind.first.append(difference)

    def lines(self) -> list[str]:
        """The report as text: the summary line, then each kind's first keys."""
        counts = ", ".join(f"{self.kinds[k].count:,} {k}" for k in _TITLES)
        sampled = (
            f" (a sample of {self.sample:.4g} of the keys, seed {self.seed})"
            if self.sample < 1
            else ""
        )
        lines = [
            f"{self.table}: {self.table_items:,} items in the table, {self.mirror_rows:,} rows "
            f"in {self.mirror}{sampled}: {self.equal:,} equal, {counts}."
        ]
        if self.rechecked:
            settled = "was a change" if self.settled == 1 else "were changes"
            lines.append(
                f"Re-checked {keys(self.rechecked)} after {self.waited:g} s: "
                f"{self.settled:,} {settled} in flight, now equal."
            )
        for kind, title in _TITLES.items():
            found = self.kinds[kind]
            if not found.count:
                continue
            lines.append(f"{title} ({found.count:,}):")
            lines += [f"  {d.key_json}  {d.reason}".rstrip() for d in found.first]
            if found.count > len(found.first):
                lines.append(f"  ... and {found.count - len(found.first):,} more")
        return lines


def keys(count: int) -> str:
    """``1 key``, ``2 keys``.

    >>> keys(1), keys(1200)
    ('1 key', '1,200 keys')
    """
    return f"{count:,} key" if count == 1 else f"{count:,} keys"
