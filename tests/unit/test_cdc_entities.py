"""The ``cdc`` mirrors of a table with entities: which Storage Write rows go to which mirror.

The local BigQuery does not apply ``_CHANGE_TYPE``, so these tests read the AppendRows requests
themselves: per mirror table, each row with its change type and sequence number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from google.api_core import exceptions as api
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2
from google.rpc import status_pb2

from ddb2bq.bigquery.clients import cdc_writer_for
from ddb2bq.bigquery.entity_mirrors import scoped_mirrors
from ddb2bq.bigquery.retry import RetryPolicy
from ddb2bq.bigquery.sql import TableRef
from ddb2bq.bigquery.storage_write import EntityCdcWriter, message_class
from ddb2bq.config import load_config
from ddb2bq.entities import Entities
from ddb2bq.records import Change, from_lambda_record
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import TableLayout, build_layout

SHOP_ENTITIES = [
    {"name": "users", "match": {"pk": "USER#{user_id}", "sk": "PROFILE"},
     "promote": ["email", "plan"]},
    {"name": "orders",
     "match": {"pk": "USER#{user_id}", "sk": "ORDER#{ordered_on}#{order_id}", "type": "Order"},
     "types": {"ordered_on": "DATE", "order_id": "INT64"}, "promote": ["total", "status"]},
    {"name": "order_lines", "match": {"pk": "ORDER#{order_id}", "sk": "LINE#{line_no}"},
     "types": {"order_id": "INT64", "line_no": "INT64"}, "promote": ["sku", "quantity", "price"]},
]  # fmt: skip
PROMOTED = {
    "email": "STRING", "plan": "STRING", "total": "NUMERIC", "status": "STRING",
    "sku": "STRING", "quantity": "INT64", "price": "NUMERIC",
}  # fmt: skip
MIRRORS = ("shop", "users", "orders", "order_lines")
USER = {"pk": {"S": "USER#42"}, "sk": {"S": "PROFILE"},
        "email": {"S": "ada@example.com"}, "plan": {"S": "pro"}}  # fmt: skip
ORDER = {"pk": {"S": "USER#42"}, "sk": {"S": "ORDER#2026-11-30#981"}, "type": {"S": "Order"},
         "total": {"N": "129.90"}, "status": {"S": "PAID"}}  # fmt: skip
LINE = {"pk": {"S": "ORDER#981"}, "sk": {"S": "LINE#1"},
        "sku": {"S": "KB-101"}, "quantity": {"N": "2"}, "price": {"N": "64.95"}}  # fmt: skip
SETTINGS = {"pk": {"S": "USER#42"}, "sk": {"S": "SETTINGS"}, "theme": {"S": "dark"}}


class RecordingWriteClient:
    """A write client that answers each request to a table with the next of that table's
    ``answers`` (then success); keeps the requests."""

    def __init__(
        self, answers: dict[str, list[types.AppendRowsResponse | Exception]] | None = None
    ):
        self.answers = answers or {}
        self.requests: list[types.AppendRowsRequest] = []

    def append_rows(
        self, requests: Iterator[types.AppendRowsRequest], **_: Any
    ) -> list[types.AppendRowsResponse]:
        (request,) = list(requests)
        self.requests.append(request)
        answers = self.answers.get(_table(request))
        if not answers:
            return [types.AppendRowsResponse(append_result=types.AppendRowsResponse.AppendResult())]
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [answer]

    def rows_by_table(self) -> dict[str, list[dict[str, Any]]]:
        """Every row sent, decoded, by mirror table name, in the order sent."""
        tables: dict[str, list[dict[str, Any]]] = {}
        for request in self.requests:
            tables.setdefault(_table(request), []).extend(_decoded(request))
        return tables


def _table(request: types.AppendRowsRequest) -> str:
    return request.write_stream.split("/")[-3]


def _decoded(request: types.AppendRowsRequest) -> list[dict[str, Any]]:
    descriptor = descriptor_pb2.DescriptorProto()
    schema = types.ProtoSchema.pb(request.proto_rows.writer_schema)
    descriptor.ParseFromString(schema.proto_descriptor.SerializeToString())
    message = message_class(descriptor)
    return [
        {f.name: v for f, v in message.FromString(data).ListFields()}
        for data in request.proto_rows.rows.serialized_rows
    ]


def shop_layout(*, soft_deletes: bool = False) -> TableLayout:
    layout = build_layout([("pk", "S"), ("sk", "S")], promoted=PROMOTED, soft_deletes=soft_deletes)
    return layout.with_entities(
        Entities.from_config(SHOP_ENTITIES, table="shop", keys=["pk", "sk"])
    )


def stream_record(op: str, sequence: int, image: Any, *, view: str = "NEW_IMAGE") -> Change:
    """A Lambda DynamoDB Streams record of table ``shop`` for the item ``image``: its new image
    unless a REMOVE; a REMOVE carries ``image`` as its old image when ``view`` has old images."""
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1_764_500_000 + sequence,
        "Keys": {"pk": image["pk"], "sk": image["sk"]},
        "SequenceNumber": str(sequence),
        "SizeBytes": 120,
        "StreamViewType": view,
    }
    if op != "REMOVE" and view != "KEYS_ONLY":
        dynamodb["NewImage"] = image
    elif view == "NEW_AND_OLD_IMAGES":
        dynamodb["OldImage"] = image
    return from_lambda_record(
        {
            "eventID": f"evt-{sequence}",
            "eventName": op,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": dynamodb,
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/shop/stream/2026-01-01T00:00:00.000",
        }
    )


def seq(sequence: int) -> str:
    return f"0000000000000000/0000000000000000/0000000000000000/{sequence:016x}"


def write(
    batch: list[Change], layout: TableLayout, client: RecordingWriteClient
) -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    mirrors = scoped_mirrors(layout, TableRef("p", "d", "shop"), layout.entities)  # type: ignore[arg-type]
    no_wait = RetryPolicy(max_attempts=2, sleep=lambda _: None, random=lambda: 0.0)
    writer = EntityCdcWriter(client, mirrors, keys=["pk", "sk"], retry_policy=no_wait)
    result = writer.write(RowBuilder(layout, clock=lambda: 0).build_all(batch))
    return result, client.rows_by_table()


def changes_in(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(r["pk"], r["sk"], r["_CHANGE_TYPE"], r["_CHANGE_SEQUENCE_NUMBER"]) for r in rows]


def delete(key: tuple[str, str], sequence: int) -> tuple[str, str, str, str]:
    return (*key, "DELETE", seq(sequence))


def upsert(key: tuple[str, str], sequence: int) -> tuple[str, str, str, str]:
    return (*key, "UPSERT", seq(sequence))


USER_KEY, ORDER_KEY = ("USER#42", "PROFILE"), ("USER#42", "ORDER#2026-11-30#981")
LINE_KEY, SETTINGS_KEY = ("ORDER#981", "LINE#1"), ("USER#42", "SETTINGS")


def test_each_change_upserts_its_entity_and_deletes_its_key_everywhere_else() -> None:
    # GIVEN a NEW_IMAGE stream: a user, an order, an order line, the order's type changed to
    # Refund (of no entity now), the line removed (no old image), and an item of no entity
    batch = [
        stream_record("INSERT", 100, USER),
        stream_record("INSERT", 101, ORDER),
        stream_record("INSERT", 102, LINE),
        stream_record("MODIFY", 103, {**ORDER, "type": {"S": "Refund"}}),
        stream_record("REMOVE", 104, LINE),
        stream_record("INSERT", 105, SETTINGS),
    ]
    client = RecordingWriteClient()
    # WHEN the batch is written to the cdc mirrors
    result, tables = write(batch, shop_layout(), client)
    # THEN every change is written: one request per mirror, the table's own mirror first
    assert (result.written, result.failures, result.extra) == (6, (), {})
    assert [_table(r) for r in client.requests] == list(MIRRORS)
    # AND each mirror UPSERTs the changes of its entity and DELETEs the key of every other,
    # the REMOVE being a DELETE everywhere, all with the change's sequence number
    assert changes_in(tables["shop"]) == [
        delete(USER_KEY, 100), delete(ORDER_KEY, 101), delete(LINE_KEY, 102),
        upsert(ORDER_KEY, 103), delete(LINE_KEY, 104), upsert(SETTINGS_KEY, 105),
    ]  # fmt: skip
    assert changes_in(tables["users"]) == [
        upsert(USER_KEY, 100), delete(ORDER_KEY, 101), delete(LINE_KEY, 102),
        delete(ORDER_KEY, 103), delete(LINE_KEY, 104), delete(SETTINGS_KEY, 105),
    ]  # fmt: skip
    assert changes_in(tables["orders"]) == [
        delete(USER_KEY, 100), upsert(ORDER_KEY, 101), delete(LINE_KEY, 102),
        delete(ORDER_KEY, 103), delete(LINE_KEY, 104), delete(SETTINGS_KEY, 105),
    ]  # fmt: skip
    assert changes_in(tables["order_lines"]) == [
        delete(USER_KEY, 100), delete(ORDER_KEY, 101), upsert(LINE_KEY, 102),
        delete(ORDER_KEY, 103), delete(LINE_KEY, 104), delete(SETTINGS_KEY, 105),
    ]  # fmt: skip
    assert tables["shop"][0]["_CHANGE_SEQUENCE_NUMBER"] == (
        "0000000000000000/0000000000000000/0000000000000000/0000000000000064"
    )


def test_an_upsert_carries_the_typed_key_parts_and_only_its_mirror_columns() -> None:
    # GIVEN an order, an order line and an item of no entity
    batch = [
        stream_record("INSERT", 101, ORDER),
        stream_record("INSERT", 102, LINE),
        stream_record("INSERT", 105, SETTINGS),
    ]
    # WHEN they are written
    _, tables = write(batch, shop_layout(), RecordingWriteClient())
    # THEN the order's row has its parts typed (DATE as text, INT64 as an integer) and its own
    # promoted columns, none of another entity's
    order = tables["orders"][0]
    assert order == {
        "pk": "USER#42", "sk": "ORDER#2026-11-30#981",
        "user_id": "42", "ordered_on": "2026-11-30", "order_id": 981,
        "total": "129.9", "status": "PAID",
        "item": order["item"], "_seq": seq(101), "_changed_at": 1_764_500_101_000_000,
        "_CHANGE_TYPE": "UPSERT", "_CHANGE_SEQUENCE_NUMBER": seq(101),
    }  # fmt: skip
    assert '"type":"Order"' in order["item"]
    line = tables["order_lines"][1]
    assert (line["order_id"], line["line_no"], line["sku"], line["quantity"]) == (
        981,
        1,
        "KB-101",
        2,
    )
    assert line["price"] == "64.95"
    # AND the item of no entity lands in the table's own mirror with its keys and item only
    settings = tables["shop"][2]
    assert sorted(settings) == sorted(
        ["pk", "sk", "item", "_seq", "_changed_at", "_CHANGE_TYPE", "_CHANGE_SEQUENCE_NUMBER"]
    )
    assert settings["item"] == '{"pk":"USER#42","sk":"SETTINGS","theme":"dark"}'
    # AND a DELETE carries only the keys and the pseudo-columns
    assert tables["users"][0] == {
        "pk": "USER#42", "sk": "ORDER#2026-11-30#981",
        "_CHANGE_TYPE": "DELETE", "_CHANGE_SEQUENCE_NUMBER": seq(101),
    }  # fmt: skip


def test_soft_deletes_flag_the_key_in_its_entity_when_the_entity_is_known() -> None:
    # GIVEN soft deletes and three REMOVEs: a user (its rule reads only keys), an order from a
    # NEW_IMAGE stream (its rule reads `type`: unknown), an item of no entity with its old image
    batch = [
        stream_record("REMOVE", 200, USER),
        stream_record("REMOVE", 201, ORDER),
        stream_record("REMOVE", 202, SETTINGS, view="NEW_AND_OLD_IMAGES"),
    ]
    # WHEN they are written
    _, tables = write(batch, shop_layout(soft_deletes=True), RecordingWriteClient())
    # THEN the user is flagged in users, the order is deleted from every mirror, and the item of
    # no entity is flagged in the table's own mirror; every other mirror deletes the key
    assert changes_in(tables["users"]) == [
        upsert(USER_KEY, 200), delete(ORDER_KEY, 201), delete(SETTINGS_KEY, 202),
    ]  # fmt: skip
    assert changes_in(tables["shop"]) == [
        delete(USER_KEY, 200), delete(ORDER_KEY, 201), upsert(SETTINGS_KEY, 202),
    ]  # fmt: skip
    for table in ("orders", "order_lines"):
        assert changes_in(tables[table]) == [
            delete(USER_KEY, 200), delete(ORDER_KEY, 201), delete(SETTINGS_KEY, 202),
        ]  # fmt: skip
    user, settings = tables["users"][0], tables["shop"][2]
    assert (user["_deleted"], user["user_id"], "item" in user) == (True, "42", False)
    assert (settings["_deleted"], settings["item"]) == (
        True,
        '{"pk":"USER#42","sk":"SETTINGS","theme":"dark"}',
    )
    # AND a live row of a soft-deleting table says it is not deleted
    _, live = write(
        [stream_record("INSERT", 203, USER)], shop_layout(soft_deletes=True), RecordingWriteClient()
    )
    assert live["users"][0]["_deleted"] is False


def test_a_change_fails_when_any_of_its_mirrors_refuses_its_row() -> None:
    # GIVEN the orders mirror refusing the first row of its first request
    refusal = types.AppendRowsResponse(
        error=status_pb2.Status(code=3, message="Rows are invalid"),
        row_errors=[types.RowError(index=0, code=types.RowError.RowErrorCode.FIELDS_ERROR,
                                   message="Required field missing")],
    )  # fmt: skip
    client = RecordingWriteClient({"orders": [refusal]})
    batch = [stream_record("INSERT", 300, USER), stream_record("INSERT", 301, LINE)]
    # WHEN a user and a line are written
    result, _ = write(batch, shop_layout(), client)
    # THEN the user's change fails terminally, naming the orders mirror; the line's lands
    (failure,) = result.failures
    assert (failure.index, failure.retryable, result.written) == (0, False, 1)
    assert "projects/p/datasets/d/tables/orders" in failure.reason
    assert "FIELDS_ERROR: Required field missing" in failure.reason
    # AND an outage of one mirror (two attempts) makes every change retryable (each has a row there)
    outage = RecordingWriteClient({"order_lines": [api.ServiceUnavailable("Socket closed")] * 2})
    result, _ = write(batch, shop_layout(), outage)
    assert [(f.index, f.retryable) for f in result.failures] == [(0, True), (1, True)]
    assert result.written == 0


def test_a_change_without_a_new_image_is_skipped_once() -> None:
    # GIVEN a KEYS_ONLY stream's INSERT: keys, no image
    client = RecordingWriteClient()
    # WHEN it is written
    result, _ = write([stream_record("INSERT", 400, USER, view="KEYS_ONLY")], shop_layout(), client)
    # THEN nothing is sent and it counts as one skipped change, not one per mirror
    assert (result.written, result.failures, result.extra) == (0, (), {"skipped": 1})
    assert client.requests == []


def test_the_cdc_writer_of_a_configuration_with_entities_writes_every_mirror() -> None:
    # GIVEN a cdc configuration of table shop with the three entities (as DDB2BQ_ENTITIES)
    config = load_config(
        environ={
            "DDB2BQ_SOURCE_TABLE": "shop",
            "DDB2BQ_TARGET_PROJECT": "p",
            "DDB2BQ_TARGET_DATASET": "d",
            "DDB2BQ_TARGET_MIRROR": "cdc",
            "DDB2BQ_TARGET_WRITER": "storage_write",
            "DDB2BQ_ENTITIES": json.dumps(SHOP_ENTITIES),
        }
    )
    client = RecordingWriteClient()
    # WHEN the composition root's cdc writer writes an order
    writer = cdc_writer_for(config, SimpleNamespace(project="p"), write_client=client)  # type: ignore[arg-type]
    result = writer(shop_layout()).write(
        RowBuilder(shop_layout(), clock=lambda: 0).build_all([stream_record("INSERT", 7, ORDER)])
    )
    # THEN it went to the orders mirror as an UPSERT and to every other mirror as a DELETE
    assert result.written == 1
    tables = client.rows_by_table()
    assert changes_in(tables["orders"]) == [upsert(ORDER_KEY, 7)]
    for other in ("shop", "users", "order_lines"):
        assert changes_in(tables[other]) == [delete(ORDER_KEY, 7)]
