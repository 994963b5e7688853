"""bench/convert.py works, and its pipelines send the same item data; bench/runner.py runs (dry,
no emulator). No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "convert.py"
RUNNER_BENCH = BENCH.with_name("runner.py")
RECORDS = 50


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ddb2bq_bench_convert", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def event(bench: ModuleType) -> dict[str, Any]:
    return bench.make_event(RECORDS)  # type: ignore[no-any-return]


def test_measure_times_every_pipeline_and_reports_ratios(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the benchmark's entry point, run small
    # WHEN it measures 50 records once each
    exit_code = bench.main(["--records", str(RECORDS), "--repeat", "1", "--build", "loaded"])
    # THEN every pipeline has a speed, a body and a peak, and the ratios are printed
    out = capsys.readouterr().out
    assert exit_code == 0
    for name in ("ddb2bq", "baseline", "floor"):
        assert name in out
    assert "ddb2bq / baseline (a) =" in out
    assert "ddb2bq / floor (b) =" in out
    figures = bench.measure(RECORDS, repeat=1)
    for name in ("ddb2bq", "baseline", "floor"):
        assert figures[name]["records_per_s"] > 0
        assert figures[name]["body_bytes"] > 0
        assert figures[name]["peak_bytes"] > 0


def test_the_compiled_build_is_measured_in_a_child_process_that_loads_it(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the checkout's sources (scripts/compiled.py builds them, or reuses its last build)
    # WHEN the benchmark measures the compiled build, small
    exit_code = bench.main(["--records", str(RECORDS), "--repeat", "1", "--build", "compiled"])
    # THEN its table says it measured the compiled modules, with all three pipelines
    out = capsys.readouterr().out
    assert exit_code == 0, out
    assert "ddb2bq build: compiled (mypyc: ddb2bq.convert, ddb2bq.numeric)" in out
    assert "pure Python" not in out
    for name in ("ddb2bq", "baseline", "floor"):
        assert f"\n{name} " in out
    assert "ddb2bq / baseline (a) =" in out


@pytest.mark.skipif(
    sys.version_info[:2] == (3, 12),
    reason="Python 3.12.1's sys.settrace delivers no opcode events in ddb2bq.convert's functions "
    "(0 for lean_item, 228 for json.dumps, seen here): the count is only taken on 3.11 and 3.13",
)
def test_bytecode_counts_are_the_same_in_every_run(bench: ModuleType) -> None:
    # GIVEN the benchmark's bytecode count, run small
    # WHEN it counts twice
    first, second = bench.bytecodes(RECORDS, 7), bench.bytecodes(RECORDS, 7)
    # THEN both pipelines run bytecodes, and the counts do not depend on the machine's moment
    # (but for a few: the clock's second can tick over between two rows' ingestion times)
    assert first["ddb2bq"] > 0
    assert first["baseline"] > 0
    assert first["baseline"] == second["baseline"]
    assert first["ddb2bq"] == pytest.approx(second["ddb2bq"], rel=0.01)


def test_the_event_is_the_mix_the_benchmark_claims(event: dict[str, Any]) -> None:
    # GIVEN the generated event
    records = event["Records"]
    # THEN it has every operation, images of about a kilobyte, binary, sets and nested values
    assert {r["eventName"] for r in records} == {"INSERT", "MODIFY", "REMOVE"}
    images = [r["dynamodb"].get("NewImage") or r["dynamodb"]["OldImage"] for r in records]
    sizes = [len(orjson.dumps(image)) for image in images]
    assert 800 < sum(sizes) / len(sizes) < 2000
    tags = {tag for image in images for value in image.values() for tag in value}
    assert {"S", "N", "B", "BOOL", "NULL", "SS", "NS", "M", "L"} <= tags
    assert all(r["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES" for r in records)


def test_ddb2bq_and_the_baseline_send_the_same_items(
    bench: ModuleType, event: dict[str, Any]
) -> None:
    # GIVEN the same event through ddb2bq and through the hand-written baseline
    ours = orjson.loads(bench.ddb2bq_body(event))["rows"]
    theirs = json.loads(bench.baseline_body(event))["rows"]
    # THEN both send one row per record, in order, under the record's event id
    records = event["Records"]
    assert [r["insertId"] for r in ours] == [r["eventID"] for r in records]
    assert [r["insertId"] for r in theirs] == [r["eventID"] for r in records]
    for record, our_row, their_row in zip(records, ours, theirs, strict=True):
        mine, other = our_row["json"], their_row["json"]
        # AND the same operation, time and keys
        assert mine["op"] == other["op"] == record["eventName"]
        assert _instant(mine["changed_at"]) == _instant(other["changed_at"])
        assert mine["pk"] == other["pk"]
        assert Decimal(mine["sk"]) == other["sk"]
        # AND the same item, attribute by attribute, down to every nested value
        image = record["dynamodb"].get("NewImage")
        if image is None:
            assert "item" not in mine  # NULL columns are left out of an insertAll row
            assert other["item"] is None
        else:
            _assert_same_item(image, json.loads(mine["item"]), json.loads(other["item"]))


def test_the_floor_sends_the_raw_images(bench: ModuleType, event: dict[str, Any]) -> None:
    # GIVEN the no-conversion floor
    rows = orjson.loads(bench.floor_body(event))["rows"]
    # THEN its rows are the records' keys and images as they came
    for row, record in zip(rows, event["Records"], strict=True):
        assert row["json"]["keys"] == record["dynamodb"]["Keys"]
        assert row["json"]["new_image"] == record["dynamodb"].get("NewImage")
        assert row["json"]["old_image"] == record["dynamodb"].get("OldImage")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _assert_same_item(image: dict[str, Any], mine: Any, theirs: Any, path: str = "") -> None:
    assert list(mine) == list(theirs) == list(image), path
    for name, value in image.items():
        _assert_same_value(value, mine[name], theirs[name], f"{path}.{name}")


def _assert_same_value(value: dict[str, Any], mine: Any, theirs: Any, path: str) -> None:
    """One attribute value as ddb2bq and the baseline sent it, the DynamoDB value as a guide:
    numbers compare as numbers (ddb2bq keeps a decimal a float cannot hold as exact text; the
    baseline rounds it to the nearest float), sets as sets (ddb2bq sorts them; the baseline
    sends Python's set order)."""
    ((tag, raw),) = value.items()
    if tag == "M":
        _assert_same_item(raw, mine, theirs, path)
    elif tag == "L":
        assert len(mine) == len(theirs) == len(raw), path
        for index, (member, a, b) in enumerate(zip(raw, mine, theirs, strict=True)):
            _assert_same_value(member, a, b, f"{path}[{index}]")
    elif tag == "N":
        _assert_same_number(raw, mine, theirs, path)
    elif tag == "NS":
        assert [Decimal(_text(n)) for n in mine] == sorted(Decimal(n) for n in raw), path
        for number, a, b in zip(sorted(raw, key=Decimal), mine, sorted(theirs), strict=True):
            _assert_same_number(number, a, b, path)
    elif tag in ("SS", "BS"):
        assert sorted(mine) == sorted(theirs) == sorted(raw), path
    elif tag == "NULL":
        assert mine is None, path
        assert theirs is None, path
    else:  # S, B (base64 text in both), BOOL
        assert mine == theirs == raw, path


def _assert_same_number(text: str, mine: Any, theirs: Any, path: str) -> None:
    exact = Decimal(text)
    assert Decimal(_text(mine)) == exact, path
    if isinstance(theirs, int):
        assert theirs == exact, path
    else:
        assert theirs == float(exact), path


def _text(number: Any) -> str:
    return number if isinstance(number, str) else repr(number)


def test_the_runner_bench_prints_both_phases_the_ratio_and_the_lag() -> None:
    # GIVEN the runner benchmark, tiny, with its in-memory writer (no emulator, no socket)
    command = [sys.executable, str(RUNNER_BENCH), "--dry", "--changes", "200", "--shards", "2"]
    # WHEN it runs as the command line does
    done = subprocess.run(
        [*command, "--rate", "2000"],
        capture_output=True,
        text=True,
        cwd=RUNNER_BENCH.parents[1],
        timeout=120,
        check=False,
    )
    # THEN it prints its table, labelled as not a measurement: both phases, the ratio and the lag
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "NOT a measurement" in lines[0]
    changes = {line[:14].strip(): line[14:].split()[0] for line in lines[2:5]}
    assert changes == {"pipeline alone": "200", "runner": "200", "live": "200"}
    assert any(line.startswith("ratio runner / pipeline (changes/s) = ") for line in lines)
    assert "runner overhead = " in done.stdout
    assert any(line.startswith("lag, live at ") and " p99 " in line for line in lines)


BACKFILL_BENCH = BENCH.with_name("backfill.py")


def test_the_backfill_bench_runs_its_three_phases_and_checks_every_row() -> None:
    # GIVEN the backfill benchmark, tiny, on moto's in-process mock and an in-memory BigQuery
    # that keeps the rows' event ids (--dry: no server, no network)
    command = [sys.executable, str(BACKFILL_BENCH), "--dry", "--items", "120"]
    # WHEN it runs as the command line does, with two Scan segments and one worker
    done = subprocess.run(
        [*command, "--segments", "2", "--workers", "1"],
        capture_output=True,
        text=True,
        cwd=BACKFILL_BENCH.parents[1],
        timeout=300,
        check=False,
    )
    # THEN it prints its table, labelled as not a measurement: the three phases, both ratios,
    # each phase's time split, and every changelog holding each of the 120 items once
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "NOT a measurement" in lines[0]
    assert [line[:40].strip() for line in lines[2:5]] == [
        "obvious: 1 Scan, insert_rows_json x500",
        "ddb2bq backfill (Scan)",
        "ddb2bq backfill --export",
    ]
    assert any(line.startswith("ratio Scan / obvious = ") for line in lines)
    assert "export / obvious = " in done.stdout
    for part in ("Scan calls", "Scan in flight", "load job", "export (moto writes it)"):
        assert part in done.stdout
    checks = "changelog rows, distinct keys: [(120, 120), (120, 120), (120, 120)] -> ok"
    assert checks in lines
