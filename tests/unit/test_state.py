"""The replication's stored state in a SQLite file: generations, checkpoints, leases."""

from __future__ import annotations

import functools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddb2bq.exceptions import ConfigError, Ddb2bqError, RetryableError
from ddb2bq.state import (
    DEFAULT_PATH,
    MAX_GENERATION,
    Checkpoint,
    DynamoDBStateStore,
    Generation,
    LeaseLost,
    SqliteStateStore,
    StateError,
    StateUnavailable,
    merge_checkpoints,
    state_store_from_setting,
)

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
BIG = 10**39  # stream sequence numbers reach 40 digits: past int64, float64 and SQLite integers


def checkpoint(
    shard: str = "shardId-1",
    seq: int | None = None,
    *,
    finished: bool = False,
    at: float = 1.0,
    parent: str | None = None,
    gap: str | None = None,
) -> Checkpoint:
    return Checkpoint(shard, parent, None if seq is None else str(seq), finished, at, gap)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    with SqliteStateStore(tmp_path / "state.sqlite") as opened:
        yield opened


# --- generations ---------------------------------------------------------------------------


def test_generation_is_none_until_stored_then_only_rises(store: SqliteStateStore) -> None:
    # GIVEN a new state file
    # THEN no generation is stored
    assert store.stored_generation("orders") is None
    # WHEN generations are stored, the same twice, then a higher one
    store.store_generation("orders", 3)
    store.store_generation("orders", 3)
    store.store_generation("orders", MAX_GENERATION)
    # THEN the highest is kept, exactly (2**64 - 1 does not fit SQLite's signed integers)
    assert store.stored_generation("orders") == 2**64 - 1
    # AND another table has its own
    assert store.stored_generation("customers") is None


def test_lowering_a_generation_is_refused(store: SqliteStateStore) -> None:
    # GIVEN a stored generation 5
    store.store_generation("orders", 5)
    # WHEN a lower one is stored
    # THEN a StateError names the table and both values, and 5 stays
    with pytest.raises(StateError, match=r"'orders'.* is 5; refusing to lower it to 4"):
        store.store_generation("orders", 4)
    assert store.stored_generation("orders") == 5


@pytest.mark.parametrize("bad", [-1, 2**64, True, "1"])
def test_a_generation_outside_sixteen_hex_digits_is_refused(
    store: SqliteStateStore, bad: object
) -> None:
    with pytest.raises(StateError, match="generation of table 'orders'"):
        store.store_generation("orders", bad)  # type: ignore[arg-type]


def test_generation_starts_from_the_configured_value_and_keeps_it(tmp_path: Path) -> None:
    # GIVEN a configured generation 4 above the stored 2
    store = SqliteStateStore(tmp_path / "state.sqlite")
    store.store_generation("orders", 2)
    # WHEN the current generation is asked for
    # THEN the configured one wins, and is stored: lowering the file later cannot take it back
    assert Generation(4, store, "orders").current() == 4
    assert store.stored_generation("orders") == 4
    assert Generation(1, store, "orders").current() == 4


def test_a_stored_generation_above_the_configured_one_wins(store: SqliteStateStore) -> None:
    # GIVEN a runtime raised the generation to 7 while the file still says 1
    store.store_generation("orders", 7)
    # THEN the stored 7 is current
    assert Generation(1, store, "orders").current() == 7


def test_raise_to_stores_the_generation_and_refuses_lowering(tmp_path: Path) -> None:
    # GIVEN two runtimes' Generation objects on one state file
    path = tmp_path / "state.sqlite"
    mine = Generation(0, SqliteStateStore(path), "orders")
    theirs = Generation(0, SqliteStateStore(path), "orders")
    assert (mine.current(), theirs.current()) == (0, 0)
    # WHEN one raises it
    assert mine.raise_to(2) == 2
    # THEN the other keeps its cached value (cheap per batch) until it refreshes
    assert theirs.current() == 0
    assert theirs.refresh() == 2
    # AND lowering is refused
    with pytest.raises(StateError, match="refusing to lower it to 1"):
        mine.raise_to(1)
    assert SqliteStateStore(path).stored_generation("orders") == 2


# --- checkpoints ---------------------------------------------------------------------------


def test_checkpoints_never_move_backwards(store: SqliteStateStore) -> None:
    # GIVEN a shard checkpointed at 40-digit sequence number BIG + 200
    store.save_checkpoint(ARN, checkpoint(seq=BIG + 200, at=10.0))
    # WHEN an older position is saved, and one with no position at all
    store.save_checkpoint(ARN, checkpoint(seq=BIG + 100, at=11.0))
    store.save_checkpoint(ARN, checkpoint(seq=None, at=12.0))
    # THEN the shard stays at BIG + 200, kept as exact text
    saved = store.checkpoints(ARN)["shardId-1"]
    assert saved.sequence_number == str(BIG + 200)
    assert saved.updated_at == 12.0


def test_sequence_numbers_compare_as_integers_not_text(store: SqliteStateStore) -> None:
    # GIVEN a shard at "9" (as text "9" > "10")
    store.save_checkpoint(ARN, checkpoint(seq=9))
    # WHEN "10" is saved
    store.save_checkpoint(ARN, checkpoint(seq=10))
    # THEN the checkpoint moved forward to 10
    assert store.checkpoints(ARN)["shardId-1"].sequence_number == "10"


def test_a_finished_shard_stays_finished_and_a_gap_stays_recorded(
    store: SqliteStateStore,
) -> None:
    # GIVEN a shard read to its end, where data loss was detected
    gap = "TrimmedDataAccessException at 2026-01-02T03:04:05Z"
    store.save_checkpoint(ARN, checkpoint(seq=5, finished=True, parent="shardId-0", gap=gap))
    # WHEN a late save says it is not finished and has no gap
    store.save_checkpoint(ARN, checkpoint(seq=6, finished=False))
    # THEN it is still finished, with its parent and its gap, at the newer position
    assert store.checkpoints(ARN) == {
        "shardId-1": Checkpoint("shardId-1", "shardId-0", "6", True, 1.0, gap)
    }


def test_checkpoints_are_kept_per_stream_and_shard(store: SqliteStateStore) -> None:
    # GIVEN checkpoints of two shards of one stream, and one of another stream
    store.save_checkpoint(ARN, checkpoint("shardId-b", 2))
    store.save_checkpoint(ARN, checkpoint("shardId-a", 1))
    store.save_checkpoint(ARN + "x", checkpoint("shardId-a", 9))
    # THEN each stream lists its own, by shard id
    assert {s: c.sequence_number for s, c in store.checkpoints(ARN).items()} == {
        "shardId-a": "1",
        "shardId-b": "2",
    }
    assert store.checkpoints("arn:other") == {}


@given(st.lists(st.tuples(st.integers(0, 2**133), st.booleans()), min_size=1))
def test_merging_saves_in_any_order_keeps_the_furthest(saves: list[tuple[int, bool]]) -> None:
    # GIVEN saves of one shard in any order
    checkpoints = [checkpoint(seq=seq, finished=done) for seq, done in saves]
    # WHEN they are merged one after the other
    merged: Checkpoint | None = functools.reduce(merge_checkpoints, checkpoints, None)
    assert merged is not None
    # THEN the furthest position is kept, and finished if any save was
    assert merged.position == max(seq for seq, _ in saves)
    assert merged.finished == any(done for _, done in saves)


@pytest.mark.parametrize("bad", ["", "12a", "-1", "1.5", " 1"])
def test_a_sequence_number_must_be_decimal_digits(bad: str) -> None:
    with pytest.raises(StateError, match="shard 'shardId-1'"):
        Checkpoint("shardId-1", None, bad, False, 1.0)


def test_two_store_objects_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    # GIVEN two stores opened on the same file
    first = SqliteStateStore(tmp_path / "state.sqlite")
    second = SqliteStateStore(tmp_path / "state.sqlite")
    # WHEN each writes
    first.save_checkpoint(ARN, checkpoint(seq=1))
    second.store_generation("orders", 3)
    # THEN each reads the other's write
    assert second.checkpoints(ARN)["shardId-1"].sequence_number == "1"
    assert first.stored_generation("orders") == 3


SAVING_LOOP = textwrap.dedent(
    """
    import sys
    from ddb2bq.state import Checkpoint, SqliteStateStore

    store = SqliteStateStore(sys.argv[1])
    arn, base = sys.argv[2], int(sys.argv[3])
    for i in range(10**7):
        store.save_checkpoint(arn, Checkpoint(f"shard-{i:07d}", None, str(base + i), True, i))
        store.save_checkpoint(arn, Checkpoint("main", None, str(base + i), False, i))
        print(i, flush=True)
    """
)


def test_a_runner_killed_mid_save_leaves_a_consistent_prefix(tmp_path: Path) -> None:
    # GIVEN another process saving checkpoints in a loop, two saves per step
    path = tmp_path / "state.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", SAVING_LOOP, str(path), ARN, str(BIG)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = -1
    while acknowledged < 30:
        acknowledged = int(child.stdout.readline())
    # WHEN it is killed with SIGKILL while it keeps saving
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    # THEN the file is intact and holds exactly the first k steps' shards, k >= those acknowledged
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    saved = SqliteStateStore(path).checkpoints(ARN)
    main = saved.pop("main")
    last = len(saved) - 1
    assert last >= acknowledged
    assert saved == {
        f"shard-{i:07d}": Checkpoint(f"shard-{i:07d}", None, str(BIG + i), True, float(i))
        for i in range(last + 1)
    }
    # AND the main shard is at the last step or, killed between the two saves, the one before
    assert main.position in {BIG + last, BIG + last - 1}


# --- leases --------------------------------------------------------------------------------


def test_one_owner_holds_a_lease_until_it_expires(store: SqliteStateStore) -> None:
    # GIVEN runner a holds the lease of orders until 160
    lease_a = store.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    assert lease_a is not None
    assert (lease_a.owner, lease_a.expires_at) == ("runner-a", 160.0)
    # THEN runner b is refused until it expires (at 160 exactly it is still a's)
    assert store.acquire_lease("orders", "runner-b", now=160.0, duration_s=60.0) is None
    assert store.lease_holder("orders") == lease_a
    # AND another table's lease is free
    assert store.acquire_lease("customers", "runner-b", now=100.0, duration_s=60.0) is not None


def test_takeover_after_expiry_fences_the_old_owner(store: SqliteStateStore) -> None:
    # GIVEN runner a's lease expired at 160 without renewal, and a checkpoint saved under it
    lease_a = store.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    assert lease_a is not None
    store.save_checkpoint(ARN, checkpoint(seq=10), lease=lease_a)
    # WHEN runner b takes it over
    lease_b = store.acquire_lease("orders", "runner-b", now=161.0, duration_s=60.0)
    # THEN b holds it with a higher fencing token
    assert lease_b is not None
    assert lease_b.token > lease_a.token
    assert store.lease_holder("orders") == lease_b
    # AND a's renew and a's save are refused, naming the new holder; nothing of a's is written
    with pytest.raises(LeaseLost, match=r"'runner-a'.*'runner-b' holds it now"):
        store.renew_lease(lease_a, now=162.0)
    with pytest.raises(LeaseLost, match="'orders'"):
        store.save_checkpoint(ARN, checkpoint(seq=20), lease=lease_a)
    assert store.checkpoints(ARN)["shardId-1"].sequence_number == "10"
    # AND b saves under its lease
    store.save_checkpoint(ARN, checkpoint(seq=30), lease=lease_b)
    assert store.checkpoints(ARN)["shardId-1"].sequence_number == "30"


def test_renewing_extends_by_the_duration_the_lease_was_taken_with(
    store: SqliteStateStore,
) -> None:
    lease = store.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    assert lease is not None
    # WHEN renewed at 150, and later with another duration
    renewed = store.renew_lease(lease, now=150.0)
    assert (renewed.expires_at, renewed.token) == (210.0, lease.token)
    assert store.renew_lease(renewed, now=200.0, duration_s=5.0).expires_at == 205.0
    # THEN the stored lease follows, and b is still refused at 204
    assert store.acquire_lease("orders", "runner-b", now=204.0, duration_s=60.0) is None


def test_a_released_lease_can_be_taken_at_once_with_a_higher_token(
    store: SqliteStateStore,
) -> None:
    # GIVEN runner a took and released the lease
    lease_a = store.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    assert lease_a is not None
    store.release_lease(lease_a)
    assert store.lease_holder("orders") is None
    # WHEN runner b asks before a's lease would have expired
    lease_b = store.acquire_lease("orders", "runner-b", now=101.0, duration_s=60.0)
    # THEN b gets it, and a's released lease can no longer write; releasing it again is a no-op
    assert lease_b is not None
    assert lease_b.token > lease_a.token
    with pytest.raises(LeaseLost):
        store.save_checkpoint(ARN, checkpoint(seq=1), lease=lease_a)
    store.release_lease(lease_a)
    assert store.lease_holder("orders") == lease_b


def test_the_same_owner_reacquiring_gets_a_new_token(store: SqliteStateStore) -> None:
    # GIVEN runner a restarted under the same owner name while its lease is unexpired
    first = store.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    second = store.acquire_lease("orders", "runner-a", now=110.0, duration_s=60.0)
    # THEN it gets the lease again, and the old incarnation is fenced off
    assert first is not None
    assert second is not None
    assert second.token == first.token + 1
    with pytest.raises(LeaseLost):
        store.renew_lease(first, now=111.0)


@pytest.mark.parametrize(("owner", "duration"), [("", 60.0), ("runner-a", 0.0)])
def test_a_lease_needs_an_owner_and_a_duration(
    store: SqliteStateStore, owner: str, duration: float
) -> None:
    with pytest.raises(StateError, match="lease"):
        store.acquire_lease("orders", owner, now=100.0, duration_s=duration)


# --- files ---------------------------------------------------------------------------------


def test_a_folder_as_the_path_is_a_state_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=re.escape(f"{tmp_path} is a folder; give a file path")):
        SqliteStateStore(tmp_path)


def test_a_path_below_a_file_is_a_state_error_naming_it(tmp_path: Path) -> None:
    # GIVEN a plain file where the state file's folder should be
    (tmp_path / "taken").write_text("not a folder")
    # THEN opening below it names the path and what to do
    with pytest.raises(StateError, match=r"taken/state.sqlite.*choose a path in a writable folder"):
        SqliteStateStore(tmp_path / "taken" / "state.sqlite")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_read_only_folder_is_a_state_error_naming_the_path(tmp_path: Path) -> None:
    # GIVEN a folder nobody may write into
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    # THEN opening a state file in it names the path and what to do
    with pytest.raises(StateError, match=r"read-only/state.sqlite cannot be used.*writable folder"):
        SqliteStateStore(folder / "state.sqlite")
    folder.chmod(0o755)


def test_a_file_that_is_not_a_state_file_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the checkpoints you are looking for" * 100)
    with pytest.raises(StateError, match=re.escape(f"{path} cannot be used")):
        SqliteStateStore(path)


def test_a_locked_file_is_retryable(tmp_path: Path) -> None:
    # GIVEN another connection holding the write lock of the state file
    path = tmp_path / "state.sqlite"
    store = SqliteStateStore(path, busy_timeout_s=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # WHEN the store writes, THEN it is told to retry later
    with pytest.raises(StateUnavailable, match="locked by another process") as caught:
        store.store_generation("orders", 1)
    assert isinstance(caught.value, RetryableError)
    other.execute("ROLLBACK")
    store.store_generation("orders", 1)


def test_the_default_path_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with SqliteStateStore() as store:
        store.store_generation("orders", 1)
    assert (tmp_path / DEFAULT_PATH).is_file()
    assert str(DEFAULT_PATH) == ".ddb2bq/state.sqlite"


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.sqlite")
    store.close()
    store.close()
    with pytest.raises(StateError, match="is closed"):
        store.stored_generation("orders")


def test_every_state_error_is_a_ddb2bq_error() -> None:
    assert issubclass(StateError, Ddb2bqError)
    assert issubclass(LeaseLost, StateError)
    assert not issubclass(LeaseLost, RetryableError)
    assert issubclass(StateUnavailable, StateError)
    assert issubclass(StateUnavailable, RetryableError)


# --- the setting ---------------------------------------------------------------------------


def test_a_path_setting_opens_a_sqlite_file(tmp_path: Path) -> None:
    store = state_store_from_setting(str(tmp_path / "run" / "state.sqlite"))
    assert isinstance(store, SqliteStateStore)
    assert store.path == tmp_path / "run" / "state.sqlite"
    store.close()


def test_a_dynamodb_setting_uses_the_client_the_factory_makes() -> None:
    client = object()  # never called until the store is used
    store = state_store_from_setting(
        "dynamodb://ddb2bq-state", dynamodb_client_factory=lambda: client
    )
    assert isinstance(store, DynamoDBStateStore)
    assert store.table_name == "ddb2bq-state"


@pytest.mark.parametrize("bad", ["", "  ", "dynamodb://", "dynamodb://a", "dynamodb://no/slash"])
def test_a_setting_naming_nothing_usable_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="state store setting"):
        state_store_from_setting(bad, dynamodb_client_factory=object)


def test_an_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="neither a file path nor dynamodb://TABLE"):
        state_store_from_setting("s3://bucket/state.sqlite")
