"""Dead letters: the lossless JSON form, local files (append, claim, settle), and replay."""

from __future__ import annotations

import argparse
import base64
import copy
import io
import re
import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddb2bq.cli.dead_letters import run_replay
from ddb2bq.config import Config, DeadLettersConfig, SourceConfig
from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters import (
    LocalDeadLetters,
    S3DeadLetters,
    SqsDeadLetters,
    dead_letters_from_config,
    decode_letter,
    encode_letter,
    read_dead_letters,
    to_json,
)
from ddb2bq.dead_letters.replay import (
    DiscardDeadLetters,
    parse_letter,
    replay,
)
from ddb2bq.exceptions import TerminalError
from ddb2bq.pipeline import Pipeline
from ddb2bq.records import (
    from_get_records_record,
    from_lambda_record,
    from_scan_item,
    make_seq,
    snapshot_seq,
)
from tests.doubles import writers as doubles
from tests.sink_data import INGESTED_AT_US, layout, record

FAILED_AT = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z


def letter_of(change_record: dict[str, Any], source: str = "lambda", **fields: Any) -> DeadLetter:
    change = from_lambda_record(copy.deepcopy(change_record))
    values: dict[str, Any] = {
        "table": "orders",
        "error": "BigQuery rejected the row: column 'total': Cannot convert value to numeric",
        "failed_at_us": FAILED_AT,
        "source": source,
        "record": change_record,
        "event_id": change.event_id,
        "keys": change.keys,
    }
    return DeadLetter(**{**values, **fields})


# --- the JSON form -----------------------------------------------------------------------------


def test_to_json_keeps_bytes_times_and_decimals_as_text() -> None:
    value = {
        "B": b"\x00\xff",
        "BS": [b"a", bytearray(b"b")],
        "at": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "n": Decimal("1234567895171680000000000000000000000000"),
        "ss": {"b", "a"},
        "plain": [1, 2.5, True, None, "x"],
    }
    assert to_json(value) == {
        "B": "AP8=",
        "BS": ["YQ==", "Yg=="],
        "at": "2024-05-01T12:00:00.123456+00:00",
        "n": "1234567895171680000000000000000000000000",
        "ss": ["a", "b"],
        "plain": [1, 2.5, True, None, "x"],
    }


@given(st.binary(max_size=64), st.datetimes(timezones=st.just(UTC)), st.decimals(allow_nan=False))
def test_to_json_loses_nothing(blob: bytes, moment: datetime, number: Decimal) -> None:
    encoded = orjson.loads(orjson.dumps(to_json({"b": blob, "t": moment, "n": number})))
    assert base64.b64decode(encoded["b"]) == blob
    assert datetime.fromisoformat(encoded["t"]) == moment
    assert Decimal(encoded["n"]) == number


def test_a_letter_round_trips_through_its_line() -> None:
    letter = letter_of(record(7))
    line = encode_letter(letter)
    assert decode_letter(line) == letter
    assert orjson.loads(line)["failed_at"] == "2024-05-01T12:00:00.000000Z"


def test_a_getrecords_letter_with_bytes_and_datetimes_parses_back_to_the_same_change() -> None:
    # GIVEN a boto3 GetRecords record (datetime, bytes), lettered through to_json
    boto3_record = {
        "eventID": "e-boto3",
        "eventName": "MODIFY",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC),
            "Keys": {"Id": {"B": b"\x01\x02"}},
            "NewImage": {"Id": {"B": b"\x01\x02"}, "blobs": {"BS": [b"\xff"]}},
            "SequenceNumber": "4700000000000000000000001",
        },
    }
    original = from_get_records_record(boto3_record)
    letter = DeadLetter(
        "orders", "err", FAILED_AT, "getrecords", boto3_record, "e-boto3", original.keys
    )
    # WHEN it is written as a line and parsed again
    again = parse_letter(decode_letter(encode_letter(letter)))
    # THEN it is the same change (the record is now its JSON form)
    assert (again.keys, again.new_image, again.seq, again.changed_at_us) == (
        original.keys,
        original.new_image,
        original.seq,
        original.changed_at_us,
    )


def test_snapshot_letters_take_their_keys_from_the_letter() -> None:
    item = {"Id": {"N": "5"}, "Sk": {"S": "a"}, "v": {"S": "x"}}
    change = from_scan_item(item, key_names=["Id", "Sk"], scanned_at_us=1, generation=2)
    letter = DeadLetter("orders", "err", FAILED_AT, "scan", item, change.event_id, change.keys)
    again = parse_letter(decode_letter(encode_letter(letter)), generation=2)
    assert (again.event_id, again.seq, again.keys) == (change.event_id, change.seq, change.keys)
    export = DeadLetter("orders", "err", FAILED_AT, "export", {"Item": item}, "x", change.keys)
    assert parse_letter(export, generation=2).event_id == change.event_id


def test_a_letter_under_an_unknown_source_name_is_parsed_by_its_shape() -> None:
    letter = letter_of(record(3), source="stream")
    assert parse_letter(letter).event_id == "evt-0003-insert"


# --- local files -------------------------------------------------------------------------------


def test_each_send_writes_one_whole_file_per_table_and_day(tmp_path: Path) -> None:
    # GIVEN two sends, the first with letters of two tables
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(1)), letter_of(record(2), table="users"), letter_of(record(3))])
    store.send([letter_of(record(4))])
    # THEN each send wrote one file per table and day, named by day, time and a unique id,
    # each ending with a whole line, and no temporary file is left
    orders = sorted((tmp_path / "orders").iterdir())
    assert all(
        re.fullmatch(r"2024-05-01-1714564800000000-[0-9a-f]{12}\.jsonl", f.name) for f in orders
    )
    assert sorted(len(f.read_bytes().splitlines()) for f in orders) == [1, 2]
    assert all(f.read_bytes().endswith(b"}\n") for f in orders)
    assert len(list((tmp_path / "users").iterdir())) == 1
    assert sorted(x.event_id for x in read_dead_letters(store, "orders")) == [
        "evt-0001-insert",
        "evt-0003-insert",
        "evt-0004-insert",
    ]


def test_a_day_file_of_an_earlier_version_is_read_and_replayed(tmp_path: Path) -> None:
    # GIVEN a day file as earlier versions appended them
    day_file = tmp_path / "orders" / "2024-05-01.jsonl"
    day_file.parent.mkdir()
    day_file.write_bytes(b"".join(encode_letter(letter_of(record(n))) + b"\n" for n in (1, 2)))
    store = LocalDeadLetters(tmp_path)
    # WHEN its letters are replayed, one still refused
    report = replay(store, sink(FakeWriter({"evt-0002-insert"})), "orders")
    # THEN one landed; the other is kept in a new file, the day file is gone
    assert (report.landed, report.kept) == (1, 1)
    assert [x.event_id for x in read_dead_letters(store)] == ["evt-0002-insert"]
    assert not day_file.exists()


def test_a_line_that_is_not_a_letter_is_set_aside_whole_and_the_others_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a file whose second of three lines was cut off (a crash, a full disk)
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(n)) for n in (1, 2, 3)])
    (file,) = (tmp_path / "orders").iterdir()
    lines = file.read_bytes().splitlines()
    cut = lines[1][:100]
    file.write_bytes(lines[0] + b"\n" + cut + b"\n" + lines[2] + b"\n")
    # WHEN the letters are listed
    listed = [x.event_id for x in read_dead_letters(store, "orders")]
    # THEN the two whole ones are, and the cut line is named in a warning
    assert listed == ["evt-0001-insert", "evt-0003-insert"]
    assert f"Line {file}:2 is not a whole dead letter" in caplog.text
    # WHEN they are replayed
    writer = FakeWriter(set())
    report = replay(store, sink(writer), "orders")
    # THEN the whole ones landed, and the cut line is counted, named and moved aside whole
    assert (report.landed, report.kept, report.done) == (2, 0, False)
    (bad,) = report.set_aside
    assert bad.where == f"{file}:2"
    assert "unexpected end of data" in bad.reason
    assert writer.written == ["evt-0001-insert", "evt-0003-insert"]
    assert [p.name for p in (tmp_path / "orders").iterdir()] == [Path(bad.kept_at).name]
    assert Path(bad.kept_at).read_bytes() == cut + b"\n"
    # AND it is not read again: the next replay has nothing to do
    assert replay(store, sink(writer), "orders").done


def test_settling_keeps_the_letters_still_failing_under_a_new_live_name(tmp_path: Path) -> None:
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(1)), letter_of(record(2))])
    (claim,) = store.claim("orders")
    claimed = Path(claim.handle)
    assert claimed.name.split(".jsonl")[1].startswith(".replaying-")
    # WHEN it is settled with letter 2 still failing
    still = replace(claim.letters[1], error="again", failed_at_us=FAILED_AT + 86_400_000_000)
    store.settle(claim, [still])
    # THEN the claimed file is gone and letter 2, with its new error, is in a live file
    (live,) = (tmp_path / "orders").iterdir()
    assert re.fullmatch(r"2024-05-02-1714651200000000-[0-9a-f]{12}\.jsonl", live.name)
    assert read_dead_letters(store) == [still]
    assert not claimed.exists()


def test_a_table_name_cannot_escape_the_folder(tmp_path: Path) -> None:
    LocalDeadLetters(tmp_path / "letters").send([letter_of(record(1), table="../../etc")])
    assert list((tmp_path / "letters").iterdir()) == [tmp_path / "letters" / "_.._.._etc"]


def test_letters_appended_during_a_replay_are_not_lost(tmp_path: Path) -> None:
    # GIVEN a file being claimed while another thread keeps appending
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(0))])
    sent = 200

    def append() -> None:
        for n in range(1, sent + 1):
            store.send([letter_of(record(n))])

    writer = threading.Thread(target=append)
    writer.start()
    claimed = []
    while writer.is_alive():
        claims = store.claim("orders")
        claimed += [x.event_id for c in claims for x in c.letters]
        for claim in claims:
            store.settle(claim, [])
    writer.join()
    claimed += [x.event_id for c in store.claim("orders") for x in c.letters]
    # THEN every letter was claimed exactly once
    assert sorted(claimed) == sorted(f"evt-{n:04d}-insert" for n in range(sent + 1))


def test_an_interrupted_replay_leaves_its_claim_to_be_taken_again(tmp_path: Path) -> None:
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(1))])
    store.claim("orders")  # and then the process died
    store.send([letter_of(record(2))])
    claims = store.claim("orders")
    assert sorted(x.event_id for c in claims for x in c.letters) == [
        "evt-0001-insert",
        "evt-0002-insert",
    ]


# --- the factory -------------------------------------------------------------------------------


def test_the_factory_builds_each_kind() -> None:
    assert isinstance(dead_letters_from_config(DeadLettersConfig(path="x")), LocalDeadLetters)
    s3 = dead_letters_from_config(DeadLettersConfig(kind="s3", s3_bucket="b"), s3_client=object())
    assert isinstance(s3, S3DeadLetters)
    sqs = dead_letters_from_config(
        DeadLettersConfig(kind="sqs", sqs_queue_url="https://q", s3_bucket="b"),
        s3_client=object(),
        sqs_client=object(),
    )
    assert isinstance(sqs, SqsDeadLetters)
    assert isinstance(sqs.overflow, S3DeadLetters)
    with pytest.raises(TerminalError, match="sqs_queue_url"):
        dead_letters_from_config(DeadLettersConfig(kind="sqs"), sqs_client=object())


# --- replay ------------------------------------------------------------------------------------


class FakeWriter(doubles.FakeWriter):
    """Refuses the changes whose event id is in ``refuse``; keeps the ids it wrote."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        super().__init__(
            lambda rows: False if rows.change.event_id in self.refuse else None,
            reason=lambda index, rows: f"still refused: {rows.change.event_id}",
        )


def sink(writer: FakeWriter) -> Pipeline:
    """The pipeline a replay writes through (its own dead letters discarded)."""
    config = Config(source=SourceConfig(table="orders"))
    return Pipeline(
        config,
        layout(),
        lambda layout: writer,
        DiscardDeadLetters(),
        source="replay",
        clock=lambda: INGESTED_AT_US,
    )


def test_replay_removes_the_letters_that_landed_and_keeps_the_rest_with_the_new_error(
    tmp_path: Path,
) -> None:
    # GIVEN three letters, one of which is still refused, and one whose record is broken
    store = LocalDeadLetters(tmp_path)
    broken = record(4)
    del broken["dynamodb"]["Keys"]
    store.send([letter_of(record(n)) for n in (1, 2, 3)])
    store.send([letter_of(record(4), record=broken)])
    writer = FakeWriter(refuse={"evt-0002-insert"})
    # WHEN they are replayed
    report = replay(store, sink(writer), "orders", clock=lambda: FAILED_AT + 86_400_000_000)
    # THEN two landed and were removed; the others stay, with their new error and time
    assert (report.landed, report.kept, report.unreadable) == (2, 2, 1)
    assert writer.written == ["evt-0001-insert", "evt-0003-insert"]
    left = {x.event_id: x for x in read_dead_letters(store, "orders")}
    assert sorted(left) == ["evt-0002-insert", "evt-0004-insert"]
    assert left["evt-0002-insert"].error == "still refused: evt-0002-insert"
    assert left["evt-0002-insert"].failed_at_us == FAILED_AT + 86_400_000_000
    assert "cannot be parsed again" in left["evt-0004-insert"].error
    assert left["evt-0004-insert"].record == broken  # still whole
    # AND a second replay, once the cause is fixed, lands the refused one
    writer.refuse.clear()
    assert replay(store, sink(writer), "orders").landed == 1
    assert [x.event_id for x in read_dead_letters(store, "orders")] == ["evt-0004-insert"]


def test_replay_leaves_other_tables_alone(tmp_path: Path) -> None:
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(1)), letter_of(record(2), table="users")])
    replay(store, sink(FakeWriter(set())), "orders")
    assert [x.table for x in read_dead_letters(store)] == ["users"]


def test_replay_settles_in_batches(tmp_path: Path) -> None:
    store = LocalDeadLetters(tmp_path)
    for n in range(1, 6):
        store.send([letter_of(record(n), failed_at_us=FAILED_AT + n * 86_400_000_000)])
    writer = FakeWriter(set())
    report = replay(store, sink(writer), "orders", batch_size=2)
    calls = [len(batch) for batch in writer.batches]
    assert calls == [2, 2, 1]
    assert report.landed == 5


def test_replay_writes_a_big_file_in_batches_and_settles_it_once(tmp_path: Path) -> None:
    # GIVEN one file of five letters
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(n)) for n in range(1, 6)])
    writer = FakeWriter({"evt-0004-insert"})
    # WHEN replayed two changes per write
    report = replay(store, sink(writer), "orders", batch_size=2)
    # THEN no write is bigger than asked, and only the refused letter is left
    assert [len(batch) for batch in writer.batches] == [2, 2, 1]
    assert (report.landed, report.kept) == (4, 1)
    assert [x.event_id for x in read_dead_letters(store)] == ["evt-0004-insert"]


class Interrupted(FakeWriter):
    """Ctrl-C in the middle of the write."""

    def write(self, batch: Any) -> Any:
        raise KeyboardInterrupt


def test_ctrl_c_in_a_replay_exits_130_and_leaves_every_letter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two letters, and a replay interrupted while it writes them
    store = LocalDeadLetters(tmp_path)
    letters = [letter_of(record(1)), letter_of(record(2))]
    store.send(letters)
    config = Config(source=SourceConfig(table="orders"))
    args = argparse.Namespace(table=None, batch_size=500, list=False)
    # WHEN it is run
    code = run_replay(args, config, store=store, pipeline=sink(Interrupted(set())))
    # THEN it exits 130, saying where the letters are, and every letter is still there
    assert code == 130
    assert f"every letter is still in {tmp_path}" in capsys.readouterr().err
    assert read_dead_letters(store) == letters
    # AND the next replay takes them up
    assert replay(store, sink(FakeWriter(set())), "orders").landed == 2
    assert read_dead_letters(store) == []


# --- the command -------------------------------------------------------------------------------


def test_the_command_lists_then_replays_and_exits_1_while_letters_stay(tmp_path: Path) -> None:
    store = LocalDeadLetters(tmp_path)
    store.send([letter_of(record(1)), letter_of(record(2))])
    config = Config(source=SourceConfig(table="orders"))
    args = argparse.Namespace(table=None, batch_size=500, list=True)
    out = io.StringIO()
    assert run_replay(args, config, store=store, pipeline=sink(FakeWriter(set())), stdout=out) == 0
    assert out.getvalue().splitlines()[0].startswith("orders\tevt-0001-insert\tlambda\tBigQuery")
    args.list = False
    out = io.StringIO()
    refusing = sink(FakeWriter({"evt-0002-insert"}))
    assert run_replay(args, config, store=store, pipeline=refusing, stdout=out) == 1
    assert out.getvalue() == "orders: 1 landed, 1 kept\n"


def test_a_replayed_letter_keeps_the_seq_of_its_generation() -> None:
    # GIVEN a letter of a generation-1 stream change, written with its seq
    record = {
        "eventID": "e1",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1,
            "Keys": {"pk": {"S": "a"}},
            "SequenceNumber": "7",
        },
    }
    letter = DeadLetter(
        table="t", error="x", failed_at_us=0, source="lambda", record=record, seq=make_seq(1, 7)
    )
    # WHEN it is read back and parsed for replay after the generation rose to 2
    change = parse_letter(decode_letter(encode_letter(letter)), generation=2)
    # THEN it keeps its generation-1 seq, older than generation 2's snapshot
    assert change.seq == make_seq(1, 7)
    assert change.seq < snapshot_seq(2)


def test_a_record_nested_past_what_orjson_writes_is_still_kept_whole() -> None:
    # GIVEN a Lambda record nested 990 levels deep (refused by the converter, so it must be kept)
    # and holding an integer past 64 bits
    deep: dict[str, Any] = {"M": {}}
    inner = deep
    for _ in range(990):
        inner["M"]["a"] = {"M": {}}
        inner = inner["M"]["a"]
    record = {"eventID": "e1", "dynamodb": {"NewImage": {"x": deep}}, "big": 2**80}
    letter = DeadLetter("orders", "too deep", 0, "lambda", record, "e1", {}, "")

    # WHEN it is written as a dead letter and read back
    text = encode_letter(letter)
    again = decode_letter(text)

    # THEN the letter is whole: it encodes to the same bytes, and the big integer is exact
    assert encode_letter(again) == text
    assert isinstance(again.record, dict)
    assert again.record["big"] == 2**80
