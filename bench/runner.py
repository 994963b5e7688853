"""Runner benchmark: the stream runner against the pipeline alone, same changes, same emulator.

``--changes`` (50,000) orders over ``--shards`` (8) shards of the stream double go to
local-bigquery through ``--writer`` (storage_write, the default, or insert_all); each phase runs
in a fresh child process with fresh tables:

- ``pipeline alone``: the double's GetRecords pages (one ``--page-size`` page of each shard in
  turn, as the runner reads them), fetched beforehand, parsed with ``from_get_records_record``
  and written with ``pipeline.process(items, ordered=True)``;
- ``runner``: ``Runner.run(until_caught_up=True)`` over a double holding the same changes (the
  backlog case), SQLite state in a temp dir, the real clock;
- ``live``: the runner from an empty stream while a thread (sharing the GIL) puts the orders at
  ``--rate`` a second (default: a quarter of the runner's changes/s, so it keeps up).

Reading it: changes/s = changes / (the last ``process`` call's end - the start); "run s" is all
of ``run()``, its catch-up check's empty pages included; runner overhead = 1 - runner/pipeline
(target < 20 %). "CPU s" is the child's; "double s"/"its CPU" the time inside the double, whose
deep copy of each record stands for boto3's parsing (a real runner pays it, the pipeline alone
does not). Peak RSS is each child's VmHWM (``ru_maxrss`` keeps the forking parent's), setup and
the changes in memory included; growth is the timed part's. Lag (live): from just before a change
was put to the return of the ``process`` call that wrote it; the halves and the drain show
whether it kept up. Other processes' load (printed) distorts wall times, not CPU: ``--repeat``.

Run from the repository root (needs scripts/setup's emulator)::

    .venv/bin/python bench/runner.py                          # about 3 minutes
    .venv/bin/python bench/runner.py --writer insert_all --repeat 3
    .venv/bin/python bench/runner.py --dry --changes 200 --shards 2

``--dry`` writes to an in-memory writer (no emulator, no socket): the smoke test's mode; it shows
that the bench runs, and its figures are not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stream double lives in tests/doubles

from tests.doubles.streams import StreamDouble  # noqa: E402

from ddb2bq.config import Config, load_config  # noqa: E402
from ddb2bq.contract import WriteResult  # noqa: E402
from ddb2bq.dead_letters.local import LocalDeadLetters  # noqa: E402
from ddb2bq.pipeline import BatchResult, Pipeline, Unparsed  # noqa: E402
from ddb2bq.records import Change, from_get_records_record  # noqa: E402
from ddb2bq.rows import Rows  # noqa: E402
from ddb2bq.runner.loop import Runner, RunnerSettings  # noqa: E402
from ddb2bq.runner.signals import StopFlag  # noqa: E402
from ddb2bq.state import Generation, SqliteStateStore  # noqa: E402

PROJECT, TABLE, KEY_SCHEMA = "bench-project", "orders", [("pk", "S"), ("sk", "N")]
PROMOTE = {"status": "STRING", "amount": "NUMERIC"}
FIGURES = ("changes", "seconds", "run_s", "cpu_s", "double_s", "double_cpu_s", "batches")
Item = dict[str, Any]
Order = tuple[Item, Item | None, Item | None]
"""An order's keys, new image and old image (DynamoDB JSON, binary as bytes, as boto3 gives)."""
Page = tuple[str, list[dict[str, Any]]]
"""A shard id and one GetRecords page of it."""


def orders(count: int, seed: int = 7) -> list[Order]:
    """``(keys, new_image, old_image)`` of ``count`` changes: 1/4 INSERT, 1/2 MODIFY, 1/4 REMOVE."""
    rng = random.Random(seed)
    made: list[Order] = []
    for number in range(count):
        keys = {"pk": {"S": f"customer#{rng.randrange(500)}"}, "sk": {"N": str(number)}}
        line = {"M": {"sku": {"S": f"sku-{number % 90}"}, "qty": {"N": "1"}}}
        image: Item = {
            **keys,
            "status": {"S": rng.choice(["NEW", "PAID", "SHIPPED"])},
            "amount": {"N": f"{rng.randrange(10**7)}.{rng.randrange(1, 100):02d}"},
            "customer": {"M": {"name": {"S": "Zoë Example"}, "tier": {"N": "2"}}},
            "lines": {"L": [line, line]},
            "tags": {"SS": ["express", "gift"]},
            "receipt": {"B": rng.randbytes(24)},
            "updated_at": {"N": str(1_700_000_000 + number)},
        }
        op = number % 4
        made.append((keys, image if op < 3 else None, image if op > 0 else None))
    return made


def filled_stream(count: int, shards: int) -> StreamDouble:
    stream = StreamDouble(table=TABLE, key_schema=(("pk", "HASH"), ("sk", "RANGE")), shards=shards)
    stream.clock = time.time()  # made before the run starts, as the runner's catch-up expects
    for keys, new, old in orders(count):
        stream.put(keys, new, old)
    return stream


def fetch_pages(stream: StreamDouble, page_size: int) -> list[Page]:
    """Every record of the double as GetRecords pages, one page of each shard in turn."""
    arn, pages = stream.stream_arn, []
    iterators = {
        shard: stream.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for shard in stream.open_shards()
    }
    while iterators:
        for shard, iterator in list(iterators.items()):
            answer = stream.get_records(ShardIterator=iterator, Limit=page_size)
            if answer["Records"]:
                pages.append((shard, answer["Records"]))
                iterators[shard] = answer["NextShardIterator"]
            else:
                del iterators[shard]
    return pages


class Timed:
    """The pipeline, noting when each change came back written; requests ``stop`` at the end."""

    def __init__(self, pipeline: Pipeline, expected: int, stop: StopFlag | None = None) -> None:
        self._pipeline, self._expected, self.stop = pipeline, expected, stop
        self.counters = pipeline.counters
        self.written_at: dict[str, float] = {}

    def process(self, items: Sequence[Change | Unparsed], *, ordered: bool) -> BatchResult:
        result = self._pipeline.process(items, ordered=ordered)
        now = time.perf_counter()
        for item, outcome in zip(items, result.outcomes, strict=True):
            if outcome.status == "written" and isinstance(item, Change):
                self.written_at[item.sequence_number or ""] = now
        if self.stop is not None and len(self.written_at) >= self._expected:
            self.stop.request()
        return result


class Clocked:
    """The double, adding up the wall and CPU time spent inside its calls."""

    def __init__(self, stream: StreamDouble) -> None:
        self._stream, self.seconds, self.cpu_s = stream, 0.0, 0.0

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._stream, name)

        def timed(**kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return call(**kwargs)
            finally:
                self.seconds += time.perf_counter() - wall
                self.cpu_s += time.thread_time() - cpu

        return timed


class MemoryWriter:
    """``--dry``: takes every row and sends nothing."""

    def write(self, batch: Sequence[Rows]) -> WriteResult:
        return WriteResult(written=len(batch), requests=1)


# --- one phase, in a child process -------------------------------------------------------------


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run phase ``args.phase``; its figures."""
    config = load_config(environ=_environ(args))
    with tempfile.TemporaryDirectory(prefix="ddb2bq-bench-runner-") as work:
        timed = Timed(_pipeline(config, Path(work), args), args.changes)
        if args.phase == "pipeline":
            pages: list[Page] = pickle.loads(Path(args.pages).read_bytes())
            start = _start()
            for shard, records in pages:
                items = [
                    from_get_records_record(r, shard_id=shard, index=i)
                    for i, r in enumerate(records)
                ]
                timed.process(items, ordered=True)
            figures: dict[str, Any] = {"run_s": 0.0, "double_s": 0.0, "double_cpu_s": 0.0}
            figures["cpu_s"] = time.process_time() - start[2]
        else:
            figures, start = _runner(timed, args, Path(work))
    if timed.counters.written != args.changes or timed.counters.dead_lettered:
        raise SystemExit(f"{args.phase}: {timed.counters.written} of {args.changes} written")
    put_at: dict[str, float] = figures.pop("put_at", {})
    if put_at:
        figures["rate"] = args.changes / (max(put_at.values()) - min(put_at.values()))
        figures["drain_s"] = max(timed.written_at.values()) - max(put_at.values())
        figures["lag_ms"] = [(timed.written_at[s] - t) * 1000 for s, t in put_at.items()]
    return figures | {
        "changes": args.changes,
        "seconds": max(timed.written_at.values()) - start[1],
        "batches": timed.counters.batches,
        "peak_kb": _peak_rss_kb(),
        "growth_kb": _peak_rss_kb() - start[0],
    }


def _runner(
    timed: Timed, args: argparse.Namespace, work: Path
) -> tuple[dict[str, Any], tuple[int, float, float]]:
    live = args.phase == "live"
    stream = filled_stream(0 if live else args.changes, args.shards)
    streams, stop, store = Clocked(stream), StopFlag(), SqliteStateStore(work / "state.sqlite")
    runner = Runner(
        table=TABLE,
        stream_arn=stream.stream_arn,
        streams=streams,
        pipeline=cast(Pipeline, timed),
        store=store,
        generation=Generation(0, store, TABLE),
        settings=RunnerSettings(page_size=args.page_size),
        stop=stop,
    )
    put_at: dict[str, float] = {}
    producer = threading.Thread(target=_produce, args=(stream, args, put_at), daemon=True)
    deadline = threading.Timer(args.changes / (args.rate or 1) + 120, stop.request)  # no hang
    timed.stop = stop if live else None
    start = _start()
    if live:
        producer.start()
        deadline.start()
    runner.run(until_caught_up=not live)
    figures: dict[str, Any] = {"run_s": time.perf_counter() - start[1]}
    figures["cpu_s"] = time.process_time() - start[2]
    deadline.cancel()
    store.close()
    if live:
        producer.join()
        figures["put_at"] = put_at
    return figures | {"double_s": streams.seconds, "double_cpu_s": streams.cpu_s}, start


def _produce(stream: StreamDouble, args: argparse.Namespace, put_at: dict[str, float]) -> None:
    """Put the orders at ``args.rate`` a second, noting when each was put."""
    started = time.perf_counter()
    for number, (keys, new, old) in enumerate(orders(args.changes)):
        time.sleep(max(0.0, started + number / args.rate - time.perf_counter()))
        stream.clock = time.time()
        at = time.perf_counter()
        put_at[stream.put(keys, new, old)] = at


def _pipeline(config: Config, work: Path, args: argparse.Namespace) -> Pipeline:
    from ddb2bq.bigquery.tables import init_tables, initial_layout  # noqa: PLC0415

    letters, layout = LocalDeadLetters(work / "dead-letters"), initial_layout(config, KEY_SCHEMA)
    if args.dry:
        return Pipeline(config, layout, lambda _: MemoryWriter(), letters, source="getrecords")
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415 (heavy)
    from ddb2bq.bigquery.factory import pipeline_from_config  # noqa: PLC0415

    client = bigquery_client(config)
    init_tables(client, config, layout)
    client.close()
    return pipeline_from_config(config, letters, source="getrecords")


def _environ(args: argparse.Namespace) -> dict[str, str]:
    return {
        "DDB2BQ_SOURCE_TABLE": TABLE,
        "DDB2BQ_TARGET_PROJECT": PROJECT,
        "DDB2BQ_TARGET_DATASET": args.dataset,
        "DDB2BQ_TARGET_ENDPOINT": args.endpoint,
        "DDB2BQ_TARGET_GRPC_ENDPOINT": args.grpc_endpoint,
        "DDB2BQ_TARGET_WRITER": args.writer,
        "DDB2BQ_COLUMNS_PROMOTE": ",".join(PROMOTE),
        "DDB2BQ_COLUMNS_TYPES": json.dumps(PROMOTE),
    }


def _start() -> tuple[int, float, float]:
    """Where a timed part starts: the peak RSS so far, the wall clock, this process's CPU."""
    return _peak_rss_kb(), time.perf_counter(), time.process_time()


def _peak_rss_kb() -> int:
    status = Path("/proc/self/status").read_text()  # Linux
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])


# --- the parent: prepare, run the phases, print ------------------------------------------------


def measure(args: argparse.Namespace, work: Path) -> dict[str, list[dict[str, Any]]]:
    """The phases, each in a fresh child: pipeline/runner pairs alternating, then live."""
    pages = work / "pages.pickle"
    pages.write_bytes(
        pickle.dumps(fetch_pages(filled_stream(args.changes, args.shards), args.page_size))
    )
    results: dict[str, list[dict[str, Any]]] = {"pipeline": [], "runner": [], "live": []}
    for run, phase in enumerate(["pipeline", "runner"] * args.repeat + ["live"]):
        count = args.changes
        if phase == "live":
            backlog = statistics.median(r["changes"] / r["seconds"] for r in results["runner"])
            args.rate = args.rate or round(backlog / 4, -1) or 10.0
            count = min(count, max(200, round(args.rate * args.live_seconds)))
        named = ("shards", "page_size", "writer", "rate", "endpoint", "grpc_endpoint")
        command = [sys.executable, __file__, "--phase", phase, "--changes", str(count)]
        command += [f"--{n.replace('_', '-')}={getattr(args, n)}" for n in named]
        command += ["--pages", str(pages), "--dataset", f"bench_{phase}_{run}"]
        command += ["--dry"] if args.dry else []
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
        results[phase].append(json.loads(done.stdout.splitlines()[-1]))
    return results


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> str:
    """The figures as a small table, then the ratio, the CPU and the lag."""
    where = "in-memory writer: dry, NOT a measurement" if args.dry else "local-bigquery"
    lines = [
        f"{args.changes:,} changes, {args.shards} shards, pages of {args.page_size}, writer "
        f"{args.writer}, {where}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"medians of {args.repeat}",
        f"{'phase':<14} {'changes':>7} {'changes/s':>9} {'seconds':>7} {'run s':>6} {'CPU s':>6}"
        f" {'double s':>8} {'its CPU':>7} {'batches':>7} {'peak RSS MB':>11} {'growth MB':>9}",
    ]
    m: dict[str, dict[str, float]] = {}
    for phase, runs in results.items():
        m[phase] = f = {k: statistics.median(r[k] for r in runs) for k in FIGURES}
        name = "pipeline alone" if phase == "pipeline" else phase
        lines.append(
            f"{name:<14} {f['changes']:>7,.0f} {f['changes'] / f['seconds']:>9,.0f} "
            f"{f['seconds']:>7.2f} {f['run_s']:>6.2f} {f['cpu_s']:>6.2f} {f['double_s']:>8.2f} "
            f"{f['double_cpu_s']:>7.2f} {f['batches']:>7.0f} "
            f"{max(r['peak_kb'] for r in runs) / 1024:>11.1f} "
            f"{max(r['growth_kb'] for r in runs) / 1024:>9.1f}"
        )
    each = {k: ", ".join(f"{r['changes'] / r['seconds']:,.0f}" for r in results[k]) for k in m}
    lines.append(
        f"changes/s of each run: pipeline alone {each['pipeline']}; runner {each['runner']}"
    )
    pipeline, runner = m["pipeline"], m["runner"]
    ratio = pipeline["seconds"] / runner["seconds"]
    cpu = runner["cpu_s"] / pipeline["cpu_s"] - 1
    bare = (runner["cpu_s"] - runner["double_cpu_s"]) / pipeline["cpu_s"] - 1
    lines.append(
        f"ratio runner / pipeline (changes/s) = {ratio:.3f}   runner overhead = {1 - ratio:.1%}"
        f" (target < 20 %)\nCPU, runner over pipeline alone: {cpu:+.1%}; without the CPU inside "
        f"the double: {bare:+.1%}"
    )
    live = results["live"][0]
    lags, half = live["lag_ms"], len(live["lag_ms"]) // 2
    p = statistics.quantiles(lags, n=100, method="inclusive")
    first, second = statistics.median(lags[:half]), statistics.median(lags[half:])
    lines.append(
        f"lag, live at {args.rate:,.0f}/s (put {live['rate']:,.0f}/s): p50 {p[49]:.0f} ms, p99 "
        f"{p[98]:.0f} ms, max {max(lags):.0f} ms; p50 of the first/second half {first:.0f}/"
        f"{second:.0f} ms; all written {live['drain_s'] * 1000:.0f} ms after the last put"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--page-size", type=int, default=1000, help="GetRecords Limit")
    parser.add_argument(
        "--writer", choices=("storage_write", "insert_all"), default="storage_write"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="live changes/s (default: 1/4 runner's)"
    )
    parser.add_argument("--live-seconds", type=float, default=20.0, help="how long live puts")
    parser.add_argument("--repeat", type=int, default=1, help="pipeline/runner pairs, alternating")
    parser.add_argument("--dry", action="store_true", help="in-memory writer: not a measurement")
    parser.add_argument("--phase", choices=("pipeline", "runner", "live"), help=argparse.SUPPRESS)
    for hidden in ("--pages", "--dataset", "--endpoint", "--grpc-endpoint"):
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(child(args)))
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ddb2bq-") as work, contextlib.ExitStack() as stack:
        if not args.dry:
            from ddb2bq.local import start_bigquery  # noqa: PLC0415

            bigquery = stack.enter_context(start_bigquery(PROJECT))
            args.endpoint, args.grpc_endpoint = bigquery.endpoint, bigquery.grpc_endpoint
        results = measure(args, Path(work))
    print(report(args, results))
    print(f"(the bench took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
