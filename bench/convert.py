"""Conversion benchmark: a Lambda stream event (a dict) -> the insertAll body bytes for BigQuery.

The event: ``--records`` (default 10,000) DynamoDB Streams records, NEW_AND_OLD_IMAGES, about 40%
INSERT, 45% MODIFY and 15% REMOVE (a fifth of them TTL deletes), made with a fixed seed; items are
orders of about 1.2 KB as DynamoDB JSON with strings, small integers, prices, Python floats,
37-digit integers, 30-digit decimals, large and tiny numbers (positional, as DynamoDB returns
them), binary, string/number/binary sets, nested maps and lists. It is already parsed, as the
Lambda runtime hands it to a handler. Three pipelines run over it, in the same process:

- ``ddb2bq``: ``from_lambda_event`` -> ``RowBuilder.build`` -> the changelog writer's insertAll
  body ``{"rows": [{"insertId": event_id, "json": changelog_row}, ...]}`` encoded with orjson.
  The changelog row carries each image as its plain ``item`` and type sidecar (lossless
  together), the keys and the promoted columns, so this is the whole conversion the Lambda
  handler does before it sends.
- ``baseline`` (a): the obvious hand-written Lambda. boto3's ``TypeDeserializer`` per attribute
  (its ``_deserialize_b`` overridden to keep the event's base64 text, the usual fix for its
  ``TypeError`` on Lambda events), then ``json.dumps`` with a default for Decimal (int when
  integral, else float: lossy for long decimals, the bug ddb2bq avoids), sets (a list) and
  bytes (base64); a row holds the event id, op, time, keys and the item as JSON text.
  ``TypeDeserializer`` raises on some valid numbers (its Decimal context traps Inexact and
  Rounded, e.g. the 40-digit ``1234567895171680000000000000000000000000``): the generator only
  makes numbers it accepts (at most 38 digits as written), so the baseline never needs a fallback.
- ``floor`` (b): ``orjson.dumps`` of the raw keys and images, with no conversion at all.

Records/s is the best of ``--repeat`` runs (default 5, the three pipelines taking turns, so that
a slow stretch of a shared machine slows all three) with the garbage collector on, as in Lambda,
in CPU time of this process (``time.process_time``) so that other processes on a shared machine
do not count (``--clock wall`` for wall time). The ratios are printed twice: of the best runs,
and as the median of each round's own ratio (the three runs of a round are side by side, so
they share the machine's speed of the moment, which on a shared VM moves by tens of percent). Peak memory is measured in a separate pass
under ``tracemalloc``, which slows the code down and so never overlaps the timing. ``--profile N``
prints cProfile's top N entries of ddb2bq's pipeline.

Each table names the build of ddb2bq it measured: by default two tables, first the build this
interpreter imports (pure Python in ``.venv``, an editable install), then the compiled build
(``setup.py``: what ``pip install .`` installs), in a child process that puts
``scripts/compiled.py``'s build first on the path and measures all three pipelines again, its own
baseline and floor included (``--build loaded`` or ``--build compiled`` for one table). The Lambda
package carries the compiled converter only when it is built from a compiled install for the
function's machine and Python (``ddb2bq package --converter``, docs/lambda.md); the default arm64
package built elsewhere is pure Python, so the first table is the default Lambda's.

Run from the repository root::

    .venv/bin/python bench/convert.py
    .venv/bin/python bench/convert.py --build loaded    # this interpreter's build only
    .venv/bin/python bench/convert.py --records 2000 --profile 25
    .venv/bin/python bench/convert.py --bytecodes     # per record, deterministic
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import io
import json
import os
import pstats
import random
import statistics
import string
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from boto3.dynamodb.types import TypeDeserializer

from ddb2bq.bigquery.insert_all import InsertAllWriter
from ddb2bq.bigquery.rest import RestClient
from ddb2bq.bigquery.transport import Answer
from ddb2bq.convert import COMPILED
from ddb2bq.records import from_lambda_event
from ddb2bq.rows import RowBuilder
from ddb2bq.schema import TableLayout, build_layout

KEY_SCHEMA = [("pk", "S"), ("sk", "N")]
PROMOTED = {"status": "STRING", "amount": "NUMERIC", "updated_at": "INT64"}
TABLE_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2024-05-01T00:00:00.000"
Event = dict[str, Any]
Pipeline = Callable[[Event], bytes]


# --- the event --------------------------------------------------------------------------------


def make_event(records: int = 10_000, seed: int = 20240501) -> Event:
    """A Lambda DynamoDB Streams event of ``records`` records (NEW_AND_OLD_IMAGES).

    About 40% INSERT, 45% MODIFY, 15% REMOVE (a fifth of them TTL deletes); items are ~1.2 KB
    orders with strings, small and large numbers, decimals, binary, sets, nested maps and lists.
    The event goes through ``json.dumps``/``json.loads`` so that it is made of fresh objects,
    exactly as the Lambda runtime hands it to a handler.
    """
    rng = random.Random(seed)
    start = 1_714_521_600  # 2024-05-01T00:00:00Z
    sequence = 4_000_000_000_000_000_000
    built = []
    for i in range(records):
        sequence += rng.randint(1, 5_000)
        built.append(_record(rng, i, start + i // 40, sequence))
    return json.loads(json.dumps({"Records": built}))


def _record(rng: random.Random, index: int, second: int, sequence: int) -> dict[str, Any]:
    roll = rng.random()
    op = "INSERT" if roll < 0.40 else "MODIFY" if roll < 0.85 else "REMOVE"
    keys = {"pk": {"S": f"customer#{rng.randint(1, 50_000):06d}"}, "sk": {"N": str(index)}}
    current = _item(rng, keys)
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": float(second),
        "Keys": keys,
        "SequenceNumber": str(sequence),
        "SizeBytes": 0,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if op in ("INSERT", "MODIFY"):
        ddb["NewImage"] = current
    if op in ("MODIFY", "REMOVE"):
        ddb["OldImage"] = _older(rng, current) if op == "MODIFY" else current
    ddb["SizeBytes"] = len(orjson.dumps(ddb.get("NewImage"))) + len(
        orjson.dumps(ddb.get("OldImage"))
    )
    record: dict[str, Any] = {
        "eventID": f"{rng.getrandbits(128):032x}",
        "eventName": op,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": ddb,
        "eventSourceARN": TABLE_ARN,
    }
    if op == "REMOVE" and rng.random() < 0.2:
        record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return record


def _item(rng: random.Random, keys: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        **keys,
        "status": {"S": rng.choice(["NEW", "PAID", "PACKED", "SHIPPED", "DELIVERED", "RETURNED"])},
        "amount": {"N": _money(rng, 99_999)},
        "updated_at": {"N": str(1_714_521_600_000 + rng.randint(0, 10**9))},
        "email": {"S": f"{_word(rng, 8)}.{_word(rng, 6)}@example.com"},
        "name": {"S": f"{_word(rng, 7).title()} {_word(rng, 9).title()}"},
        "active": {"BOOL": rng.random() < 0.8},
        "coupon": {"NULL": True} if rng.random() < 0.7 else {"S": _word(rng, 10).upper()},
        "tags": {"SS": sorted({_word(rng, rng.randint(3, 8)) for _ in range(rng.randint(1, 5))})},
        "scores": {"NS": _number_set(rng)},
        "avatar": {"B": _b64(rng, rng.randint(24, 64))},
        "address": {"M": _address(rng)},
        "lines": {"L": [{"M": _line(rng)} for _ in range(rng.randint(1, 4))]},
        "metrics": {"M": _metrics(rng)},
    }
    if rng.random() < 0.3:
        item["thumbnails"] = {"BS": sorted({_b64(rng, 12) for _ in range(rng.randint(1, 3))})}
    return item


def _older(rng: random.Random, item: dict[str, Any]) -> dict[str, Any]:
    old = dict(item)
    old["status"] = {"S": "NEW"}
    old["amount"] = {"N": _money(rng, 99_999)}
    old["updated_at"] = {"N": str(int(item["updated_at"]["N"]) - rng.randint(1, 10**6))}
    return old


def _address(rng: random.Random) -> dict[str, Any]:
    return {
        "street": {"S": f"{rng.randint(1, 999)} {_word(rng, 8).title()} Street"},
        "city": {"S": _word(rng, 7).title()},
        "zip": {"S": f"{rng.randint(10_000, 99_999)}"},
        "country": {"S": rng.choice(["FR", "DE", "US", "JP", "BR"])},
        "geo": {"M": {"lat": {"N": _coordinate(rng, 90)}, "lon": {"N": _coordinate(rng, 180)}}},
    }


def _line(rng: random.Random) -> dict[str, Any]:
    return {
        "sku": {"S": f"SKU-{rng.randint(0, 10**8):08d}"},
        "qty": {"N": str(rng.randint(1, 12))},
        "price": {"N": _money(rng, 9_999)},
        "gift": {"BOOL": rng.random() < 0.1},
        "options": {"L": [{"S": _word(rng, 5)} for _ in range(rng.randint(0, 3))]},
    }


def _metrics(rng: random.Random) -> dict[str, Any]:
    """Numbers as DynamoDB returns them (positional, no leading or trailing zeros) that
    TypeDeserializer accepts too (at most 38 digits as written)."""
    return {
        "views": {"N": str(rng.randint(0, 10**6))},
        "ratio": {"N": repr(rng.random())},  # a Python float, 16-17 digits
        "ledger": {"N": str(rng.randint(10**36, 10**37))},  # 37 digits: past int64 and float
        "precise": {"N": _dynamo_number("0." + "".join(rng.choices(string.digits, k=30)))},
        "huge": {"N": str(rng.randint(1, 9)) + "0" * rng.randint(20, 37)},
        "tiny": {"N": f"-0.{'0' * rng.randint(20, 60)}{rng.randint(1, 9)}5"},
        "negative": {"N": str(-rng.randint(1, 10**12))},
    }


def _number_set(rng: random.Random) -> list[str]:
    members = {str(rng.randint(-1000, 1000)) for _ in range(rng.randint(1, 4))}
    members.add(f"{rng.randint(0, 99)}.{rng.randint(1, 9)}")
    return sorted(members)


def _coordinate(rng: random.Random, limit: int) -> str:
    return _dynamo_number(f"{rng.uniform(-limit, limit):.6f}")


def _money(rng: random.Random, limit: int) -> str:
    return _dynamo_number(f"{rng.randint(0, limit)}.{rng.randint(0, 99):02d}")


def _dynamo_number(text: str) -> str:
    """DynamoDB returns numbers without trailing zeros after the point (``1.50`` -> ``1.5``)."""
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def _word(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=length))


def _b64(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode("ascii")


def make_layout() -> TableLayout:
    """The generated table's layout: its key schema and three promoted columns."""
    return build_layout(KEY_SCHEMA, promoted=PROMOTED)


# --- the three pipelines ----------------------------------------------------------------------


class _Recorder:
    """An in-memory transport for the light REST client: keeps each request body, answers
    that every row landed."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(
        self, method: str, url: str, body: bytes | None, headers: Any, timeout: float
    ) -> Answer:
        self.bodies.append(body or b"")
        return Answer(200, {"content-type": "application/json"}, b"{}")

    def close(self) -> None:
        pass


def ddb2bq_body(event: Event, layout: TableLayout | None = None) -> bytes:
    """The changelog insertAll body ddb2bq sends for ``event``: the real writer over the light
    REST client (its size checks and encoding included), in one request so that the body is
    comparable with the other pipelines'."""
    table = layout or make_layout()
    builder = RowBuilder(table)
    rows = [builder.build(change) for change in from_lambda_event(event)]
    transport = _Recorder()
    client = RestClient("bench", endpoint="http://bench.invalid", transport=transport)
    writer = InsertAllWriter(
        client,
        "bench.d.orders_changes",
        table.changelog_columns(),
        max_rows=len(rows) + 1,
        max_bytes=2**40,
        max_row_bytes=2**40,
    )
    result = writer.write(rows)
    assert not result.failures, result.failures
    (body,) = transport.bodies
    return body


class _EventDeserializer(TypeDeserializer):
    """TypeDeserializer raises TypeError on a Lambda event's base64 ``B`` text: keep the text."""

    def _deserialize_b(self, value: Any) -> Any:
        return value


_DESERIALIZER = _EventDeserializer()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return list(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _deserialize(image: dict[str, Any]) -> dict[str, Any]:
    return {name: _DESERIALIZER.deserialize(value) for name, value in image.items()}


def baseline_body(event: Event) -> bytes:
    """The obvious hand-written Lambda's insertAll body for ``event`` (see the module docstring)."""
    rows = []
    for record in event["Records"]:
        ddb = record["dynamodb"]
        image = ddb.get("NewImage")
        row = {
            "event_id": record["eventID"],
            "op": record["eventName"],
            "changed_at": datetime.fromtimestamp(
                ddb["ApproximateCreationDateTime"], tz=UTC
            ).isoformat(),
            **_deserialize(ddb["Keys"]),
            "item": None if image is None else json.dumps(_deserialize(image), default=_default),
        }
        rows.append({"insertId": record["eventID"], "json": row})
    return json.dumps({"rows": rows}, default=_default).encode()


def floor_body(event: Event) -> bytes:
    """No conversion at all: the raw keys and images, serialised once with orjson."""
    return orjson.dumps(
        {
            "rows": [
                {
                    "insertId": record["eventID"],
                    "json": {
                        "keys": record["dynamodb"]["Keys"],
                        "new_image": record["dynamodb"].get("NewImage"),
                        "old_image": record["dynamodb"].get("OldImage"),
                    },
                }
                for record in event["Records"]
            ]
        }
    )


PIPELINES: dict[str, Pipeline] = {
    "ddb2bq": ddb2bq_body,
    "baseline": baseline_body,
    "floor": floor_body,
}


# --- measuring --------------------------------------------------------------------------------


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def best_time(
    pipeline: Pipeline,
    event: Event,
    repeat: int = 5,
    clock: Callable[[], float] = time.process_time,
) -> float:
    """The best time of ``repeat`` runs of ``pipeline`` over ``event``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = clock()
        pipeline(event)
        best = min(best, clock() - started)
    return best


def peak_memory(pipeline: Pipeline, event: Event) -> int:
    """The peak of memory allocated while ``pipeline`` runs over ``event``, in bytes."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        body = pipeline(event)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del body
    return peak - before


def measure(
    records: int = 10_000, repeat: int = 5, seed: int = 20240501, clock: str = "cpu"
) -> dict[str, Any]:
    """Time every pipeline over one generated event; return the figures (see :func:`report`)."""
    event = make_event(records, seed)
    figures: dict[str, Any] = {
        "records": records,
        "repeat": repeat,
        "seed": seed,
        "clock": clock,
        "build": BUILD,
    }
    best = dict.fromkeys(PIPELINES, float("inf"))
    rounds: list[dict[str, float]] = []
    names = list(PIPELINES)
    for number in range(repeat):  # interleaved: a slow stretch of a shared machine hits all three
        seconds = {}
        for name in names[number % 3 :] + names[: number % 3]:  # each goes first in turn
            seconds[name] = best_time(PIPELINES[name], event, 1, CLOCKS[clock])
            best[name] = min(best[name], seconds[name])
        rounds.append(seconds)
    # the ratio of each round's runs, side by side, then their median: the machine's speed
    # changes by tens of percent from one second to the next, a round's runs share it
    figures["round_ratios"] = {
        other: statistics.median(r[other] / r["ddb2bq"] for r in rounds)
        for other in ("baseline", "floor")
    }
    for name, pipeline in PIPELINES.items():
        figures[name] = {
            "seconds": best[name],
            "records_per_s": records / best[name],
            "body_bytes": len(pipeline(event)),
        }
    for name, pipeline in PIPELINES.items():
        figures[name]["peak_bytes"] = peak_memory(pipeline, event)
    figures["event_bytes"] = len(orjson.dumps(event))
    figures["new_image_bytes"] = sum(
        len(orjson.dumps(r["dynamodb"]["NewImage"]))
        for r in event["Records"]
        if "NewImage" in r["dynamodb"]
    )
    return figures


def report(figures: dict[str, Any]) -> str:
    """The figures as a small table, with ddb2bq's speed relative to the other two."""
    lines = [
        f"ddb2bq build: {figures['build']}",
        f"{figures['records']} records, event {figures['event_bytes'] / 1e6:.1f} MB as JSON, "
        f"seed {figures['seed']}, best of {figures['repeat']} ({figures['clock']} time)",
        f"{'pipeline':<10} {'records/s':>11} {'ms':>9} {'body MB':>9} {'B/change':>9} "
        f"{'peak MB':>9}",
    ]
    records = figures["records"]
    for name in PIPELINES:
        f = figures[name]
        lines.append(
            f"{name:<10} {f['records_per_s']:>11,.0f} {f['seconds'] * 1e3:>9.1f} "
            f"{f['body_bytes'] / 1e6:>9.2f} {f['body_bytes'] / records:>9,.0f} "
            f"{f['peak_bytes'] / 1e6:>9.1f}"
        )
    raw = figures["new_image_bytes"] / records
    lines.append(f"{'NewImage':<10} {'':>11} {'':>9} {'':>9} {raw:>9,.0f}   (raw JSON, per change)")
    ours = figures["ddb2bq"]["records_per_s"]
    paired = figures["round_ratios"]
    lines.append(
        f"ddb2bq / baseline (a) = {ours / figures['baseline']['records_per_s']:.2f}x "
        f"(target >= 1.6)   ddb2bq / floor (b) = {ours / figures['floor']['records_per_s']:.2f}x"
        "   (best runs)"
    )
    lines.append(
        f"ddb2bq / baseline (a) = {paired['baseline']:.2f}x   "
        f"ddb2bq / floor (b) = {paired['floor']:.2f}x   "
        f"(median of the {figures['repeat']} rounds' own ratios)"
    )
    lines.append(
        f"ddb2bq bytes per change / raw NewImage = "
        f"{figures['ddb2bq']['body_bytes'] / figures['new_image_bytes']:.2f}x (target <= 1.3)"
    )
    return "\n".join(lines)


def profile(records: int, seed: int, top: int) -> str:
    """cProfile's top ``top`` entries (by own time) for ddb2bq's pipeline."""
    event = make_event(records, seed)
    profiler = cProfile.Profile()
    profiler.runcall(ddb2bq_body, event)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def bytecodes(records: int, seed: int) -> dict[str, float]:
    """Bytecodes the interpreter runs per record, for each pipeline but the floor, counted with
    ``sys.settrace``'s opcode events (the same on any machine, whatever its load, but for a few
    when the clock's second ticks over between two rows' ingestion times; the eval loop's
    dispatch of them is most of a pure-Python pipeline's time)."""
    event = make_event(records, seed)
    counts: dict[str, float] = {}
    for name in ("ddb2bq", "baseline"):
        pipeline = PIPELINES[name]
        pipeline(event)  # first-call costs (caches, lazy imports) are not per record
        executed = 0

        def trace(frame: Any, kind: str, arg: Any) -> Any:
            nonlocal executed
            if kind == "call":
                frame.f_trace_opcodes = True
                frame.f_trace_lines = False
            elif kind == "opcode":
                executed += 1
            return trace

        sys.settrace(trace)
        try:
            pipeline(event)
        finally:
            sys.settrace(None)
        counts[name] = executed / records
    return counts


ROOT = Path(__file__).resolve().parents[1]
# the compiled modules loaded here (setup.py says which are compiled), by name
_COMPILED_MODULES = sorted(
    name
    for name, module in sys.modules.items()
    if name.startswith("ddb2bq.")
    and not (getattr(module, "__file__", None) or ".py").endswith(".py")
)
BUILD = (
    f"compiled (mypyc: {', '.join(_COMPILED_MODULES)})"
    if COMPILED
    else "pure Python (the Lambda package's)"
)


def compiled_path() -> str | None:
    """``PYTHONPATH`` with the compiled build's site first (``scripts/compiled.py`` builds it
    when the sources changed); None, said on stdout, when it could not be built."""
    print(
        "the compiled build: scripts/compiled.py (built again when the sources changed)",
        file=sys.stderr,
        flush=True,
    )
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compiled.py")],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        print("bench: the compiled build failed (see above); --build loaded measures without it")
        return None
    return os.pathsep.join([built.stdout.strip(), *filter(None, [os.environ.get("PYTHONPATH")])])


def run_compiled(args: argparse.Namespace) -> int:
    """This benchmark again, in a child process that loads the compiled build; its report is
    printed here."""
    path = compiled_path()
    if path is None:
        return 1
    site = path.split(os.pathsep)[0]
    command = [sys.executable, str(Path(__file__).resolve()), "--build", "loaded"]
    for option in ("records", "repeat", "seed", "clock"):
        command += [f"--{option}", str(getattr(args, option))]
    child = subprocess.run(
        command,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    print(child.stdout, end="")
    if child.returncode == 0 and "ddb2bq build: compiled" not in child.stdout:
        print(f"bench: the child process did not load the compiled build from {site}")
        return 1
    return child.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=10_000, help="records in the event")
    parser.add_argument("--repeat", type=int, default=5, help="runs per pipeline; the best counts")
    parser.add_argument("--seed", type=int, default=20240501, help="random seed of the event")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="what to time")
    parser.add_argument("--profile", type=int, metavar="TOP", help="print cProfile's top entries")
    parser.add_argument(
        "--bytecodes", action="store_true", help="count bytecodes per record (1,000 records)"
    )
    parser.add_argument(
        "--build",
        choices=("both", "loaded", "compiled"),
        default="both",
        help="which build of ddb2bq to measure: this interpreter's, the compiled one, or both",
    )
    args = parser.parse_args(argv)
    if args.bytecodes:
        counts = bytecodes(min(args.records, 1_000), args.seed)
        print(
            f"bytecodes per record: ddb2bq {counts['ddb2bq']:,.0f}, baseline "
            f"{counts['baseline']:,.0f} ({counts['ddb2bq'] / counts['baseline']:.2f}x)"
        )
        return 0
    if args.build != "compiled":
        print(report(measure(args.records, args.repeat, args.seed, args.clock)), flush=True)
        if args.profile:
            print(profile(args.records, args.seed, args.profile), flush=True)
    if args.build == "loaded" or (args.build == "both" and COMPILED):
        return 0  # (both, with the compiled build loaded here: measured above)
    if args.build == "both":
        print()
    return run_compiled(args)


if __name__ == "__main__":
    raise SystemExit(main())
