"""The replication's stored state in a DynamoDB table (moto in server mode): the same behaviours as
the SQLite store, and two runners sharing one table."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from ddb2bq.local import REGION, Server
from ddb2bq.state import (
    MAX_GENERATION,
    Checkpoint,
    DynamoDBStateStore,
    Generation,
    Lease,
    LeaseLost,
    StateError,
    StateUnavailable,
    create_table,
    state_store_from_setting,
)

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
BIG = 10**39  # 40-digit sequence numbers: DynamoDB numbers would hold them, we keep them as text


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


def unique_name() -> str:
    return f"ddb2bq_state_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def state_table(dynamodb: Any) -> Iterator[str]:
    """A fresh state table, deleted afterwards."""
    name = unique_name()
    create_table(dynamodb, name)
    yield name
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def store(dynamodb: Any, state_table: str) -> DynamoDBStateStore:
    return DynamoDBStateStore(dynamodb, state_table)


def second_client(moto_server: Server) -> Any:
    """Another runner's own client on the same server."""
    return boto3.client("dynamodb", endpoint_url=moto_server.endpoint, region_name=REGION)


# --- generations ---------------------------------------------------------------------------


def test_generation_is_none_until_stored_then_only_rises(store: DynamoDBStateStore) -> None:
    # GIVEN a new state table
    assert store.stored_generation("orders") is None
    # WHEN generations are stored, the same twice, then the highest possible
    store.store_generation("orders", 3)
    store.store_generation("orders", 3)
    store.store_generation("orders", MAX_GENERATION)
    # THEN the highest is kept exactly, per table
    assert store.stored_generation("orders") == 2**64 - 1
    assert store.stored_generation("customers") is None


def test_lowering_a_generation_is_refused(store: DynamoDBStateStore, state_table: str) -> None:
    store.store_generation("orders", 5)
    with pytest.raises(StateError, match=rf"{state_table}'.* is 5; refusing to lower it to 4"):
        store.store_generation("orders", 4)
    assert store.stored_generation("orders") == 5


def test_generation_helper_keeps_the_configured_value_and_raises(
    store: DynamoDBStateStore,
) -> None:
    # GIVEN a configured generation 4 above the stored 2
    store.store_generation("orders", 2)
    generation = Generation(4, store, "orders")
    # THEN 4 is current and stored; raising stores the new one; lowering is refused
    assert generation.current() == 4
    assert store.stored_generation("orders") == 4
    assert generation.raise_to(6) == 6
    assert Generation(1, store, "orders").current() == 6
    with pytest.raises(StateError, match="refusing to lower"):
        generation.raise_to(5)


# --- checkpoints ---------------------------------------------------------------------------


def test_checkpoints_never_move_backwards(store: DynamoDBStateStore) -> None:
    # GIVEN a shard at 40-digit sequence number BIG + 200
    store.save_checkpoint(ARN, checkpoint(seq=BIG + 200, at=10.0))
    # WHEN an older position is saved, and one with no position
    store.save_checkpoint(ARN, checkpoint(seq=BIG + 100, at=11.0))
    store.save_checkpoint(ARN, checkpoint(seq=None, at=12.0))
    # THEN the shard stays at BIG + 200, exact
    saved = store.checkpoints(ARN)["shardId-1"]
    assert saved.sequence_number == str(BIG + 200)
    assert saved.updated_at == 12.0


def test_sequence_numbers_compare_as_integers_not_text(store: DynamoDBStateStore) -> None:
    store.save_checkpoint(ARN, checkpoint(seq=9))
    store.save_checkpoint(ARN, checkpoint(seq=10))
    assert store.checkpoints(ARN)["shardId-1"].sequence_number == "10"


def test_a_finished_shard_stays_finished_and_a_gap_stays_recorded(
    store: DynamoDBStateStore,
) -> None:
    # GIVEN a shard read to its end, where data loss was detected
    gap = "TrimmedDataAccessException at 2026-01-02T03:04:05Z"
    store.save_checkpoint(ARN, checkpoint(seq=5, finished=True, parent="shardId-0", gap=gap))
    # WHEN a late save says it is not finished and has no gap
    store.save_checkpoint(ARN, checkpoint(seq=6, finished=False))
    # THEN it stays finished, with its parent and gap, at the newer position
    assert store.checkpoints(ARN) == {
        "shardId-1": Checkpoint("shardId-1", "shardId-0", "6", True, 1.0, gap)
    }


def test_checkpoints_are_kept_per_stream_and_shard(store: DynamoDBStateStore) -> None:
    store.save_checkpoint(ARN, checkpoint("shardId-b", 2))
    store.save_checkpoint(ARN, checkpoint("shardId-a", 1))
    store.save_checkpoint(ARN + "x", checkpoint("shardId-a", 9))
    store.store_generation("orders", 1)  # other items of the table do not show up as shards
    assert {s: c.sequence_number for s, c in store.checkpoints(ARN).items()} == {
        "shardId-a": "1",
        "shardId-b": "2",
    }
    assert store.checkpoints("arn:other") == {}


def test_concurrent_saves_keep_the_furthest_position(
    store: DynamoDBStateStore, moto_server: Server, state_table: str
) -> None:
    # GIVEN two writers, each with its own client, saving rising positions of one shard at once
    stores = [store, DynamoDBStateStore(second_client(moto_server), state_table)]
    errors: list[StateError] = []

    def save_all(writer: DynamoDBStateStore, offset: int) -> None:
        try:
            for i in range(15):
                writer.save_checkpoint(ARN, checkpoint(seq=BIG + 2 * i + offset))
        except StateError as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=save_all, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN no save failed and the furthest position of either writer is kept
    assert errors == []
    assert store.checkpoints(ARN)["shardId-1"].position == BIG + 2 * 14 + 1


# --- two runners sharing the table ---------------------------------------------------------


def test_two_runners_one_lease_and_a_fenced_takeover(
    store: DynamoDBStateStore, moto_server: Server, state_table: str
) -> None:
    # GIVEN runner a holds the lease of orders until 160 and saved a checkpoint under it
    runner_a = store
    runner_b = DynamoDBStateStore(second_client(moto_server), state_table)
    lease_a = runner_a.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    assert lease_a is not None
    assert lease_a.expires_at == 160.0
    runner_a.save_checkpoint(ARN, checkpoint(seq=10), lease=lease_a)
    # THEN runner b is refused while it is unexpired, and sees who holds it
    assert runner_b.acquire_lease("orders", "runner-b", now=160.0, duration_s=60.0) is None
    assert runner_b.lease_holder("orders") == lease_a
    # WHEN a stops renewing and b tries again after expiry
    lease_b = runner_b.acquire_lease("orders", "runner-b", now=161.0, duration_s=60.0)
    # THEN b holds it with a higher fencing token
    assert lease_b is not None
    assert lease_b.token > lease_a.token
    # AND a's renew and a's save under its old lease are refused; nothing of a's is written
    with pytest.raises(LeaseLost, match=r"'runner-a'.*'runner-b' holds it now"):
        runner_a.renew_lease(lease_a, now=162.0)
    with pytest.raises(LeaseLost, match="'orders'"):
        runner_a.save_checkpoint(ARN, checkpoint(seq=20), lease=lease_a)
    with pytest.raises(LeaseLost):  # even a save that would change nothing
        runner_a.save_checkpoint(ARN, checkpoint(seq=10), lease=lease_a)
    assert runner_b.checkpoints(ARN)["shardId-1"].sequence_number == "10"
    # AND b writes under its lease
    runner_b.save_checkpoint(ARN, checkpoint(seq=30), lease=lease_b)
    assert runner_a.checkpoints(ARN)["shardId-1"].sequence_number == "30"


def test_renewing_extends_by_the_duration_the_lease_was_taken_with(
    store: DynamoDBStateStore,
) -> None:
    lease = store.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    assert lease is not None
    renewed = store.renew_lease(lease, now=150.5)
    assert (renewed.expires_at, renewed.token) == (210.5, lease.token)
    assert store.renew_lease(renewed, now=200.0, duration_s=5.0).expires_at == 205.0
    assert store.acquire_lease("orders", "runner-b", now=204.0, duration_s=60.0) is None
    assert store.lease_holder("orders") == Lease("orders", "runner-a", 205.0, lease.token)


def test_a_released_lease_can_be_taken_at_once_with_a_higher_token(
    store: DynamoDBStateStore,
) -> None:
    # GIVEN runner a took and released the lease
    lease_a = store.acquire_lease("orders", "runner-a", now=100.0, duration_s=60.0)
    assert lease_a is not None
    store.release_lease(lease_a)
    assert store.lease_holder("orders") is None
    # WHEN runner b asks before a's lease would have expired
    lease_b = store.acquire_lease("orders", "runner-b", now=101.0, duration_s=60.0)
    # THEN b gets it with a higher token; a's lease cannot write, and releasing it is a no-op
    assert lease_b is not None
    assert lease_b.token > lease_a.token
    with pytest.raises(LeaseLost):
        store.save_checkpoint(ARN, checkpoint(seq=1), lease=lease_a)
    store.release_lease(lease_a)
    assert store.lease_holder("orders") == lease_b


# --- the table, and errors -----------------------------------------------------------------


def test_a_missing_table_is_a_state_error_naming_it(dynamodb: Any) -> None:
    # GIVEN a store on a table that does not exist (its name in mixed case, kept as is)
    name = f"Missing-{unique_name()}"
    store = DynamoDBStateStore(dynamodb, name)
    # THEN every call says so in one sentence naming the table
    calls: list[Callable[[], object]] = [
        lambda: store.stored_generation("orders"),
        lambda: store.store_generation("orders", 1),
        lambda: store.checkpoints(ARN),
        lambda: store.save_checkpoint(ARN, checkpoint(seq=1)),
        lambda: store.acquire_lease("orders", "runner-a", now=1.0, duration_s=1.0),
    ]
    for call in calls:
        with pytest.raises(StateError, match=rf"'{name}' does not exist.*create it") as caught:
            call()
        assert not isinstance(caught.value, StateUnavailable)


def test_create_table_is_idempotent(dynamodb: Any, state_table: str) -> None:
    # WHEN the state table is created again, THEN it is kept, with its items
    store = DynamoDBStateStore(dynamodb, state_table)
    store.store_generation("orders", 2)
    create_table(dynamodb, state_table)
    assert store.stored_generation("orders") == 2


def test_create_table_refuses_a_table_with_other_keys(dynamodb: Any) -> None:
    # GIVEN a table of that name keyed differently
    name = unique_name()
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        with pytest.raises(StateError, match=f"{name}' exists with other keys"):
            create_table(dynamodb, name)
    finally:
        dynamodb.delete_table(TableName=name)


def test_an_unreachable_endpoint_is_retryable(aws_env: None) -> None:
    # GIVEN a client for a port nobody listens on, without botocore's own retries
    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name=REGION,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2),
    )
    store = DynamoDBStateStore(client, "ddb2bq-state")
    with pytest.raises(StateUnavailable, match=r"could not be reached.*'ddb2bq-state'"):
        store.stored_generation("orders")


def test_missing_credentials_are_a_state_error(
    moto_server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN no credentials anywhere boto3 looks (environment, files, instance metadata)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.Session().client(
        "dynamodb", endpoint_url=moto_server.endpoint, region_name=REGION
    )
    store = DynamoDBStateStore(client, "ddb2bq-state")
    with pytest.raises(StateError, match=r"No AWS credentials were found for .*'ddb2bq-state'"):
        store.stored_generation("orders")


def test_a_dynamodb_setting_reaches_the_table(dynamodb: Any, state_table: str) -> None:
    store = state_store_from_setting(
        f"dynamodb://{state_table}", dynamodb_client_factory=lambda: dynamodb
    )
    store.store_generation("orders", 1)
    assert DynamoDBStateStore(dynamodb, state_table).stored_generation("orders") == 1
