"""Fuzz: generated malformed records mixed with good ones, through ``ddb2bq convert`` (every
input format) and the Lambda handler.

Whatever the bad records hold (wrong types, missing fields, unknown or several type tags, deep
nesting, bad base64, huge exponents, bad sequence numbers or times), nothing crashes, every bad
record is named by its index (``record N``) and refused by a check (never by the safety net's
``... ddb2bq does not check for``), and every good record is still converted (printed, or written).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb2bq.records import UNCHECKED
from tests.strategies import items, number_text, to_event_json
from tests.unit.test_hostile_records import (
    deep_list,
    deep_map,
    getrecords_record,
    kinesis_record,
    lambda_handler,
    run_convert,
    stdin_text,
    stream_record,
)

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ERROR_LINE = re.compile(r"ddb2bq: error: record (\d+)[ :]")

# --- what a bad record can hold ----------------------------------------------------------------

BAD_VALUES = [
    "text",
    5,
    None,
    {},
    {"X": "1"},
    {"S": "a", "N": "1"},
    {"S": 5},
    {"N": 5},
    {"N": "abc"},
    {"N": ""},
    {"N": "NaN"},
    {"N": "1e400000000"},
    {"N": "1e" + "9" * 5000},
    {"N": "1E126"},
    {"N": "1E-131"},
    {"N": "1" * 39},
    {"N": "1" * 40_000 + "x"},
    {"B": "not base64!"},
    {"B": 5},
    {"BOOL": "yes"},
    {"SS": "a"},
    {"SS": [1]},
    {"NS": "1"},
    {"NS": ["x"]},
    {"NS": ["1", "1e999"]},
    {"BS": ["@@"]},
    {"BS": [5]},
    {"M": []},
    {"L": {}},
    {"M": {"x": {"X": 1}}},
    {"L": [{"N": "NaN"}]},
    {"L": [{"S": "a", "B": "AA=="}]},
]
BAD_KEYS = [{"BOOL": True}, {"S": 5}, {"S": "a", "N": "1"}, {"M": {}}, "k", {}, {"N": "1e999"}]
BAD_NAMES = ["UPSERT", "", None, 5, "insert", ["INSERT"], {"INSERT": 1}]
BAD_SEQUENCES = ["", "abc", "-1", "1.5", " 1", "9" * 80, "7" * 5000, "１２", "²", 12, None]
KINESIS_SEQUENCES = ["", "abc", "-1", "1.5", " 1", "9" * 130, "7" * 5000, "１２", "²", 12, None]
BAD_EPOCH_SECONDS = [-1, -1e10, 1e300, 253402300800, "yesterday", "2026-01-01", True, None, []]
BAD_ISO_TIMES = ["yesterday", "2026-13-01T00:00:00", "9999-12-31T23:59:59-01:00", -1, 1e300, None]
BAD_KINESIS_TIMES = [-5, -1.5, 1e300, 2**70, "1764460800000", True, None]
NOT_FINITE = [float("inf"), float("-inf"), float("nan")]  # Lambda's json parses 1e400 as inf
BAD_DATA = [
    "%%%",
    "",
    5,
    None,
    base64.b64encode(b"not json").decode(),
    "WzFd",
    "eyJkeW5hbW9kYiI6IDV9",
]
NOT_OBJECTS = [5, "record", [], None, [{"eventName": "INSERT"}]]


def _deep(draw: st.DrawFn) -> dict[str, Any]:
    levels = draw(st.integers(33, 200))
    return deep_map(levels) if draw(st.booleans()) else deep_list(levels)


Mutation = Callable[[st.DrawFn, Any], Any]


def _set_value(draw: st.DrawFn, image: dict[str, Any]) -> None:
    name = draw(st.sampled_from(["v", "bad", *image]))
    image[name] = _deep(draw) if draw(st.integers(0, 5)) == 0 else draw(st.sampled_from(BAD_VALUES))


def _bad_image_value(draw: st.DrawFn, record: dict[str, Any]) -> Any:
    _set_value(draw, record["dynamodb"]["NewImage"])
    return record


def _bad_key(draw: st.DrawFn, record: dict[str, Any]) -> Any:
    keys = record["dynamodb"]["Keys"]
    choice = draw(st.integers(0, 2))
    if choice == 0:
        keys[draw(st.sampled_from(["pk", "sk"]))] = draw(st.sampled_from(BAD_KEYS))
    elif choice == 1:
        del keys[draw(st.sampled_from(["pk", "sk"]))]
    else:
        record["dynamodb"]["Keys"] = draw(st.sampled_from([{}, [], "pk", 5]))
    return record


def _missing_field(draw: st.DrawFn, record: dict[str, Any], fields: list[str]) -> Any:
    path = draw(st.sampled_from(fields)).split(".")
    target = record
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return record


def _set_field(draw: st.DrawFn, record: dict[str, Any], path: str, values: list[Any]) -> Any:
    *parents, name = path.split(".")
    target = record
    for part in parents:
        target = target[part]
    target[name] = draw(st.sampled_from(values))
    return record


def stream_mutations(source: str, *, handler: bool) -> list[Mutation]:
    """What can be wrong with a DynamoDB Streams record (Lambda, GetRecords, Kinesis payload)."""
    times = {"lambda": BAD_EPOCH_SECONDS, "getrecords": BAD_ISO_TIMES}.get(source, [])
    times = times + (NOT_FINITE if handler and source == "lambda" else [])
    fields = ["eventName", "dynamodb", "dynamodb.Keys", "dynamodb.ApproximateCreationDateTime"]
    mutations: list[Mutation] = [
        _bad_image_value,
        _bad_key,
        lambda d, r: _set_field(d, r, "eventName", BAD_NAMES),
        lambda d, r: _set_field(d, r, "eventID", [5, [], {"id": 1}, 1.5]),
        lambda d, r: _set_field(d, r, "dynamodb", [5, "x", [], None]),
        lambda d, r: _set_field(d, r, "dynamodb.NewImage", [5, "x", [], False]),
    ]
    if source != "kinesis":  # a Kinesis change is ordered by its time, not SequenceNumber
        fields.append("dynamodb.SequenceNumber")
        mutations.append(lambda d, r: _set_field(d, r, "dynamodb.SequenceNumber", BAD_SEQUENCES))
        mutations.append(
            lambda d, r: _set_field(d, r, "dynamodb.ApproximateCreationDateTime", times)
        )
    mutations.append(lambda d, r: _missing_field(d, r, fields))
    if not handler:
        mutations.append(lambda d, r: d(st.sampled_from(NOT_OBJECTS)))
    return mutations


def kinesis_mutations(*, handler: bool) -> list[Mutation]:
    """What can be wrong with a Kinesis record: its wrapper, or the change inside."""

    def inside(draw: st.DrawFn, record: dict[str, Any]) -> Any:
        payload = json.loads(base64.b64decode(record["kinesis"]["data"]))
        mutation = draw(st.sampled_from(stream_mutations("kinesis", handler=handler)))
        changed = mutation(draw, payload)
        record["kinesis"]["data"] = base64.b64encode(json.dumps(changed).encode()).decode()
        return record

    def time(draw: st.DrawFn, record: dict[str, Any]) -> Any:
        def change(payload: dict[str, Any]) -> dict[str, Any]:
            bad = draw(st.sampled_from(BAD_KINESIS_TIMES))
            payload["dynamodb"]["ApproximateCreationDateTime"] = bad
            return payload

        payload = change(json.loads(base64.b64decode(record["kinesis"]["data"])))
        record["kinesis"]["data"] = base64.b64encode(json.dumps(payload).encode()).decode()
        return record

    return [
        inside,
        time,
        lambda d, r: _set_field(d, r, "kinesis.data", BAD_DATA),
        lambda d, r: _set_field(d, r, "kinesis.sequenceNumber", KINESIS_SEQUENCES),
        lambda d, r: _set_field(d, r, "kinesis", [5, "x", None]),
    ]


def snapshot_mutations(source: str) -> list[Mutation]:
    """What can be wrong with a Scan item or an export line (held as its item until printed)."""

    def bad_value(draw: st.DrawFn, item: dict[str, Any]) -> Any:
        _set_value(draw, item)
        return item

    def bad_key(draw: st.DrawFn, item: dict[str, Any]) -> Any:
        name = draw(st.sampled_from(["pk", "sk"]))
        if draw(st.booleans()):
            item[name] = draw(st.sampled_from(BAD_KEYS))
        else:
            del item[name]
        return item

    mutations: list[Mutation] = [bad_value, bad_key]
    if source == "export":
        lines = ["not json", "{", "[]", '{"Item": 5}', '{"item": {}}', '{"Item": {"pk"']
        mutations.append(lambda d, item: d(st.sampled_from(lines)))
    else:
        mutations.append(lambda d, item: d(st.sampled_from(NOT_OBJECTS)))
    return mutations


# --- batches of good and bad records -----------------------------------------------------------


@st.composite
def good_item(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """A valid item in event JSON, keyed ``pk = k<index>``, sometimes with the promoted ``n``."""
    item = to_event_json(draw(items()))
    item["pk"] = {"S": f"k{index}"}
    if draw(st.booleans()):
        item["n"] = {"N": draw(number_text())}
    return dict(item)


def good_unit(source: str, index: int, item: dict[str, Any]) -> Any:
    keys = {"pk": item["pk"], "sk": item["sk"]}
    if source == "lambda":
        return stream_record(index, new_image=item)
    if source == "getrecords":
        return getrecords_record(index, new_image=item)
    if source == "kinesis":
        return kinesis_record(index, Keys=keys, NewImage=item)
    return item


def mutations_of(source: str, *, handler: bool) -> list[Mutation]:
    if source == "kinesis":
        return kinesis_mutations(handler=handler)
    if source in ("export", "scan"):
        return snapshot_mutations(source)
    return stream_mutations(source, handler=handler)


@st.composite
def batches(draw: st.DrawFn, source: str, handler: bool = False) -> list[tuple[bool, Any]]:
    """``(is_bad, unit)`` for 1 to 6 records of ``source``, each good or broken one way."""
    batch = []
    for index in range(draw(st.integers(1, 6))):
        unit = good_unit(source, index, draw(good_item(index)))
        bad = draw(st.booleans())
        if bad:
            mutation = draw(st.sampled_from(mutations_of(source, handler=handler)))
            unit = mutation(draw, copy.deepcopy(unit))
        batch.append((bad, unit))
    return batch


# --- the properties ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promoting(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A configuration promoting ``n`` and ``v`` (types inferred); module-wide, as hypothesis
    runs many examples per test."""
    path = tmp_path_factory.mktemp("config") / "ddb2bq.toml"
    path.write_text('[columns]\npromote = ["n", "v"]\n')
    return str(path)


SOURCES = st.sampled_from(["lambda", "getrecords", "kinesis", "export", "scan"])


@FUZZ
@given(source_batch=SOURCES.flatmap(lambda s: st.tuples(st.just(s), batches(s))))
def test_convert_names_every_bad_record_and_converts_every_good_one(
    promoting: str, source_batch: tuple[str, list[tuple[bool, Any]]]
) -> None:
    source, batch = source_batch
    # GIVEN good and malformed records of one format on stdin
    text = stdin_text(source, [unit for _, unit in batch])
    # WHEN ddb2bq convert reads them (promoting n and v, types inferred)
    result = run_convert(source, text, "--config", promoting)
    # THEN the exit code says whether any was bad; never a traceback or the safety net
    bad = [i for i, (is_bad, _) in enumerate(batch) if is_bad]
    assert result.code == (2 if bad else 0), result.stderr
    assert "Traceback" not in result.stderr
    assert UNCHECKED not in result.stderr, result.stderr
    # AND each bad record is named once, by its index, in input order
    named = [int(m[1]) for m in map(ERROR_LINE.match, result.stderr.splitlines()) if m]
    assert named == bad, result.stderr
    # AND every good record is printed, in order
    assert result.keys == [f"k{i}" for i, (is_bad, _) in enumerate(batch) if not is_bad]


@FUZZ
@given(st.sampled_from(["lambda", "kinesis"]).flatmap(lambda source: batches(source, handler=True)))
def test_the_handler_dead_letters_every_bad_record_and_writes_every_good_one(
    batch: list[tuple[bool, Any]],
) -> None:
    # GIVEN a Lambda batch of good and malformed records
    setup = lambda_handler()
    records = [unit for _, unit in batch]
    # WHEN the handler runs  THEN it answers (no exception) with nothing to retry
    assert setup(records) == {"batchItemFailures": []}
    # AND the good records are written, in order
    good = [i for i, (is_bad, _) in enumerate(batch) if not is_bad]
    assert setup.writer.written == [f"e{i}" for i in good]
    # AND each bad one is dead-lettered whole, its error naming it
    bad = [i for i, (is_bad, _) in enumerate(batch) if is_bad]
    letters = setup.dead_letters.letters
    assert len(letters) == len(bad)
    for index, letter in zip(bad, letters, strict=True):
        assert all(letter.record[k] is v for k, v in records[index].items())
        assert f"record {index}" in letter.error, letter.error
        assert UNCHECKED not in letter.error, letter.error
