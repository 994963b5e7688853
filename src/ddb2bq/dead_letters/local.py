"""Dead letters in local JSON-lines files: ``<path>/<table>/<YYYY-MM-DD>-<failed_at_us>-<id>.jsonl``.

A file is written once, whole, and never appended to: each :meth:`LocalDeadLetters.send` writes
its letters (per table and day) to a hidden temporary file beside the final one, loops until every
byte is written, fsyncs it, renames it into place and fsyncs the folder. A file under a final name
is therefore always whole; a full disk (``ENOSPC``, or ``EFBIG`` past a file-size limit) leaves
nothing behind and raises :class:`~ddb2bq.exceptions.RetryableError` naming the folder.

A replay claims a file by renaming it aside (``<name>.replaying-<id>``); settling the claim writes
the letters still failing over the claimed file (one atomic rename), then gives the file a new
live name, or deletes it when nothing is left. Lines that are not letters go first, byte for byte,
to ``<name>.unreadable-<id>`` beside it. At every step each letter is on disk, whole, under a name
the next replay reads (an interrupted replay's ``.replaying-*`` files are taken first).

Files written by earlier versions (``<YYYY-MM-DD>.jsonl``, appended under an ``flock``) are read
and claimed as well; the claim takes that lock, so an old appender still running never writes
into a claimed file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters.format import Claim, day, encode_letter, read_lines, safe_name
from ddb2bq.exceptions import RetryableError

logger = logging.getLogger(__name__)

CLAIMED = ".replaying-"
UNREADABLE = ".unreadable-"
_DISK_FULL = frozenset((errno.ENOSPC, errno.EFBIG, errno.EDQUOT))


class LocalDeadLetters:
    """Dead letters in local JSON-lines files, one per table, day and write.

    >>> LocalDeadLetters("dead-letters").send([letter])  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def where(self) -> str:
        """The folder, for messages."""
        return str(self.path)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Write ``letters`` whole and durably before returning, or none of them and raise
        RetryableError (a full disk, a folder that cannot be written)."""
        groups: dict[tuple[str, str], list[DeadLetter]] = {}
        for letter in letters:
            groups.setdefault((letter.table, day(letter.failed_at_us)), []).append(letter)
        temps: list[tuple[Path, Path]] = []
        try:
            for (table, _), group in groups.items():
                file = self.path / safe_name(table) / _new_name(group[0].failed_at_us)
                _make_folder(file.parent)
                temps.append((_write_temp(file, _lines(group)), file))
            while temps:  # every file is whole before the first one is published
                _publish(*temps.pop(0))
        except OSError as exc:
            raise RetryableError(
                f"Cannot store {len(letters)} dead letters under {self.path}: {_why(exc)}. "
                f"The changes will be retried. {_advice(exc)}"
            ) from exc
        finally:
            for temp, _ in temps:
                temp.unlink(missing_ok=True)

    def read(self, table: str | None = None) -> Iterator[DeadLetter]:
        """Every letter in the files (of ``table``), claimed ones included, oldest first; a
        line that is not a letter is skipped with a warning naming it."""
        for file in self._files(table):
            try:
                data = _read(file)
            except FileNotFoundError:
                continue  # claimed or settled by a replay since it was listed
            except OSError as exc:
                raise RetryableError(
                    f"Cannot read the dead letters in {file}: {_why(exc)}."
                ) from exc
            letters, unreadable = read_lines(data, str(file), "")
            for bad in unreadable:
                logger.warning("Line %s is not a whole dead letter: %s.", bad.where, bad.reason)
            yield from letters

    def claim(self, table: str) -> list[Claim]:
        """Take the files of ``table``: those an interrupted replay left claimed, then each
        live file renamed aside. Run one replay at a time per folder."""
        files = self._files(table)
        leftovers = [f for f in files if CLAIMED in f.name]
        try:
            claimed = [a for f in files if CLAIMED not in f.name if (a := _claim_file(f))]
            return [_claim_of(file) for file in (*leftovers, *claimed)]
        except OSError as exc:
            raise RetryableError(
                f"Cannot take the dead letters of {table} under {self.path} for a replay: "
                f"{_why(exc)}. Every letter is still there; run the replay again."
            ) from exc

    def settle(self, claim: Claim, remaining: Sequence[DeadLetter]) -> None:
        """Move ``claim``'s unreadable lines aside, then write ``remaining`` over the claimed
        file and give it a new live name, or delete the file when nothing is left. On failure
        (a full disk) raise RetryableError: the claimed file is still whole, for the next
        replay."""
        file = Path(claim.handle)
        try:
            if claim.unreadable:
                aside = Path(claim.unreadable[0].kept_at)
                lines = b"".join(_line(u.line) for u in claim.unreadable)
                _publish(_write_temp(aside, lines), aside)
            if remaining:
                _publish(_write_temp(file, _lines(remaining)), file)
                live = file.with_name(_new_name(remaining[0].failed_at_us))
                file.rename(live)
            else:
                file.unlink(missing_ok=True)
            _fsync_dir(file.parent)
        except OSError as exc:
            keeping = _keeping(len(remaining), len(claim.unreadable))
            raise RetryableError(
                f"Cannot settle the replayed dead letters of {file}{keeping}: {_why(exc)}. "
                f"The letters are still whole in {file}. {_advice(exc)} Then run "
                "replay-dead-letters again: it takes that file first."
            ) from exc

    def _files(self, table: str | None) -> list[Path]:
        folders = [self.path / safe_name(table)] if table else sorted(self.path.glob("*/"))
        return [
            file for folder in folders for file in sorted(folder.glob("*.jsonl*")) if _ours(file)
        ]


def _ours(file: Path) -> bool:
    """A letter file: live (``*.jsonl``) or claimed, not a temporary or set-aside one."""
    name = file.name
    return not name.startswith(".") and (name.endswith(".jsonl") or CLAIMED in name)


def _new_name(failed_at_us: int) -> str:
    return f"{day(failed_at_us)}-{failed_at_us}-{uuid.uuid4().hex[:12]}.jsonl"


def _lines(letters: Sequence[DeadLetter]) -> bytes:
    return b"".join(encode_letter(letter) + b"\n" for letter in letters)


def _line(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


def _claim_of(file: Path) -> Claim:
    original, _, claim_id = file.name.partition(CLAIMED)
    named = file.with_name(original)
    aside = file.with_name(f"{original}{UNREADABLE}{claim_id}")
    letters, unreadable = read_lines(_read(file), str(named), str(aside))
    return Claim(tuple(letters), file, tuple(unreadable))


def _read(file: Path) -> bytes:
    with file.open("rb") as stream:
        return stream.read()


def _write_temp(file: Path, data: bytes) -> Path:
    """Write ``data`` whole to a hidden file beside ``file`` and fsync it; on any failure
    (or Ctrl-C) remove the partial file and raise."""
    temp = file.with_name(f".{file.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` may write less than asked (a disk filling up): write the rest, or raise."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _publish(temp: Path, file: Path) -> None:
    """Rename the whole ``temp`` to ``file`` (atomically, replacing it) and fsync the folder,
    so that the rename survives a crash."""
    try:
        os.replace(temp, file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(file.parent)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each one fsync'd into its parent."""
    if folder.is_dir():
        return
    _make_folder(folder.parent)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    _fsync_dir(folder.parent)


def _claim_file(file: Path) -> Path | None:
    """Rename ``file`` aside under the lock earlier versions' appenders take."""
    aside = file.with_name(f"{file.name}{CLAIMED}{uuid.uuid4().hex[:12]}")
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


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _fsync_dir(folder: Path) -> None:
    """fsync a folder (its entries: a rename, a new file); file systems that cannot are
    skipped."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _keeping(letters: int, lines: int) -> str:
    kept = [f"{letters} letters that still fail"] if letters else []
    kept += [f"{lines} lines that are not letters"] if lines else []
    return f" (keeping {' and '.join(kept)})" if kept else ""


def _advice(exc: OSError) -> str:
    if exc.errno in _DISK_FULL:
        return "Free disk space there (or raise the file-size limit or quota)."
    return "Check that the folder exists and that ddb2bq may write there."
