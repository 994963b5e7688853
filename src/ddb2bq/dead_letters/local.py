"""Dead letters in local JSON-lines files: ``<path>/<table>/<YYYY-MM-DD>.jsonl``.

Appends take an exclusive ``flock`` and fsync the file (and the folder when it is created) before
returning. A replay claims a file by renaming it aside under the same lock, so a letter appended
while the replay runs goes to a new file and is never lost; an appender that opened the old file
just before the rename notices (the path no longer names its file) and opens the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters.format import Claim, day, decode_letter, encode_letter, safe_name
from ddb2bq.exceptions import RetryableError

_CLAIMED = ".replaying-"


class LocalDeadLetters:
    """Dead letters in local JSON-lines files, one per table and day.

    >>> LocalDeadLetters("dead-letters").send([letter])  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Append ``letters`` to their files, durably (fsync) before returning."""
        groups: dict[Path, list[bytes]] = {}
        for letter in letters:
            file = self.path / safe_name(letter.table) / f"{day(letter.failed_at_us)}.jsonl"
            groups.setdefault(file, []).append(encode_letter(letter) + b"\n")
        try:
            for file, lines in groups.items():
                _append(file, b"".join(lines))
        except OSError as exc:
            raise RetryableError(f"Cannot write dead letters under {self.path}: {exc}") from exc

    def read(self, table: str | None = None) -> Iterator[DeadLetter]:
        """Every letter in the files (of ``table``), claimed ones included, oldest first."""
        for file in self._files(table):
            yield from _read_file(file)

    def claim(self, table: str) -> list[Claim]:
        """Take the files of ``table``: those an interrupted replay left claimed, then each
        live file renamed aside under its lock. Run one replay at a time per folder."""
        files = self._files(table)
        leftovers = [f for f in files if _CLAIMED in f.name]
        claimed = [a for f in files if _CLAIMED not in f.name if (a := _claim_file(f))]
        return [Claim(tuple(_read_file(f)), f) for f in (*leftovers, *claimed)]

    def settle(self, claim: Claim, remaining: Sequence[DeadLetter]) -> None:
        """Append the letters still failing to today's file, then delete the claimed file."""
        if remaining:
            self.send(remaining)
        Path(claim.handle).unlink(missing_ok=True)
        _fsync_dir(Path(claim.handle).parent)

    def _files(self, table: str | None) -> list[Path]:
        folders = [self.path / safe_name(table)] if table else sorted(self.path.glob("*/"))
        return [file for folder in folders for file in sorted(folder.glob("*.jsonl*"))]


def _append(file: Path, data: bytes) -> None:
    """Append ``data`` under an exclusive lock to the file now at ``file`` (not one a replay
    renamed aside while we waited for the lock), then fsync."""
    file.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, file):
                os.write(fd, data)
                os.fsync(fd)
                break
        finally:
            os.close(fd)
    _fsync_dir(file.parent)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _claim_file(file: Path) -> Path | None:
    aside = file.with_name(f"{file.name}{_CLAIMED}{uuid.uuid4().hex[:12]}")
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not _same_file(fd, file):
            return None
        file.rename(aside)
    finally:
        os.close(fd)
    _fsync_dir(file.parent)
    return aside


def _read_file(file: Path) -> Iterator[DeadLetter]:
    with file.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield decode_letter(line, where=f"{file}:{number}")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
