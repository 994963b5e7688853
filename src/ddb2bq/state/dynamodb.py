"""The state store in one DynamoDB table: for runners in containers, which keep no local disk.

One table, string hash key ``pk`` and string range key ``sk``::

    pk = "table#<table>"      sk = "generation"      generation (N)
    pk = "table#<table>"      sk = "lease"           owner (S), expires_at (N), token (N), duration_s (N)
    pk = "stream#<arn>"       sk = "shard#<shard>"   sequence_number (S: up to 40 digits), finished, ...

Every write is conditional, so several runners can share the table safely: a lease is taken only
when free, expired or already the caller's (and its fencing token rises), a generation never falls,
and a checkpoint is written only over the version it was merged with (a revision number) and, when
a lease is given, in one transaction with a check that the lease's owner and token are current.
The boto3 client is passed in; boto3 and botocore are optional and imported lazily.

Example::

    client = boto3.client("dynamodb")
    create_table(client, "ddb2bq-state")
    store = DynamoDBStateStore(client, "ddb2bq-state")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ddb2bq.state.dynamodb_errors import ConditionFailedError, translate
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

DynamoDBClient = Any  # a boto3 DynamoDB client (boto3 ships no type hints)
Item = dict[str, Any]  # an item in DynamoDB JSON, as the low-level client speaks it

_SAVE_ATTEMPTS = 5  # a save re-merges when another writer moved the checkpoint in between
_NAMES = {
    "#pk": "pk", "#sk": "sk", "#g": "generation", "#owner": "owner", "#expires": "expires_at",
    "#token": "token", "#duration": "duration_s", "#rev": "rev", "#done": "done",
}  # fmt: skip


class DynamoDBStateStore:
    """Generations, checkpoints and leases in the DynamoDB table ``table_name``, through ``client``.

    Errors become StateError (StateUnavailable when retrying may help) naming the table.

    Example::

        store = DynamoDBStateStore(boto3.client("dynamodb"), "ddb2bq-state")
        lease = store.acquire_lease("orders", "task-7f3a", now=time.time(), duration_s=60)
    """

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._name = table_name

    @property
    def table_name(self) -> str:
        """The DynamoDB table holding the state."""
        return self._name

    def stored_generation(self, table: str) -> int | None:
        """The generation stored for ``table``, or None when none ever was."""
        item = self._get(_table_key(table, "generation"), "reading a generation")
        return None if item is None else int(item["generation"]["N"])

    def store_generation(self, table: str, generation: int) -> None:
        """Store ``generation`` for ``table``; StateError when it is lower than the stored one."""
        check_generation(table, generation)
        try:
            self._request(
                "update_item",
                "storing a generation",
                Key=_table_key(table, "generation"),
                UpdateExpression="SET #g = :g",
                ConditionExpression="attribute_not_exists(#g) OR #g <= :g",
                ExpressionAttributeValues={":g": {"N": str(generation)}},
            )
        except ConditionFailedError as exc:
            raise StateError(
                f"The generation of table {table!r} in the DynamoDB state table {self._name!r} "
                f"is {self.stored_generation(table)}; refusing to lower it to {generation}."
            ) from exc

    def checkpoints(self, stream_arn: str) -> dict[str, Checkpoint]:
        """Every shard's checkpoint of the stream, by shard id (strongly consistent reads)."""
        found: dict[str, Checkpoint] = {}
        start: dict[str, Any] = {}
        while True:
            page = self._request(
                "query",
                "reading checkpoints",
                KeyConditionExpression="#pk = :pk AND begins_with(#sk, :shard)",
                ExpressionAttributeValues={
                    ":pk": {"S": _stream_pk(stream_arn)},
                    ":shard": {"S": "shard#"},
                },
                ConsistentRead=True,
                **start,
            )
            for item in page.get("Items", []):
                checkpoint = _checkpoint(item)
                found[checkpoint.shard_id] = checkpoint
            if not page.get("LastEvaluatedKey"):
                return found
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def save_checkpoint(
        self, stream_arn: str, checkpoint: Checkpoint, *, lease: Lease | None = None
    ) -> None:
        """Merge ``checkpoint`` into the stored one, never backwards (see merge_checkpoints);
        with ``lease``, only while it is still current (LeaseLost otherwise)."""
        key = _shard_key(stream_arn, checkpoint.shard_id)
        for _ in range(_SAVE_ATTEMPTS):
            item = self._get(key, "reading a checkpoint")
            stored = None if item is None else _checkpoint(item)
            merged = merge_checkpoints(stored, checkpoint)
            if merged == stored:
                if lease is not None:
                    self._check_lease(lease)
                return
            try:
                self._put_checkpoint(key, merged, item, lease)
                return
            except ConditionFailedError:
                if lease is not None:
                    self._check_lease(lease)  # LeaseLost, or another save came first: merge again
        raise StateUnavailable(
            f"The checkpoint of shard {checkpoint.shard_id!r} in the DynamoDB state table "
            f"{self._name!r} kept changing under {_SAVE_ATTEMPTS} saves; retry after a back-off."
        )

    def acquire_lease(
        self, table: str, owner: str, *, now: float, duration_s: float
    ) -> Lease | None:
        """Take the lease of ``table`` for ``owner`` until ``now + duration_s``, with a new token;
        None while another owner holds a lease that has not expired."""
        check_lease_request(table, owner, now, duration_s)
        try:
            response = self._request(
                "update_item",
                "taking a lease",
                Key=_table_key(table, "lease"),
                UpdateExpression="SET #owner = :owner, #expires = :expires, #duration = :duration "
                "ADD #token :one",
                ConditionExpression="attribute_not_exists(#owner) OR #expires < :now "
                "OR #owner = :owner",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":expires": _number(now + duration_s),
                    ":duration": _number(duration_s),
                    ":now": _number(now),
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
            )
        except ConditionFailedError:
            return None
        return _lease(table, response["Attributes"])

    def renew_lease(self, lease: Lease, *, now: float, duration_s: float | None = None) -> Lease:
        """Extend ``lease`` to ``now + duration_s`` (default: the duration it was taken with);
        LeaseLost when it is no longer the current lease of its table."""
        check_time(now, f"the lease of table {lease.table!r}")
        values: Item = {":owner": {"S": lease.owner}, ":token": {"N": str(lease.token)}}
        if duration_s is None:
            update = "SET #expires = :now + #duration"
            values[":now"] = _number(now)
        else:
            check_lease_request(lease.table, lease.owner, now, duration_s)
            update = "SET #expires = :expires, #duration = :duration"
            values.update({":expires": _number(now + duration_s), ":duration": _number(duration_s)})
        try:
            response = self._request(
                "update_item",
                "renewing a lease",
                Key=_table_key(lease.table, "lease"),
                UpdateExpression=update,
                ConditionExpression="#owner = :owner AND #token = :token",
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ConditionFailedError as exc:
            raise LeaseLost(lease_lost(lease, self.lease_holder(lease.table))) from exc
        return Lease(
            lease.table, lease.owner, float(response["Attributes"]["expires_at"]["N"]), lease.token
        )

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up (the token is kept, so the next one is higher); no-op when lost."""
        try:
            self._request(
                "update_item",
                "releasing a lease",
                Key=_table_key(lease.table, "lease"),
                UpdateExpression="SET #expires = :zero REMOVE #owner",
                ConditionExpression="#owner = :owner AND #token = :token",
                ExpressionAttributeValues={
                    ":owner": {"S": lease.owner},
                    ":token": {"N": str(lease.token)},
                    ":zero": {"N": "0"},
                },
            )
        except ConditionFailedError:
            return  # someone else holds it now: nothing of ours to release

    def lease_holder(self, table: str) -> Lease | None:
        """The lease of ``table`` as stored (it may have expired), or None when nobody holds it."""
        return _lease(table, self._get(_table_key(table, "lease"), "reading a lease"))

    def backfill_progress(self, table: str, generation: int) -> dict[int, SegmentProgress]:
        """The saved progress of ``table``'s backfill in ``generation``, by segment."""
        found: dict[int, SegmentProgress] = {}
        start: dict[str, Any] = {}
        while True:
            page = self._request(
                "query",
                "reading backfill progress",
                KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": f"table#{table}"},
                    ":prefix": {"S": f"backfill#{generation:016x}#"},
                },
                ConsistentRead=True,
                **start,
            )
            for item in page.get("Items", []):
                progress = _progress(item)
                found[progress.segment] = progress
            if not page.get("LastEvaluatedKey"):
                return found
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def save_backfill_progress(
        self, table: str, generation: int, progress: SegmentProgress
    ) -> None:
        """Save one segment's progress (a done segment stays done)."""
        sort_key = f"backfill#{generation:016x}#{progress.segment:07d}"
        item: Item = {
            "pk": {"S": f"table#{table}"},
            "sk": {"S": sort_key},
            "segment": {"N": str(progress.segment)},
            "total": {"N": str(progress.total)},
            "done": {"BOOL": progress.done},
            "items": {"N": str(progress.items)},
            "updated_at": _number(progress.updated_at),
            **({"last_key": {"S": progress.last_key}} if progress.last_key is not None else {}),
        }
        try:
            self._request(
                "put_item",
                "saving backfill progress",
                Item=item,
                ConditionExpression="attribute_not_exists(#done) OR #done = :false",
                ExpressionAttributeValues={":false": {"BOOL": False}},
            )
        except ConditionFailedError:
            return  # the segment is done already: nothing to move back

    def close(self) -> None:
        """Nothing to release: the client belongs to the caller."""

    def __repr__(self) -> str:
        return f"DynamoDBStateStore(table_name={self._name!r})"

    def _check_lease(self, lease: Lease) -> None:
        holder = self.lease_holder(lease.table)
        if holder is None or (holder.owner, holder.token) != (lease.owner, lease.token):
            raise LeaseLost(lease_lost(lease, holder))

    def _put_checkpoint(
        self, key: Item, checkpoint: Checkpoint, stored: Item | None, lease: Lease | None
    ) -> None:
        revision = 0 if stored is None else int(stored["rev"]["N"])
        put: Item = {
            "TableName": self._name,
            "Item": {**key, **_checkpoint_attributes(checkpoint), "rev": {"N": str(revision + 1)}},
            "ConditionExpression": "attribute_not_exists(#sk)" if stored is None else "#rev = :rev",
            "ExpressionAttributeNames": {"#sk": "sk"} if stored is None else {"#rev": "rev"},
        }
        if stored is not None:
            put["ExpressionAttributeValues"] = {":rev": {"N": str(revision)}}
        if lease is None:
            self._call("put_item", "saving a checkpoint", **put)
            return
        items = [{"ConditionCheck": self._lease_condition(lease)}, {"Put": put}]
        self._call("transact_write_items", "saving a checkpoint", TransactItems=items)

    def _lease_condition(self, lease: Lease) -> Item:
        return {
            "TableName": self._name,
            "Key": _table_key(lease.table, "lease"),
            "ConditionExpression": "#owner = :owner AND #token = :token",
            "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
            "ExpressionAttributeValues": {
                ":owner": {"S": lease.owner},
                ":token": {"N": str(lease.token)},
            },
        }

    def _get(self, key: Item, action: str) -> Item | None:
        item: Item | None = self._request("get_item", action, Key=key, ConsistentRead=True).get(
            "Item"
        )
        return item

    def _request(self, operation: str, action: str, **kwargs: Any) -> Mapping[str, Any]:
        """Call ``operation`` on the state table, naming only the attributes its expressions use."""
        expressions = " ".join(
            str(kwargs.get(k, ""))
            for k in ("KeyConditionExpression", "UpdateExpression", "ConditionExpression")
        )
        names = {alias: name for alias, name in _NAMES.items() if alias in expressions}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        return self._call(operation, action, TableName=self._name, **kwargs)

    def _call(self, operation: str, action: str, **kwargs: Any) -> Mapping[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 (optional)

        try:
            response: Mapping[str, Any] = getattr(self._client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self._name, action) from exc
        return response


def create_table(client: DynamoDBClient, name: str, *, wait_s: float = 300.0) -> None:
    """Create the state table ``name`` (on demand, keys ``pk``/``sk``) and wait until it is ACTIVE.

    Idempotent: an existing table with the same keys is fine; one with other keys is a StateError.

    Example::

        create_table(boto3.client("dynamodb"), "ddb2bq-state")
    """
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 (optional)

    try:
        client.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise translate(exc, name, "creating the table") from exc
    except BotoCoreError as exc:
        raise translate(exc, name, "creating the table") from exc
    _wait_until_active(client, name, wait_s)


def _wait_until_active(client: DynamoDBClient, name: str, wait_s: float) -> None:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 (optional)

    delay = 2
    try:
        client.get_waiter("table_exists").wait(
            TableName=name,
            WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(wait_s // delay))},
        )
        table = client.describe_table(TableName=name)["Table"]
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, name, "waiting for it to become ACTIVE") from exc
    keys = {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]}
    types = {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]}
    if keys != {("pk", "HASH"), ("sk", "RANGE")} or not {("pk", "S"), ("sk", "S")} <= types:
        raise StateError(
            f"The DynamoDB table {name!r} exists with other keys than the state table's "
            "(string pk and sk); choose another name for the state table."
        )


def _table_key(table: str, kind: str) -> Item:
    return {"pk": {"S": f"table#{table}"}, "sk": {"S": kind}}


def _stream_pk(stream_arn: str) -> str:
    return f"stream#{stream_arn}"


def _shard_key(stream_arn: str, shard_id: str) -> Item:
    return {"pk": {"S": _stream_pk(stream_arn)}, "sk": {"S": f"shard#{shard_id}"}}


def _number(value: float) -> dict[str, str]:
    return {"N": repr(float(value))}


def _checkpoint_attributes(checkpoint: Checkpoint) -> Item:
    optional = {
        "parent_shard_id": checkpoint.parent_shard_id,
        "sequence_number": checkpoint.sequence_number,
        "gap": checkpoint.gap,
    }
    return {
        "shard_id": {"S": checkpoint.shard_id},
        "finished": {"BOOL": checkpoint.finished},
        "updated_at": _number(checkpoint.updated_at),
        **{name: {"S": value} for name, value in optional.items() if value is not None},
    }


def _checkpoint(item: Item) -> Checkpoint:
    def text(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    return Checkpoint(
        shard_id=str(item["shard_id"]["S"]),
        parent_shard_id=text("parent_shard_id"),
        sequence_number=text("sequence_number"),
        finished=bool(item["finished"]["BOOL"]),
        updated_at=float(item["updated_at"]["N"]),
        gap=text("gap"),
    )


def _progress(item: Item) -> SegmentProgress:
    last = item.get("last_key")
    return SegmentProgress(
        segment=int(item["segment"]["N"]),
        total=int(item["total"]["N"]),
        last_key=None if last is None else str(last["S"]),
        done=bool(item["done"]["BOOL"]),
        items=int(item["items"]["N"]),
        updated_at=float(item["updated_at"]["N"]),
    )


def _lease(table: str, item: Item | None) -> Lease | None:
    # A lease item without its token is one moto shows half-written (its UpdateItem applies SET
    # before ADD and a concurrent GetItem can see between them; DynamoDB's is atomic): nobody
    # holds that lease yet, as before the write.
    if item is None or "owner" not in item or "token" not in item:
        return None
    return Lease(
        table=table,
        owner=str(item["owner"]["S"]),
        expires_at=float(item["expires_at"]["N"]),
        token=int(item["token"]["N"]),
    )
