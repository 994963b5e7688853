"""The integration fixtures give working servers: DynamoDB Streams on moto, BigQuery on the emulator."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from google.api_core.retry import Retry
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def test_dynamodb_change_is_read_back_from_its_stream(dynamodb: Any, dynamodbstreams: Any) -> None:
    # GIVEN a table with a NEW_AND_OLD_IMAGES stream
    table = f"orders-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    item = {"id": {"S": "o-1"}, "total": {"N": "12.50"}}

    # WHEN an item is written
    dynamodb.put_item(TableName=table, Item=item)

    # THEN the stream holds its INSERT with the new image
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shards = dynamodbstreams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = dynamodbstreams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = dynamodbstreams.get_records(ShardIterator=iterator)["Records"]
    assert [r["eventName"] for r in records] == ["INSERT"]
    assert records[0]["dynamodb"]["NewImage"] == item


def test_bigquery_row_is_inserted_and_queried(
    bq_client: bigquery.Client, dataset: bigquery.Dataset, bq_retry: Retry
) -> None:
    # GIVEN a table
    schema = [bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("total", "NUMERIC")]
    table = bq_client.create_table(bigquery.Table(dataset.table("orders"), schema=schema))

    # WHEN a row is streamed in with insert_rows_json
    errors = bq_client.insert_rows_json(table, [{"id": "o-1", "total": "12.50"}], retry=bq_retry)

    # THEN no row errors are reported and a query reads the row back, exactly
    assert errors == []
    assert _select_all(bq_client, table, bq_retry) == [{"id": "o-1", "total": Decimal("12.50")}]


def test_bigquery_row_is_appended_through_storage_write(
    bq_client: bigquery.Client,
    bq_write_client: bigquery_storage_v1.BigQueryWriteClient,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
) -> None:
    # GIVEN a table and a proto descriptor of its rows
    schema = [bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("quantity", "INT64")]
    table = bq_client.create_table(bigquery.Table(dataset.table("lines"), schema=schema))
    descriptor = _row_descriptor(("id", "TYPE_STRING"), ("quantity", "TYPE_INT64"))
    row = _message_class(descriptor)(id="l-1", quantity=3).SerializeToString()

    # WHEN the row is appended to the table's default stream
    request = types.AppendRowsRequest(
        write_stream=f"{table.path.removeprefix('/')}/streams/_default",
        proto_rows=types.AppendRowsRequest.ProtoData(
            writer_schema=types.ProtoSchema(proto_descriptor=descriptor),
            rows=types.ProtoRows(serialized_rows=[row]),
        ),
    )
    responses = list(bq_write_client.append_rows(iter([request])))

    # THEN the append succeeds without row errors and a query reads the row back
    assert [(r.error.code, list(r.row_errors)) for r in responses] == [(0, [])]
    assert _select_all(bq_client, table, bq_retry) == [{"id": "l-1", "quantity": 3}]


def _select_all(
    client: bigquery.Client, table: bigquery.Table, retry: Retry
) -> list[dict[str, Any]]:
    """Every row of ``table``, as the client's Python values (NUMERIC comes back as Decimal)."""
    sql = f"SELECT * FROM `{table.dataset_id}.{table.table_id}`"
    job = client.query(sql, retry=retry, job_retry=retry)
    return [dict(row) for row in job.result(retry=retry, timeout=30)]


def _row_descriptor(*fields: tuple[str, str]) -> descriptor_pb2.DescriptorProto:
    descriptor = descriptor_pb2.DescriptorProto(name="Row")
    for number, (name, kind) in enumerate(fields, start=1):
        descriptor.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.Type.Value(kind),
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    return descriptor


def _message_class(descriptor: descriptor_pb2.DescriptorProto) -> Any:
    file = descriptor_pb2.FileDescriptorProto(name="row.proto", package="test", syntax="proto2")
    file.message_type.add().CopyFrom(descriptor)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test.Row"))
