"""The state store in one local SQLite file: the default, for a runner on one machine.

Every change is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) in WAL mode with full
synchronisation, so a runner killed at any moment (SIGKILL included) leaves a consistent file that
several processes may share: a reader sees whole transactions only, and a save that checks a lease
reads the lease and writes the checkpoint inside one transaction, so nobody can take the lease over
in between. Generations are kept as 16 hex digits and sequence numbers as decimal text: neither
fits SQLite's 64-bit signed integers.

Example::

    store = SqliteStateStore()  # .ddb2bq/state.sqlite under the working directory
    lease = store.acquire_lease("orders", "host-1/4242", now=time.time(), duration_s=60)
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from ddb2bq.state.errors import LeaseLost, StateError, StateUnavailable
from ddb2bq.state.model import (
    Checkpoint,
    Lease,
    SegmentProgress,
    check_generation,
    check_lease_request,
    check_time,
    lease_lost,
    merge_checkpoints,
)

DEFAULT_PATH = Path(".ddb2bq") / "state.sqlite"
"""Where the state lives unless configured otherwise, relative to the working directory."""

SCHEMA_VERSION = 1
_BUSY_CODES = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS generations (
        table_name TEXT PRIMARY KEY,
        generation TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        stream_arn TEXT NOT NULL,
        shard_id TEXT NOT NULL,
        parent_shard_id TEXT,
        sequence_number TEXT,
        finished INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        gap TEXT,
        PRIMARY KEY (stream_arn, shard_id)
    )""",
    """CREATE TABLE IF NOT EXISTS backfill (
        table_name TEXT NOT NULL,
        generation TEXT NOT NULL,
        segment INTEGER NOT NULL,
        total INTEGER NOT NULL,
        last_key TEXT,
        done INTEGER NOT NULL,
        items INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (table_name, generation, segment)
    )""",
    """CREATE TABLE IF NOT EXISTS leases (
        table_name TEXT PRIMARY KEY,
        owner TEXT,
        expires_at REAL NOT NULL,
        token INTEGER NOT NULL,
        duration_s REAL NOT NULL
    )""",
)

_CHECKPOINT_COLUMNS = "shard_id, parent_shard_id, sequence_number, finished, updated_at, gap"


class SqliteStateStore:
    """Generations, checkpoints and leases in the SQLite file at ``path`` (made when missing).

    Safe to share between threads (calls are serialised) and processes (SQLite's locks): a write
    waits up to ``busy_timeout_s`` for another process's, then raises StateUnavailable. Raises
    StateError naming the path when it is a folder, cannot be created or is not a state file.

    Example::

        store = SqliteStateStore(tmp_path / "state.sqlite")
        store.store_generation("orders", 2)
        store.stored_generation("orders")  # 2
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, busy_timeout_s: float = 10.0) -> None:
        self._path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = _open(self._path, busy_timeout_s)

    @property
    def path(self) -> Path:
        """The state file."""
        return self._path

    def stored_generation(self, table: str) -> int | None:
        """The generation stored for ``table``, or None when none ever was."""
        with self._read() as connection:
            row = connection.execute(
                "SELECT generation FROM generations WHERE table_name = ?", (table,)
            ).fetchone()
        return None if row is None else int(row[0], 16)

    def store_generation(self, table: str, generation: int) -> None:
        """Store ``generation`` for ``table``; StateError when it is lower than the stored one."""
        check_generation(table, generation)
        with self._write() as connection:
            row = connection.execute(
                "SELECT generation FROM generations WHERE table_name = ?", (table,)
            ).fetchone()
            if row is not None and int(row[0], 16) > generation:
                raise StateError(
                    f"The generation of table {table!r} in {self._path} is {int(row[0], 16)}; "
                    f"refusing to lower it to {generation}."
                )
            connection.execute(
                "INSERT INTO generations (table_name, generation) VALUES (?, ?) "
                "ON CONFLICT (table_name) DO UPDATE SET generation = excluded.generation",
                (table, f"{generation:016x}"),
            )

    def checkpoints(self, stream_arn: str) -> dict[str, Checkpoint]:
        """Every shard's checkpoint of the stream, by shard id."""
        with self._read() as connection:
            rows = connection.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE stream_arn = ? "
                "ORDER BY shard_id",
                (stream_arn,),
            ).fetchall()
        return {row[0]: _checkpoint(row) for row in rows}

    def save_checkpoint(
        self, stream_arn: str, checkpoint: Checkpoint, *, lease: Lease | None = None
    ) -> None:
        """Merge ``checkpoint`` into the stored one, never backwards (see merge_checkpoints);
        with ``lease``, in the same transaction as a check that it is still current (LeaseLost)."""
        with self._write() as connection:
            if lease is not None:
                _check_lease(connection, lease)
            row = connection.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints "
                "WHERE stream_arn = ? AND shard_id = ?",
                (stream_arn, checkpoint.shard_id),
            ).fetchone()
            stored = None if row is None else _checkpoint(row)
            merged = merge_checkpoints(stored, checkpoint)
            if merged != stored:
                connection.execute(
                    f"INSERT OR REPLACE INTO checkpoints (stream_arn, {_CHECKPOINT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (stream_arn, *_checkpoint_row(merged)),
                )

    def acquire_lease(
        self, table: str, owner: str, *, now: float, duration_s: float
    ) -> Lease | None:
        """Take the lease of ``table`` for ``owner`` until ``now + duration_s``, with a new token;
        None while another owner holds a lease that has not expired."""
        check_lease_request(table, owner, now, duration_s)
        with self._write() as connection:
            row = _lease_row(connection, table)
            holder = _lease(table, row)
            if holder is not None and holder.owner != owner and not holder.expired(now):
                return None
            lease = Lease(table, owner, now + duration_s, (0 if row is None else row[2]) + 1)
            connection.execute(
                "INSERT OR REPLACE INTO leases (table_name, owner, expires_at, token, duration_s) "
                "VALUES (?, ?, ?, ?, ?)",
                (table, owner, lease.expires_at, lease.token, duration_s),
            )
        return lease

    def renew_lease(self, lease: Lease, *, now: float, duration_s: float | None = None) -> Lease:
        """Extend ``lease`` to ``now + duration_s`` (default: the duration it was taken with);
        LeaseLost when it is no longer the current lease of its table."""
        check_time(now, f"the lease of table {lease.table!r}")
        with self._write() as connection:
            row = _check_lease(connection, lease)
            duration = row[3] if duration_s is None else duration_s
            check_lease_request(lease.table, lease.owner, now, duration)
            renewed = Lease(lease.table, lease.owner, now + duration, lease.token)
            connection.execute(
                "UPDATE leases SET expires_at = ?, duration_s = ? WHERE table_name = ?",
                (renewed.expires_at, duration, lease.table),
            )
        return renewed

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up (the token is kept, so the next one is higher); no-op when lost."""
        with self._write() as connection:
            connection.execute(
                "UPDATE leases SET owner = NULL, expires_at = 0 "
                "WHERE table_name = ? AND owner = ? AND token = ?",
                (lease.table, lease.owner, lease.token),
            )

    def lease_holder(self, table: str) -> Lease | None:
        """The lease of ``table`` as stored (it may have expired), or None when nobody holds it."""
        with self._read() as connection:
            return _lease(table, _lease_row(connection, table))

    def backfill_progress(self, table: str, generation: int) -> dict[int, SegmentProgress]:
        """The saved progress of ``table``'s backfill in ``generation``, by segment."""
        with self._read() as connection:
            rows = connection.execute(
                "SELECT segment, total, last_key, done, items, updated_at FROM backfill "
                "WHERE table_name = ? AND generation = ? ORDER BY segment",
                (table, f"{generation:016x}"),
            ).fetchall()
        return {
            row[0]: SegmentProgress(row[0], row[1], row[2], bool(row[3]), row[4], row[5])
            for row in rows
        }

    def save_backfill_progress(
        self, table: str, generation: int, progress: SegmentProgress
    ) -> None:
        """Save one segment's progress (a done segment stays done)."""
        with self._write() as connection:
            connection.execute(
                "INSERT INTO backfill (table_name, generation, segment, total, last_key, done, "
                "items, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (table_name, generation, segment) DO UPDATE SET "
                "total = excluded.total, last_key = excluded.last_key, "
                "done = MAX(backfill.done, excluded.done), items = excluded.items, "
                "updated_at = excluded.updated_at WHERE backfill.done = 0",
                (
                    table,
                    f"{generation:016x}",
                    progress.segment,
                    progress.total,
                    progress.last_key,
                    int(progress.done),
                    progress.items,
                    progress.updated_at,
                ),
            )

    def close(self) -> None:
        """Close the file (idempotent); the lease, if any, stays until it expires or is released."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> SqliteStateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStateStore({str(self._path)!r})"

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._open_connection()
            except sqlite3.Error as exc:
                raise _error(self._path, exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            connection = self._open_connection()
            try:
                with _transaction(connection):
                    yield connection
            except sqlite3.Error as exc:
                raise _error(self._path, exc) from exc

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StateError(f"The state store {self._path} is closed; open a new one.")
        return self._connection


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (IMMEDIATE) so a read-then-write cannot interleave."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # the first error is the one worth reporting
            connection.execute("ROLLBACK")
        raise


def _open(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    if path.is_dir():
        raise StateError(
            f"The state file path {path} is a folder; give a file path such as "
            f"{path / 'state.sqlite'}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"Cannot create the folder {path.parent} for the state file {path} "
            f"({exc.strerror or exc}); choose a path in a writable folder."
        ) from exc
    try:
        return _connect(path, busy_timeout_s)
    except sqlite3.Error as exc:
        raise _error(path, exc) from exc


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        with _transaction(connection):
            _create_schema(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _create_schema(connection: sqlite3.Connection, path: Path) -> None:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StateError(
            f"The state file {path} was written by a newer ddb2bq (schema {version}); "
            "upgrade ddb2bq to use it."
        )
    for statement in _SCHEMA:
        connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _error(path: Path, exc: sqlite3.Error) -> StateError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _BUSY_CODES:
        return StateUnavailable(
            f"The state file {path} is locked by another process ({exc}); retry after a pause, "
            "or stop the other process using it."
        )
    return StateError(
        f"The state file {path} cannot be used ({exc}); check that it is a ddb2bq state file "
        "in a writable folder, or choose another path."
    )


def _checkpoint(row: tuple[str, str | None, str | None, int, float, str | None]) -> Checkpoint:
    shard_id, parent, sequence_number, finished, updated_at, gap = row
    return Checkpoint(shard_id, parent, sequence_number, bool(finished), updated_at, gap)


def _checkpoint_row(
    checkpoint: Checkpoint,
) -> tuple[str, str | None, str | None, int, float, str | None]:
    c = checkpoint
    return (c.shard_id, c.parent_shard_id, c.sequence_number, int(c.finished), c.updated_at, c.gap)


_LeaseRow = tuple[str | None, float, int, float]  # owner, expires_at, token, duration_s


def _lease_row(connection: sqlite3.Connection, table: str) -> _LeaseRow | None:
    row: _LeaseRow | None = connection.execute(
        "SELECT owner, expires_at, token, duration_s FROM leases WHERE table_name = ?", (table,)
    ).fetchone()
    return row


def _lease(table: str, row: _LeaseRow | None) -> Lease | None:
    if row is None or row[0] is None:
        return None
    return Lease(table, row[0], row[1], row[2])


def _check_lease(connection: sqlite3.Connection, lease: Lease) -> _LeaseRow:
    """The lease's row when ``lease`` is still the current one, else LeaseLost."""
    row = _lease_row(connection, lease.table)
    holder = _lease(lease.table, row)
    if row is None or holder is None or (holder.owner, holder.token) != (lease.owner, lease.token):
        raise LeaseLost(lease_lost(lease, holder))
    return row
