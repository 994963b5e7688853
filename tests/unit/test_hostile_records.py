"""Hostile records (issue 10, classes 5 and 6), where a user meets them: ``ddb2bq convert`` and
the Lambda handler.

Numbers outside DynamoDB's domain (38 significant digits, 1E-130 to 9.99...E+125) are refused
before any expansion; every other record that breaks its format (nesting, sequence numbers,
times, type tags, keys) is refused alone, named ``record N (eventID ..., key ...)``, and the
other records of the input go on: printed by ``convert``, written by the handler, which
dead-letters the bad one whole.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from ddb2bq.aws_lambda import Handler, StreamEvent
from ddb2bq.cli.main import main
from ddb2bq.config import Config, load_config
from ddb2bq.credentials import CredentialsProvider
from ddb2bq.dynamodb.events import lambda_events
from ddb2bq.pipeline import Pipeline
from ddb2bq.records import UNCHECKED
from ddb2bq.schema import build_layout
from tests.doubles.dead_letters import ListDeadLetters
from tests.doubles.writers import FakeWriter

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2025-11-30T00:00:00.000"
CREATED = 1764460800  # 2025-11-30T00:00:00Z, epoch seconds
KINESIS_SEQ = "49590338271490256608559692538361571095921575989136588"

# --- records as each format delivers them ------------------------------------------------------


def image(i: int, **attributes: Any) -> dict[str, Any]:
    """Order ``i`` of table ``orders`` (key ``pk``, ``sk``), in DynamoDB JSON."""
    return {"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}, "total": {"N": "12.50"}, **attributes}


def stream_record(
    i: int,
    *,
    new_image: dict[str, Any] | None = None,
    keys: dict[str, Any] | None = None,
    **dynamodb: Any,
) -> dict[str, Any]:
    """Record ``i`` of a DynamoDB Streams Lambda event: an INSERT of order ``i``."""
    item = image(i) if new_image is None else new_image
    body = {
        "ApproximateCreationDateTime": CREATED + i,
        "Keys": {"pk": item["pk"], "sk": item["sk"]} if keys is None else keys,
        "NewImage": item,
        "SequenceNumber": f"44215845000000000174504390{i:02d}",
        "SizeBytes": 40,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        **dynamodb,
    }
    return {
        "eventID": f"e{i}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": body,
        "eventSourceARN": ARN,
    }


def getrecords_record(i: int, **overrides: Any) -> dict[str, Any]:
    """Record ``i`` as ``aws dynamodbstreams get-records`` prints it (ISO 8601 times)."""
    record = stream_record(i, **overrides)
    del record["eventSourceARN"]
    body = record["dynamodb"]
    if isinstance(body["ApproximateCreationDateTime"], int):
        body["ApproximateCreationDateTime"] = f"2025-11-30T00:00:{i:02d}+00:00"
    return record


def kinesis_record(i: int, **dynamodb: Any) -> dict[str, Any]:
    """Record ``i`` of a Kinesis Data Streams for DynamoDB Lambda event (epoch milliseconds)."""
    item = image(i)
    body = {
        "ApproximateCreationDateTime": (CREATED + i) * 1000,
        "Keys": {"pk": item["pk"], "sk": item["sk"]},
        "NewImage": item,
        "SizeBytes": 40,
        **dynamodb,
    }
    payload = {"eventID": f"e{i}", "eventName": "INSERT", "tableName": "orders", "dynamodb": body}
    sequence = f"{KINESIS_SEQ}{i:03d}"
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "ABCD",
            "sequenceNumber": sequence,
            "data": base64.b64encode(to_json(payload).encode()).decode(),
            "approximateArrivalTimestamp": CREATED + i + 0.5,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000003:{sequence}",
        "eventName": "aws:kinesis:record",
        "awsRegion": "eu-west-1",
        "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/orders-cdc",
    }


def deep_map(levels: int) -> dict[str, Any]:
    """A number inside ``levels`` nested maps (built without recursion)."""
    value: dict[str, Any] = {"N": "1"}
    for _ in range(levels):
        value = {"M": {"x": value}}
    return value


def deep_list(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "bottom"}
    for _ in range(levels):
        value = {"L": [value]}
    return value


def to_json(payload: Any) -> str:
    """JSON text of ``payload``, however deep (json's encoder recurses once per level)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        return json.dumps(payload)
    finally:
        sys.setrecursionlimit(limit)


def stdin_text(source: str, units: list[Any]) -> str:
    """What ``ddb2bq convert --from SOURCE`` reads for ``units`` (records, lines or items)."""
    if source == "export":
        return "".join((u if isinstance(u, str) else to_json({"Item": u})) + "\n" for u in units)
    if source == "scan":
        return to_json({"Items": units, "Count": len(units)})
    return to_json({"Records": units})


# --- ddb2bq convert ----------------------------------------------------------------------------


@dataclass
class Converted:
    code: int
    rows: list[dict[str, Any]]
    stderr: str

    @property
    def keys(self) -> list[str]:
        """The ``pk`` of each changelog row printed, in order."""
        return [row["changelog"]["pk"] for row in self.rows]


def run_convert(source: str, text: str, *args: str) -> Converted:
    """``ddb2bq convert --from SOURCE ARGS`` on ``text`` through the command line's ``main``,
    in this process (no fixtures, so hypothesis can call it too). Output lines end in ``\n``
    (text may hold U+0085 or U+2028, which ``splitlines`` would split on)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(text), out, err
    try:
        code = main(["convert", "--from", source, "--keys", "pk,sk", *args])
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return Converted(
        code, [orjson.loads(line) for line in out.getvalue().split("\n") if line], err.getvalue()
    )


@pytest.fixture
def promoted(tmp_path: Path) -> str:
    """A configuration promoting ``n`` and ``v`` to typed columns (types inferred)."""
    path = tmp_path / "ddb2bq.toml"
    path.write_text('[columns]\npromote = ["n", "v"]\n')
    return str(path)


def assert_refused_alone(result: Converted, good: list[str], *named: str) -> None:
    """Exit 2, no traceback, the good records printed, one error naming ``named``."""
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert UNCHECKED not in result.stderr  # a check refused it, not the safety net
    assert result.keys == good
    [error] = result.stderr.splitlines()
    for text in named:
        assert text in error, error


# --- class 5: numbers outside DynamoDB's domain ------------------------------------------------

REFUSED_NUMBERS = [
    "1e40000000",
    "1e400000000",
    "1e999",
    "1E126",
    "1E-131",
    "-1E+126",
    "123456789012345678901234567890123456789",
    "1.23456789012345678901234567890123456789",
    "0.000000000000000000000000000000000000000123456789012345678901234567890123456789",
]
ACCEPTED_NUMBERS = [
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1E-130",
    "-1E-130",
    "12345678901234567890123456789012345678",
    "-99999999999999999999999999999999999999",
    "1234567895171680000000000000000000000000",
]


def _nested(text: str) -> dict[str, Any]:
    return {"M": {"lines": {"L": [{"M": {"price": {"N": text}}}]}}}


NUMBER_PLACES = {
    # place: (record 1 with the number there, the attribute the error names)
    "item attribute": (lambda t: stream_record(1, new_image=image(1, n={"N": t})), "'n'"),
    "number set": (lambda t: stream_record(1, new_image=image(1, ns={"NS": ["1", t]})), "'ns'"),
    "nested map and list": (
        lambda t: stream_record(1, new_image=image(1, doc=_nested(t))),
        "'doc.lines[0].price'",
    ),
    "range key": (
        lambda t: stream_record(
            1, new_image=image(1, sk={"N": t}), keys={**image(1), "sk": {"N": t}}
        ),
        "'sk'",
    ),
}


@pytest.mark.parametrize("place", list(NUMBER_PLACES))
@pytest.mark.parametrize("text", REFUSED_NUMBERS)
def test_a_number_outside_dynamodbs_domain_is_refused_naming_record_and_attribute(
    place: str, text: str, promoted: str
) -> None:
    # GIVEN a Lambda event whose middle record holds the number (promoted columns configured)
    build, attribute = NUMBER_PLACES[place]
    records = [stream_record(0), build(text), stream_record(2)]
    records[1]["dynamodb"]["Keys"] = {
        k: records[1]["dynamodb"]["NewImage"][k] for k in ("pk", "sk")
    }
    # WHEN converted
    started = time.monotonic()
    result = run_convert("lambda", stdin_text("lambda", records), "--config", promoted)
    # THEN that record alone is refused, fast, by name and attribute; the others are printed
    assert time.monotonic() - started < 5
    assert_refused_alone(
        result, ["k0", "k2"], "record 1 (table 'orders', eventID e1, key pk='k1'", attribute
    )
    assert "DynamoDB numbers have at most 38" in result.stderr or "number range" in result.stderr


def test_a_promoted_huge_exponent_is_refused_not_expanded(promoted: str) -> None:
    # GIVEN a promoted attribute n = 1e40000000 (once an 80 MB output line)
    records = [stream_record(0), stream_record(1, new_image=image(1, n={"N": "1e40000000"}))]
    # WHEN converted  THEN the record is refused and nothing long is printed
    result = run_convert("lambda", stdin_text("lambda", records), "--config", promoted)
    assert_refused_alone(result, ["k0"], "record 1 (", "attribute 'n'", "'1e40000000'")
    assert all(len(orjson.dumps(row)) < 10_000 for row in result.rows)


@pytest.mark.parametrize(
    ("source", "units", "named"),
    [
        (
            "getrecords",
            [getrecords_record(0), getrecords_record(1, new_image=image(1, ns={"NS": ["1e999"]}))],
            ("record 1 (eventID e1, key pk='k1', sk='1')", "attribute 'ns'"),
        ),
        (
            "kinesis",
            [kinesis_record(0), kinesis_record(1, NewImage=image(1, doc=_nested("1E-131")))],
            ("record 1 (table 'orders', eventID e1", "attribute 'doc.lines[0].price'"),
        ),
        (
            "export",
            [image(0), image(1, sk={"N": "1e400000000"})],
            ("record 1 (key pk='k1', sk='1e400000000')", "attribute 'sk'"),
        ),
        (
            "scan",
            [image(0), image(1, v={"N": "1" * 39})],
            ("record 1 (key pk='k1', sk='1')", "attribute 'v'", "39 significant digits"),
        ),
    ],
)
def test_every_input_format_refuses_numbers_outside_the_domain(
    source: str, units: list[Any], named: tuple[str, ...], promoted: str
) -> None:
    # GIVEN a good record, then one with a number DynamoDB could never have stored
    # WHEN converted from that format
    result = run_convert(source, stdin_text(source, units), "--config", promoted)
    # THEN the good one is printed and the other named, with its attribute
    assert_refused_alone(result, ["k0"], *named)


@pytest.mark.parametrize("text", ["1e40000000", "1e400000000"])
def test_huge_exponents_are_refused_in_bounded_memory(text: str, tmp_path: Path) -> None:
    # GIVEN a promoted number with a huge exponent in an item, a set and a key, and a process
    # limited to 500 MB of address space (expanding 1e400000000 would take 400 MB per copy)
    config = tmp_path / "ddb2bq.toml"
    config.write_text('[columns]\npromote = ["n", "ns"]\n')
    records = [
        stream_record(0),
        stream_record(1, new_image=image(1, n={"N": text})),
        stream_record(2, new_image=image(2, ns={"NS": [text]})),
        stream_record(
            3, new_image=image(3, sk={"N": text}), keys={"pk": {"S": "k3"}, "sk": {"N": text}}
        ),
        stream_record(4),
    ]
    limited = (
        "import resource, sys; "
        "resource.setrlimit(resource.RLIMIT_AS, (500 * 2**20, 500 * 2**20)); "
        "from ddb2bq.cli.main import main; sys.exit(main())"
    )
    # WHEN ddb2bq convert runs as a user runs it
    result = subprocess.run(
        [sys.executable, "-c", limited, "convert", "--from", "lambda", "--config", str(config)],
        input=stdin_text("lambda", records),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    # THEN it finishes, refuses the three records by name, and prints the two good ones
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "MemoryError" not in result.stderr
    errors = result.stderr.splitlines()
    assert [e.split(" (")[0] for e in errors] == [f"ddb2bq: error: record {i}" for i in (1, 2, 3)]
    assert "attribute 'n'" in errors[0]
    assert "attribute 'ns'" in errors[1]
    assert "attribute 'sk'" in errors[2]
    assert [orjson.loads(line)["changelog"]["pk"] for line in result.stdout.splitlines()] == [
        "k0",
        "k4",
    ]


def _exact(value: Any) -> Decimal:
    """The exact value of a number in ``item`` JSON: a JSON number or its decimal text."""
    return Decimal(value) if isinstance(value, str) else Decimal(repr(value))


@pytest.mark.parametrize("text", ACCEPTED_NUMBERS)
def test_numbers_at_the_edges_of_the_domain_are_kept_exactly(text: str, promoted: str) -> None:
    # GIVEN numbers at DynamoDB's limits in an attribute (promoted), a set and a nested map
    new = image(0, n={"N": text}, ns={"NS": ["0", text]}, doc=_nested(text))
    # WHEN converted
    result = run_convert(
        "lambda", stdin_text("lambda", [stream_record(0, new_image=new)]), "--config", promoted
    )
    # THEN every copy holds exactly the source value
    assert result.code == 0, result.stderr
    [row] = result.rows
    assert Decimal(row["changelog"]["n"]) == Decimal(text)
    item = json.loads(row["changelog"]["item"], parse_float=str, parse_int=str)
    assert _exact(item["n"]) == Decimal(text)
    assert sorted(_exact(v) for v in item["ns"]) == sorted([Decimal(0), Decimal(text)])
    assert _exact(item["doc"]["lines"][0]["price"]) == Decimal(text)


@pytest.mark.parametrize(
    "text", ["12345678901234567890123456789012345678", "-99999999999999999999999999999999999999"]
)
def test_38_digit_integer_keys_are_kept_exactly(text: str) -> None:
    # GIVEN a range key of 38 digits, the most DynamoDB allows
    new = image(0, sk={"N": text})
    record = stream_record(0, new_image=new)
    # WHEN converted  THEN the BIGNUMERIC key column holds every digit
    result = run_convert("lambda", stdin_text("lambda", [record]))
    assert result.code == 0, result.stderr
    assert result.rows[0]["changelog"]["sk"] == text


# --- class 6: one bad record is that record's error, in every format ---------------------------

_DEEP_TEXT = "nested more than 32 levels deep"


def _lambda(bad: dict[str, Any]) -> list[Any]:
    return [stream_record(0), bad, stream_record(2)]


HOSTILE = {
    # case: (source, the input's records, what the one error names)
    "lambda: maps nested 500 deep": (
        "lambda",
        _lambda(stream_record(1, new_image=image(1, d=deep_map(500)))),
        ("record 1 (table 'orders', eventID e1, key pk='k1'", "attribute 'd.x.x", _DEEP_TEXT),
    ),
    "lambda: lists nested 40 deep": (
        "lambda",
        _lambda(stream_record(1, new_image=image(1, l=deep_list(40)))),
        ("record 1 (table 'orders', eventID e1", "attribute 'l[0][0]", _DEEP_TEXT),
    ),
    "lambda: sequence number too large": (
        "lambda",
        _lambda(stream_record(1, SequenceNumber="9" * 80)),
        ("record 1 (eventID e1, key pk='k1', sk='1')", "'dynamodb.SequenceNumber'"),
    ),
    "lambda: sequence number of 5000 digits": (
        "lambda",
        _lambda(stream_record(1, SequenceNumber="7" * 5000)),
        ("record 1 (eventID e1, key pk='k1', sk='1')", "'dynamodb.SequenceNumber'"),
    ),
    "lambda: time out of range": (
        "lambda",
        _lambda(stream_record(1, ApproximateCreationDateTime=1e300)),
        ("record 1 (eventID e1, key pk='k1', sk='1')", "'ApproximateCreationDateTime'"),
    ),
    "lambda: two type tags": (
        "lambda",
        _lambda(stream_record(1, new_image=image(1, v={"S": "a", "N": "1"}))),
        ("record 1 (table 'orders', eventID e1, key pk='k1'", "attribute 'v'"),
    ),
    "lambda: promoted N 'abc'": (
        "lambda",
        _lambda(stream_record(1, new_image=image(1, n={"N": "abc"}))),
        ("record 1 (table 'orders', eventID e1", "attribute 'n'", "'abc' is not a DynamoDB number"),
    ),
    "lambda: BOOL key": (
        "lambda",
        _lambda(stream_record(1, keys={"pk": {"BOOL": True}, "sk": {"N": "1"}})),
        ("record 1 (eventID e1)", "key attribute 'pk'"),
    ),
    "lambda: eventName a list": (
        "lambda",
        _lambda({**stream_record(1), "eventName": ["INSERT"]}),
        ("record 1 (eventID e1)", "'eventName'"),
    ),
    "getrecords: maps nested 500 deep": (
        "getrecords",
        [getrecords_record(0), getrecords_record(1, new_image=image(1, d=deep_map(500)))],
        ("record 1 (eventID e1)", "attribute 'd' of 'dynamodb.NewImage'"),
    ),
    "getrecords: time after 9999": (
        "getrecords",
        [
            getrecords_record(0),
            getrecords_record(1, ApproximateCreationDateTime="9999-12-31T23:00:00-14:00"),
        ],
        ("record 1 (eventID e1, key pk='k1', sk='1')", "'ApproximateCreationDateTime'"),
    ),
    "getrecords: sequence number not digits": (
        "getrecords",
        [getrecords_record(0), getrecords_record(1, SequenceNumber="１２")],
        ("record 1 (eventID e1, key pk='k1', sk='1')", "'dynamodb.SequenceNumber'"),
    ),
    "kinesis: negative time": (
        "kinesis",
        [kinesis_record(0), kinesis_record(1, ApproximateCreationDateTime=-5)],
        ("record 1 (eventID e1, key pk='k1', sk='1')", "'ApproximateCreationDateTime'"),
    ),
    "kinesis: data not base64": (
        "kinesis",
        [
            kinesis_record(0),
            {**kinesis_record(1), "kinesis": {"data": "%%%", "sequenceNumber": "1"}},
        ],
        ("record 1 (eventID shardId-000000000003:", "'kinesis.data'"),
    ),
    "export: two type tags": (
        "export",
        [image(0), image(1, v={"S": "a", "B": "AAE="})],
        ("record 1 (key pk='k1', sk='1')", "attribute 'v'"),
    ),
    "scan: BOOL key": (
        "scan",
        [image(0), image(1, pk={"BOOL": True})],
        ("record 1", "key attribute 'pk'"),
    ),
    "scan: maps nested 500 deep": (
        "scan",
        [image(0), image(1, d=deep_map(500))],
        ("record 1", "attribute 'd' of the item"),
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_one_hostile_record_is_named_and_the_others_are_converted(case: str, promoted: str) -> None:
    # GIVEN an input whose record 1 breaks its format, between good records
    source, units, named = HOSTILE[case]
    good = [f"k{i}" for i in range(len(units)) if i != 1]
    # WHEN ddb2bq convert reads it
    result = run_convert(source, stdin_text(source, units), "--config", promoted)
    # THEN exit 2, record 1 named with what is wrong, the others printed
    assert_refused_alone(result, good, *named)


def test_an_export_numbers_its_lines_as_records_like_every_format() -> None:
    # GIVEN an export whose second line is not JSON and whose third lacks the key
    text = "\n".join(
        [to_json({"Item": image(0)}), '{"Item": {', to_json({"Item": {"sk": {"N": "2"}}}), ""]
    )
    # WHEN converted
    result = run_convert("export", text)
    # THEN both are "record N", counted from 0 as in every format, in input order
    assert result.code == 2
    first, second = result.stderr.splitlines()
    assert first.startswith("ddb2bq: error: record 1: the line is not JSON")
    assert second.startswith("ddb2bq: error: record 2: the item lacks key attribute 'pk'")
    assert result.keys == ["k0"]


def test_a_first_record_with_a_bool_key_does_not_stop_the_others() -> None:
    # GIVEN a Lambda event whose first record has a BOOL key (once: no output, no record named)
    bad = stream_record(0, keys={"pk": {"BOOL": True}, "sk": {"N": "0"}})
    # WHEN converted
    result = run_convert("lambda", stdin_text("lambda", [bad, stream_record(1), stream_record(2)]))
    # THEN the first is named and the others are printed
    assert_refused_alone(result, ["k1", "k2"], "record 0 (eventID e0)", "key attribute 'pk'")


def test_a_convert_subprocess_names_the_record_without_a_traceback() -> None:
    # GIVEN the example, through the installed command as a user runs it
    records = _lambda(stream_record(1, new_image=image(1, d=deep_map(300))))
    result = subprocess.run(
        [sys.executable, "-m", "ddb2bq.cli", "convert", "--from", "lambda"],
        input=stdin_text("lambda", records),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    # THEN exit 2, the record and attribute named, the two good records printed
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        "record 1 (table 'orders', eventID e1, key pk='k1', sk='1'): attribute 'd.x"
        in result.stderr
    )
    assert len(result.stdout.splitlines()) == 2


# --- the Lambda handler ------------------------------------------------------------------------

ENVIRON = {
    "DDB2BQ_SOURCE_TABLE": "orders",
    "DDB2BQ_TARGET_PROJECT": "analytics-prod",
    "DDB2BQ_TARGET_DATASET": "dynamodb",
    "DDB2BQ_COLUMNS_PROMOTE": "n,v",
}


@dataclass
class Lambda:
    """A handler over the real pipeline, with a fake writer and dead letters."""

    handler: Handler
    writer: FakeWriter = field(default_factory=FakeWriter)
    dead_letters: ListDeadLetters = field(default_factory=ListDeadLetters)

    def __call__(self, records: list[Any]) -> Any:
        return self.handler(cast(StreamEvent, {"Records": records}), None)


def lambda_handler() -> Lambda:
    """The handler of table ``orders`` (key pk S, sk N), promoting ``n`` and ``v`` (inferred)."""
    writer, dead_letters = FakeWriter(), ListDeadLetters()

    def pipeline_factory(config: Config, credentials: CredentialsProvider) -> Pipeline:
        layout = build_layout([("pk", "S"), ("sk", "N")])
        return Pipeline(
            config,
            layout,
            lambda layout: writer,
            dead_letters,
            evolve=lambda layout, new: layout.with_promoted(new),
            source="lambda",
        )

    handler = Handler(
        load_config(environ=ENVIRON),
        pipeline_factory=pipeline_factory,
        clock=lambda: (CREATED + 10) * 1_000_000,
        metrics_stream=io.StringIO(),
    )
    return Lambda(handler, writer, dead_letters)


def _deep_record() -> dict[str, Any]:
    return stream_record(1, new_image=image(1, d=deep_map(2000)))


HANDLER_HOSTILE = {
    "maps nested 2000 deep": _deep_record,
    "sequence number too large": lambda: stream_record(1, SequenceNumber="9" * 80),
    "time out of range": lambda: stream_record(1, ApproximateCreationDateTime=1e300),
    "time infinite": lambda: stream_record(1, ApproximateCreationDateTime=float("inf")),
    "time NaN": lambda: stream_record(1, ApproximateCreationDateTime=float("nan")),
    "two type tags": lambda: stream_record(1, new_image=image(1, v={"S": "a", "N": "1"})),
    "promoted N 'abc'": lambda: stream_record(1, new_image=image(1, n={"N": "abc"})),
    "promoted N 1e400000000": lambda: stream_record(1, new_image=image(1, n={"N": "1e400000000"})),
    "39 digits in a set": lambda: stream_record(1, new_image=image(1, ns={"NS": ["1" * 39]})),
    "BOOL key": lambda: stream_record(1, keys={"pk": {"BOOL": True}, "sk": {"N": "1"}}),
    "eventName a dict": lambda: {**stream_record(1), "eventName": {"INSERT": 1}},
    "bad base64": lambda: stream_record(1, new_image=image(1, b={"B": "not base64!"})),
    "Kinesis negative time": lambda: kinesis_record(1, ApproximateCreationDateTime=-5),
    "eventID nested 2000 deep": lambda: {**stream_record(1), "eventID": deep_map(2000)},
}


@pytest.mark.parametrize("case", list(HANDLER_HOSTILE))
def test_the_handler_dead_letters_one_hostile_record_and_writes_the_others(case: str) -> None:
    # GIVEN a batch with one hostile record among good ones
    hostile = HANDLER_HOSTILE[case]()
    kinesis = "kinesis" in hostile
    good = kinesis_record if kinesis else stream_record
    records = [good(0), hostile, good(2)]
    setup = lambda_handler()
    # WHEN the handler runs
    response = setup(records)
    # THEN no exception, nothing to retry, the good ones written, the hostile one dead-lettered
    # whole with an error naming it
    assert response == {"batchItemFailures": []}
    assert setup.writer.written == ["e0", "e2"]
    [letter] = setup.dead_letters.letters
    assert all(letter.record[k] is v for k, v in hostile.items())
    assert "record 1" in letter.error
    assert UNCHECKED not in letter.error


@pytest.mark.parametrize("junk", ["junk", 7, None, ["a list"]])
def test_a_batch_entry_that_is_not_a_record_is_dead_lettered_and_the_others_written(
    junk: Any,
) -> None:
    # GIVEN a batch whose middle entry is not a JSON object at all
    setup = lambda_handler()
    # WHEN the handler runs
    response = setup([stream_record(0), junk, stream_record(2)])
    # THEN no exception, the good ones written, the entry dead-lettered as it came, named
    assert response == {"batchItemFailures": []}
    assert setup.writer.written == ["e0", "e2"]
    [letter] = setup.dead_letters.letters
    assert letter.record == junk
    assert "record 1" in letter.error


def test_the_demos_getrecords_to_lambda_conversion_passes_hostile_records_on() -> None:
    # GIVEN boto3 GetRecords records (datetime, bytes): good, one without eventName and one
    # nested 1000 levels deep, turned into a Lambda event as the demo and end-to-end tests do
    def boto3_record(i: int, **changes: Any) -> dict[str, Any]:
        record = stream_record(i, **changes)
        record["dynamodb"]["ApproximateCreationDateTime"] = datetime.fromtimestamp(CREATED, UTC)
        record["dynamodb"]["NewImage"]["b"] = {"B": b"\x00\x01"}
        return record

    nameless = boto3_record(1)
    del nameless["eventName"]
    deep = boto3_record(2, new_image=image(2, d=deep_map(1000)))
    [event] = lambda_events([boto3_record(0), nameless, deep, boto3_record(3)], ARN, "eu-west-1")
    # WHEN the handler runs on it
    setup = lambda_handler()
    # THEN the good two are written and the other two dead-lettered by name
    assert setup(event["Records"]) == {"batchItemFailures": []}
    assert setup.writer.written == ["e0", "e3"]
    errors = [letter.error for letter in setup.dead_letters.letters]
    assert "record 1 (eventID e1): 'eventName' is None" in errors[0]
    assert "record 2 (table 'orders', eventID e2, key pk='k2', sk='2'): attribute 'd.x" in errors[1]
