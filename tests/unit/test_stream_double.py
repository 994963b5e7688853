"""The stream double behaves as DynamoDB Streams does (research file, section A), and the lineage
helpers of ddb2bq.dynamodb.shards work against it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from ddb2bq.dynamodb.shards import ShardInfo, child_shards, list_shards, shard_info
from ddb2bq.records import from_get_records
from tests.doubles.streams import ITERATOR_LIFETIME, StreamDouble

KEY = {"pk": {"S": "order#1"}}
OLD = {**KEY, "total": {"N": "1"}}
NEW = {**KEY, "total": {"N": "2"}, "blob": {"B": b"\x00"}}


def raised(call: Callable[[], Any]) -> tuple[str, str]:
    """The error code and operation name of the ClientError that ``call`` raises."""
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.operation_name


def iterator(stream: StreamDouble, shard_id: str, kind: str = "TRIM_HORIZON", **more: str) -> str:
    answer = stream.get_shard_iterator(
        StreamArn=stream.stream_arn, ShardId=shard_id, ShardIteratorType=kind, **more
    )
    token: str = answer["ShardIterator"]
    return token


def sequence_numbers(answer: dict[str, Any]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in answer["Records"]]


def describe(stream: StreamDouble, **more: Any) -> dict[str, Any]:
    description: dict[str, Any] = stream.describe_stream(StreamArn=stream.stream_arn, **more)[
        "StreamDescription"
    ]
    return description


def shard_ids(stream: StreamDouble, **more: Any) -> list[str]:
    return [s["ShardId"] for s in describe(stream, **more)["Shards"]]


# -- records and the description ---------------------------------------------------------------


def test_records_have_the_shapes_boto3_returns() -> None:
    # GIVEN an insert, an update and a delete of one item, the clock between two seconds
    stream = StreamDouble(clock=1_800_000_000.75)
    (shard,) = stream.open_shards()
    numbers = [stream.put(KEY, OLD), stream.put(KEY, NEW, OLD), stream.put(KEY, None, NEW)]
    # WHEN they are read
    answer = stream.get_records(ShardIterator=iterator(stream, shard))
    records = answer["Records"]
    # THEN they are in boto3's form: names, a local-time datetime rounded down, decimal numbers
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    assert sequence_numbers(answer) == numbers
    assert all(len(n) >= 21 and n.isdecimal() for n in numbers)
    assert [int(n) for n in numbers] == sorted(int(n) for n in numbers)
    body = records[1]["dynamodb"]
    assert body["ApproximateCreationDateTime"].timestamp() == 1_800_000_000
    assert body["ApproximateCreationDateTime"].utcoffset() is not None
    assert (body["Keys"], body["NewImage"], body["OldImage"]) == (KEY, NEW, OLD)
    assert body["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert body["SizeBytes"] > 0
    assert "NewImage" not in records[2]["dynamodb"]
    assert len({r["eventID"] for r in records}) == 3
    assert {(r["eventSource"], r["awsRegion"], r["eventVersion"]) for r in records} == {
        ("aws:dynamodb", "eu-west-1", "1.1")
    }
    # AND ddb2bq's parser reads them
    changes = from_get_records(answer, shard_id=shard)
    assert [c.sequence_number for c in changes] == numbers


@pytest.mark.parametrize(
    ("view", "images"),
    [
        ("KEYS_ONLY", set()),
        ("NEW_IMAGE", {"NewImage"}),
        ("OLD_IMAGE", {"OldImage"}),
        ("NEW_AND_OLD_IMAGES", {"NewImage", "OldImage"}),
    ],
)
def test_the_stream_view_type_decides_which_images_records_carry(
    view: str, images: set[str]
) -> None:
    stream = StreamDouble(view_type=view)
    stream.put(KEY, NEW, OLD)
    (record,) = stream.get_records(ShardIterator=iterator(stream, stream.open_shards()[0]))[
        "Records"
    ]
    assert set(record["dynamodb"]) & {"NewImage", "OldImage"} == images
    assert record["dynamodb"]["StreamViewType"] == view


def test_a_ttl_delete_carries_the_service_identity_in_boto3_s_spelling() -> None:
    stream = StreamDouble()
    stream.put(KEY, None, OLD, ttl=True)
    (record,) = stream.get_records(ShardIterator=iterator(stream, stream.open_shards()[0]))[
        "Records"
    ]
    assert record["userIdentity"] == {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}


def test_ddb2bq_sees_a_ttl_delete_read_with_get_records() -> None:
    stream = StreamDouble()
    stream.put(KEY, None, OLD, ttl=True)
    answer = stream.get_records(ShardIterator=iterator(stream, stream.open_shards()[0]))
    (change,) = from_get_records(answer)
    assert change.is_ttl_delete


def test_the_description_names_the_stream_its_table_and_its_shards() -> None:
    stream = StreamDouble(table="orders", key_schema=[("pk", "HASH"), ("sk", "RANGE")])
    description = describe(stream)
    assert description["StreamArn"] == stream.stream_arn
    assert stream.stream_arn.startswith("arn:aws:dynamodb:eu-west-1:123456789012:table/orders/")
    assert (description["StreamStatus"], description["StreamViewType"]) == (
        "ENABLED",
        "NEW_AND_OLD_IMAGES",
    )
    assert description["TableName"] == "orders"
    assert [k["KeyType"] for k in description["KeySchema"]] == ["HASH", "RANGE"]
    (shard,) = description["Shards"]
    assert set(shard["SequenceNumberRange"]) == {"StartingSequenceNumber"}
    assert "LastEvaluatedShardId" not in description


def test_an_unknown_stream_is_not_found() -> None:
    stream = StreamDouble()
    assert raised(lambda: stream.describe_stream(StreamArn=stream.stream_arn + "x")) == (
        "ResourceNotFoundException",
        "DescribeStream",
    )


# -- paging --------------------------------------------------------------------------------------


def test_describe_stream_pages_in_shard_id_order_and_a_full_page_may_end_the_listing() -> None:
    # GIVEN four shards, pages of two
    stream = StreamDouble(shards=4, describe_page_size=2)
    # WHEN the pages are followed by hand
    first = describe(stream)
    second = describe(stream, ExclusiveStartShardId=first["LastEvaluatedShardId"])
    third = describe(stream, ExclusiveStartShardId=second["LastEvaluatedShardId"])
    # THEN each page is full and names its last shard, and the listing ends with an empty page
    listed = [s["ShardId"] for page in (first, second) for s in page["Shards"]]
    assert listed == sorted(listed) == stream.open_shards()
    assert second["LastEvaluatedShardId"] == listed[-1]
    assert (third["Shards"], "LastEvaluatedShardId" in third) == ([], False)
    # AND list_shards follows them to the end
    assert [s["ShardId"] for s in list_shards(stream, stream.stream_arn)] == listed
    assert stream.calls["DescribeStream"] == 6


def test_describe_stream_limit_is_respected_and_at_most_one_hundred() -> None:
    stream = StreamDouble(shards=3)
    assert len(shard_ids(stream, Limit=1)) == 1
    assert raised(lambda: describe(stream, Limit=101)) == ("ValidationException", "DescribeStream")


# -- splits, closed shards, lineage ----------------------------------------------------------


def test_a_split_closes_the_shard_at_its_end_and_opens_later_numbered_children() -> None:
    # GIVEN a shard with two changes, then split
    stream = StreamDouble()
    (parent,) = stream.open_shards()
    before = [stream.put(KEY, OLD), stream.put(KEY, NEW, OLD)]
    children = stream.split(parent)
    after = stream.put(KEY, None, NEW)
    # THEN the parent has an ending number, the children name it and start after it
    ending = stream.shard(parent)["SequenceNumberRange"]["EndingSequenceNumber"]
    assert int(before[-1]) < int(ending)
    for child in children:
        assert stream.shard(child)["ParentShardId"] == parent
        assert int(stream.shard(child)["SequenceNumberRange"]["StartingSequenceNumber"]) > int(
            ending
        )
    assert stream.open_shards() == sorted(children)
    # AND the item's next change went to a child, numbered after the parent's
    child_records = {
        child: sequence_numbers(stream.get_records(ShardIterator=iterator(stream, child)))
        for child in children
    }
    assert sorted(child_records.values()) == [[], [after]]
    # AND reading the parent gives its records and then no next iterator: it has ended
    answer = stream.get_records(ShardIterator=iterator(stream, parent))
    assert sequence_numbers(answer) == before
    assert "NextShardIterator" not in answer


def test_a_closed_shard_may_end_with_an_empty_page_instead() -> None:
    stream = StreamDouble(end_on_last_records=False)
    (parent,) = stream.open_shards()
    stream.put(KEY, OLD)
    stream.close(parent)
    last = stream.get_records(ShardIterator=iterator(stream, parent))
    assert len(last["Records"]) == 1
    end = stream.get_records(ShardIterator=last["NextShardIterator"])
    assert (end["Records"], "NextShardIterator" in end) == ([], False)


def test_an_open_shard_never_ends_it_answers_empty_pages_until_a_change_comes() -> None:
    stream = StreamDouble()
    (shard,) = stream.open_shards()
    empty = stream.get_records(ShardIterator=iterator(stream, shard, "LATEST"))
    assert empty["Records"] == []
    number = stream.put(KEY, OLD)
    assert sequence_numbers(stream.get_records(ShardIterator=empty["NextShardIterator"])) == [
        number
    ]


def test_get_records_may_answer_empty_pages_before_reaching_the_records() -> None:
    stream = StreamDouble(empty_pages=2)
    number = stream.put(KEY, OLD)
    token = iterator(stream, stream.open_shards()[0])
    pages = []
    for _ in range(3):
        answer = stream.get_records(ShardIterator=token)
        pages.append(sequence_numbers(answer))
        token = answer["NextShardIterator"]
    assert pages == [[], [], [number]]


def test_an_item_stays_in_its_lineage_several_generations_deep() -> None:
    # GIVEN two shards, one of which splits twice, and changes of many items throughout
    stream = StreamDouble(shards=2)
    items = [{"pk": {"S": f"item#{n}"}} for n in range(20)]
    first_numbers = {item["pk"]["S"]: stream.put(item, item) for item in items}
    first = stream.open_shards()[0]
    for child in stream.split(first):
        stream.split(child)
    for item in items:
        stream.put(item, item, item)
    # THEN each item's changes are in one lineage, and its numbers rise
    lineage: dict[str, list[tuple[str, str]]] = {}
    for shard in list_shards(stream, stream.stream_arn):
        answer = stream.get_records(ShardIterator=iterator(stream, shard["ShardId"]))
        for record in answer["Records"]:
            key = record["dynamodb"]["Keys"]["pk"]["S"]
            lineage.setdefault(key, []).append(
                (shard["ShardId"], record["dynamodb"]["SequenceNumber"])
            )
    for key, changes in lineage.items():
        (root, _), (leaf, second) = sorted(changes, key=lambda c: int(c[1]))
        assert first_numbers[key] < second
        ancestry = [leaf]
        while "ParentShardId" in stream.shard(ancestry[-1]):
            ancestry.append(stream.shard(ancestry[-1])["ParentShardId"])
        assert root in ancestry, key
    assert len(stream.open_shards()) == 5


def test_scripting_mistakes_are_refused() -> None:
    stream = StreamDouble()
    (shard,) = stream.open_shards()
    stream.close(shard)
    with pytest.raises(ValueError, match="already closed"):
        stream.split(shard)
    with pytest.raises(ValueError, match="closed"):
        stream.put(KEY, OLD, shard_id=shard)
    with pytest.raises(ValueError, match="no shard is open"):
        stream.put(KEY, OLD)


def test_disabling_the_stream_ends_every_shard_and_keeps_the_records() -> None:
    stream = StreamDouble(shards=2)
    number = stream.put(KEY, OLD)
    stream.disable()
    description = describe(stream)
    assert description["StreamStatus"] == "DISABLED"
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in description["Shards"])
    numbers = [
        n
        for s in description["Shards"]
        for n in sequence_numbers(stream.get_records(ShardIterator=iterator(stream, s["ShardId"])))
    ]
    assert numbers == [number]


# -- children: ShardFilter ----------------------------------------------------------------------


def test_child_shards_come_from_the_filter_and_may_appear_late() -> None:
    # GIVEN a shard split into children that are listed only after two more DescribeStream calls
    stream = StreamDouble(shards=2)
    parent = stream.open_shards()[0]
    children = stream.split(parent, visible_after=2)
    # WHEN the children are asked for three times
    answers = [child_shards(stream, stream.stream_arn, parent) for _ in range(3)]
    # THEN they are not visible at first (an empty list, not None), then they are
    assert answers[:2] == [[], []]
    assert answers[2] is not None
    assert [c.shard_id for c in answers[2]] == children
    assert all(c.parent_shard_id == parent and c.is_open for c in answers[2])
    # AND the filter was sent: one call each, no full listing
    assert stream.calls["DescribeStream"] == 3


def test_the_filter_lists_only_the_children() -> None:
    stream = StreamDouble(shards=2)
    parent = stream.open_shards()[0]
    children = stream.split(parent)
    listed = shard_ids(stream, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": parent})
    assert listed == children
    assert len(shard_ids(stream)) == 4


@pytest.mark.parametrize("mode", ["ignore", "refuse", "unsupported"])
def test_child_shards_is_none_when_the_filter_is_not_honoured(mode: Any) -> None:
    # GIVEN an endpoint that ignores the filter (moto), refuses it, or an old botocore
    stream = StreamDouble(shard_filter=mode)
    (parent,) = stream.open_shards()
    stream.split(parent)
    # THEN child_shards says so: the caller lists every shard instead
    assert child_shards(stream, stream.stream_arn, parent) is None


def test_each_way_of_not_honouring_the_filter_is_the_real_one() -> None:
    child_filter = {"Type": "CHILD_SHARDS", "ShardId": "x"}
    ignoring = StreamDouble(shards=2, shard_filter="ignore")
    assert len(shard_ids(ignoring, ShardFilter=child_filter)) == 2
    refusing = StreamDouble(shard_filter="refuse")
    assert raised(lambda: describe(refusing, ShardFilter=child_filter)) == (
        "ValidationException",
        "DescribeStream",
    )
    old_botocore = StreamDouble(shard_filter="unsupported")
    with pytest.raises(ParamValidationError):
        describe(old_botocore, ShardFilter=child_filter)
    assert old_botocore.calls["DescribeStream"] == 0


def test_child_shards_lets_throttling_through() -> None:
    stream = StreamDouble()
    stream.throttle(operation="DescribeStream")
    with pytest.raises(stream.exceptions.LimitExceededException):
        child_shards(stream, stream.stream_arn, stream.open_shards()[0])


def test_shard_info_reads_a_description() -> None:
    stream = StreamDouble()
    (parent,) = stream.open_shards()
    assert shard_info(stream.shard(parent)).is_open
    (child,) = stream.split(parent, children=1)
    closed, opened = shard_info(stream.shard(parent)), shard_info(stream.shard(child))
    assert not closed.is_open
    assert closed.ending_sequence_number is not None
    assert opened == ShardInfo(
        shard_id=child,
        parent_shard_id=parent,
        starting_sequence_number=stream.shard(child)["SequenceNumberRange"][
            "StartingSequenceNumber"
        ],
    )


# -- trimming ------------------------------------------------------------------------------------


def test_trimmed_positions_raise_trimmed_data_access() -> None:
    # GIVEN three records, an iterator at the oldest, then the two oldest trimmed
    stream = StreamDouble()
    (shard,) = stream.open_shards()
    numbers = [stream.put(KEY, OLD) for _ in range(3)]
    held = iterator(stream, shard)
    stream.trim_before(numbers[2])
    # THEN an iterator at or after a number older than the trim point, or reading with an
    # iterator whose records were trimmed since, is refused: data may be lost
    for kind, number in [("AT_SEQUENCE_NUMBER", numbers[0]), ("AFTER_SEQUENCE_NUMBER", numbers[1])]:
        assert raised(lambda: iterator(stream, shard, kind, SequenceNumber=number)) == (  # noqa: B023
            "TrimmedDataAccessException",
            "GetShardIterator",
        )
    assert raised(lambda: stream.get_records(ShardIterator=held)) == (
        "TrimmedDataAccessException",
        "GetRecords",
    )
    # AND TRIM_HORIZON, or at the oldest record kept, starts at the oldest record kept
    horizon = iterator(stream, shard)
    assert sequence_numbers(stream.get_records(ShardIterator=horizon)) == numbers[2:]
    at_kept = iterator(stream, shard, "AT_SEQUENCE_NUMBER", SequenceNumber=numbers[2])
    assert sequence_numbers(stream.get_records(ShardIterator=at_kept)) == numbers[2:]


def test_a_closed_shard_trimmed_away_leaves_the_stream() -> None:
    # GIVEN a parent whose records are all older than a day, and its child
    stream = StreamDouble()
    (parent,) = stream.open_shards()
    stream.put(KEY, OLD)
    (child,) = stream.split(parent, children=1)
    stream.advance(3600)
    kept = stream.put(KEY, NEW, OLD)
    stream.advance(23.5 * 3600)
    # WHEN records older than 24 hours are trimmed
    stream.trim_older_than()
    # THEN the parent is no longer listed nor readable, and its child still names it
    assert shard_ids(stream) == [child]
    assert stream.shard(child)["ParentShardId"] == parent
    assert raised(lambda: iterator(stream, parent)) == (
        "ResourceNotFoundException",
        "GetShardIterator",
    )
    assert sequence_numbers(stream.get_records(ShardIterator=iterator(stream, child))) == [kept]


# -- iterators, throttling, limits --------------------------------------------------------------


def test_iterators_expire_after_fifteen_minutes_or_on_demand() -> None:
    stream = StreamDouble()
    (shard,) = stream.open_shards()
    number = stream.put(KEY, OLD)
    token = iterator(stream, shard)
    stream.advance(ITERATOR_LIFETIME)
    assert sequence_numbers(stream.get_records(ShardIterator=token)) == [number]
    stream.advance(1)
    assert raised(lambda: stream.get_records(ShardIterator=token)) == (
        "ExpiredIteratorException",
        "GetRecords",
    )
    fresh = iterator(stream, shard, "AT_SEQUENCE_NUMBER", SequenceNumber=number)
    stream.expire_iterators()
    with pytest.raises(stream.exceptions.ExpiredIteratorException):
        stream.get_records(ShardIterator=fresh)


def test_throttling_and_failures_hit_the_next_calls_with_the_real_codes() -> None:
    # GIVEN two throttled GetRecords calls and one internal error on any call
    stream = StreamDouble()
    (shard,) = stream.open_shards()
    token = iterator(stream, shard)
    stream.throttle(2, operation="GetRecords")
    # THEN the next two reads are refused, other operations are not, and then reads work
    for _ in range(2):
        assert raised(lambda: stream.get_records(ShardIterator=token)) == (
            "LimitExceededException",
            "GetRecords",
        )
    assert describe(stream)["Shards"]
    assert stream.get_records(ShardIterator=token)["Records"] == []
    stream.fail("InternalServerError")
    with pytest.raises(stream.exceptions.InternalServerError) as caught:
        describe(stream)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert isinstance(caught.value, ClientError)
    # AND every call was counted, the refused ones too
    assert stream.calls == {"GetShardIterator": 1, "GetRecords": 3, "DescribeStream": 2}


def test_get_records_limit_is_respected_and_at_most_one_thousand() -> None:
    stream = StreamDouble()
    (shard,) = stream.open_shards()
    numbers = [stream.put(KEY, OLD) for _ in range(3)]
    assert (
        sequence_numbers(stream.get_records(ShardIterator=iterator(stream, shard), Limit=2))
        == (numbers[:2])
    )
    token = iterator(stream, shard)
    assert raised(lambda: stream.get_records(ShardIterator=token, Limit=1001)) == (
        "LimitExceededException",
        "GetRecords",
    )
    with pytest.raises(ParamValidationError):
        stream.get_records(ShardIterator=token, Limit=0)


def test_bad_requests_are_validation_errors() -> None:
    stream = StreamDouble()
    (shard,) = stream.open_shards()
    number = stream.put(KEY, OLD)
    for call in [
        lambda: stream.get_records(ShardIterator="not an iterator"),
        lambda: iterator(stream, shard, "AT_SEQUENCE_NUMBER"),
        lambda: iterator(stream, shard, "LATEST", SequenceNumber=number),
        lambda: iterator(stream, shard, "AT_TIMESTAMP"),
        lambda: iterator(stream, shard, "AT_SEQUENCE_NUMBER", SequenceNumber="1" * 40),
    ]:
        assert raised(call)[0] == "ValidationException"
    assert raised(lambda: iterator(stream, "shardId-nope")) == (
        "ResourceNotFoundException",
        "GetShardIterator",
    )


def test_counters_count_calls_and_records_per_shard() -> None:
    stream = StreamDouble(shards=2)
    first, second = stream.open_shards()
    stream.put(KEY, OLD, shard_id=first)
    for _ in range(3):
        stream.get_records(ShardIterator=iterator(stream, first))
    stream.get_records(ShardIterator=iterator(stream, second))
    assert stream.shard_calls[("GetRecords", first)] == 3
    assert stream.shard_calls[("GetShardIterator", second)] == 1
    assert stream.records_served == {first: 3}


def test_the_clock_is_the_double_s_own() -> None:
    stream = StreamDouble(clock=0)
    stream.advance(timedelta(days=1).total_seconds())
    stream.put(KEY, OLD)
    (record,) = stream.get_records(ShardIterator=iterator(stream, stream.open_shards()[0]))[
        "Records"
    ]
    created = record["dynamodb"]["ApproximateCreationDateTime"]
    assert isinstance(created, datetime)
    assert created.timestamp() == 86400
