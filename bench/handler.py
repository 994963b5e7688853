"""Lambda handler benchmark: (a) cold start, (b) CPU per 1,000-record batch.

(a) Cold start. A fresh, isolated process (``python -I -S``, ``sys.path`` = the unpacked zip and
    a folder holding boto3, as Lambda's runtime; ``AWS_LAMBDA_RUNTIME_API`` set, so the handler
    module makes its container state at import, in the init phase, as in Lambda) imports
    ``ddb2bq.aws_lambda`` from the built zip and handles the AWS sample event, writing to the
    local-bigquery emulator (a real write over loopback, not a stub). Baseline, measured in the
    same run: a fresh process with the same path importing ``google.cloud.bigquery`` and
    ``google.cloud.bigquery_storage_v1`` (the import bill of the obvious function). Runs
    alternate between the kinds; the figures are medians of wall time of the whole process
    (interpreter start included). Printed: the import-only ratio (what Lambda's init phase
    costs) and the ratio up to the first write done (target: at most 0.5 for the default
    writer), also as the median of each round's own ratio (a round's runs are side by side, so
    they share the machine's speed of the moment, which on a shared VM moves by tens of
    percent); the time spent waiting for the emulator's answers to the light REST client (the
    schema GET and the insertAll POST), and the ratio without it. With the default writer
    (``storage_write``, which writes a cold container's first batches through insertAll while
    the Storage Write client loads in the background: ``ddb2bq.bigquery.warm_start``) also: when
    that load was done, a second batch written after it (through Storage Write), and the same
    handler without the warm start (Storage Write loaded at the first write, as before it).
(b) CPU milliseconds per 1,000-record batch (``time.thread_time``: the handler's thread, not the
    gRPC client's own threads; median of runs): parse
    (``from_lambda_event``) + convert (``RowBuilder``) + request encoding, for both writers (the
    insertAll JSON body; the Storage Write serialized rows and ``AppendRowsRequest``: the
    default writer's steady state, target under 25 ms). The network write of the same 1,000
    rows to the emulator is measured separately (wall time, and the CPU this process spent in
    it), for insertAll through the full client and the light one, and for Storage Write.
(c) A warm container's invocations: one fresh isolated process as in (a), after its first
    invocation and its Storage Write load, handles ``--rounds`` events of 1,000 records of each
    kind, taking turns: with the init phase's ``gc.freeze`` (what the handler does) and without
    it (``gc.unfreeze``). Printed: the handler thread's CPU per invocation, the runtime's
    ``json.loads`` of the event included (awslambdaric parses it in the same process, with
    simplejson: every full collection it sets off walks the whole heap), the garbage
    collector's share of it, and the full collections per invocation.

The zip is what ``ddb2bq package --arch x86_64 --python <this Python>`` builds from the ddb2bq
this interpreter imports: with ``--build compiled`` the benchmark runs again in a child process
that imports ``scripts/compiled.py``'s compiled build, so the zip carries the compiled converter
(as a package built from a compiled install does) and (b) measures it too; the first line says
which converter was measured.

Run from the repository root (needs scripts/setup's emulator)::

    .venv/bin/python bench/handler.py                     # builds the zip (~30 s)
    .venv/bin/python bench/handler.py --build compiled    # the compiled converter's zip
    .venv/bin/python bench/handler.py --zip dist/ddb2bq-lambda.zip --runs 9
    .venv/bin/python bench/handler.py --runs 9 --writer insert_all   # the Lambda's light path
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddb2bq.config import Config, load_config
from ddb2bq.convert import COMPILED
from ddb2bq.deploy.package import PackageSpec, build_package
from ddb2bq.local import Server, start_bigquery
from ddb2bq.records import from_lambda_event
from ddb2bq.rows import RowBuilder, Rows

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_EVENT = ROOT / "tests" / "fixtures" / "aws_sample_event.json"
PROJECT = "bench-project"
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
STREAM_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"

HANDLER_CHILD = """
import time
started = time.perf_counter()
import sys
sys.path[:0] = {path!r}
import json
out, sys.stdout = sys.stdout, sys.stderr
from ddb2bq.aws_lambda import handler
imported = time.perf_counter()
waits = {{}}
# time the light client's requests: the emulator's answer times (imported by the init phase
# with the warm start, else by the handler at its first write anyway)
from ddb2bq.bigquery import rest
send = rest.Connections.send
def timed(self, method, *args, **kwargs):
    begun = time.perf_counter()
    try:
        return send(self, method, *args, **kwargs)
    finally:
        waits[method] = waits.get(method, 0.0) + time.perf_counter() - begun
rest.Connections.send = timed
cold = []
if {warm}:  # count the batches the warm start sends through insertAll
    from ddb2bq.bigquery import warm_start
    count = warm_start.StorageWriteSwitch.count_cold_batch
    def counted(self):
        cold.append(time.perf_counter())
        return count(self)
    warm_start.StorageWriteSwitch.count_cold_batch = counted
event = json.loads({event!r})
if {warm}:
    response = handler(event, None)
else:  # the same handler without the warm start: Storage Write loaded at the first write
    from ddb2bq import aws_lambda
    from ddb2bq.config import load_config
    response = aws_lambda.Handler(load_config())(event, None)
written = time.perf_counter()
result = {{"import": imported - started, "first_write": written - started, "waits": waits,
          "response": response}}
if {warm}:
    from ddb2bq import aws_lambda
    loader = aws_lambda.container_handler().storage_loader
    result["cold_batch"] = len(cold) == 1
    if loader is not None and loader.wait(60.0):
        result["loaded"] = time.perf_counter() - started
        second = handler(event, None)  # the same changes again: idempotent in the changelog
        result["second_write"] = time.perf_counter() - started
        result["second"] = second
        result["ready"] = loader.ready and len(cold) == 1  # the second one: Storage Write
out.write(json.dumps(result))
out.flush()  # now: at exit, with the init phase's objects frozen, the stream may go unflushed
"""

STEADY_CHILD = """
import gc, json, statistics, sys, time
sys.path[:0] = {path!r}
out, sys.stdout = sys.stdout, sys.stderr
from ddb2bq import aws_lambda  # the init phase (it freezes what it made)
from ddb2bq.aws_lambda import handler
handler(json.loads({sample!r}), None)  # the first invocation: the loader goes on after it
loader = aws_lambda.container_handler().storage_loader
assert loader is not None and loader.wait(60.0) and loader.ready
with open({event!r}, encoding="utf-8") as file:
    text = file.read()
collecting = [0.0, 0]
def timed(phase, info, begun=[0.0]):
    if phase == "start":
        begun[0] = time.perf_counter()
    else:
        collecting[0] += time.perf_counter() - begun[0]
        collecting[1] += info["generation"] == 2
gc.callbacks.append(timed)
results = {{"frozen": [], "not frozen": []}}
for round in range({rounds}):
    for mode in results:
        gc.freeze() if mode == "frozen" else gc.unfreeze()
        collecting[:] = [0.0, 0]
        started = time.thread_time()
        event = json.loads(text)  # the runtime's parse of the event (simplejson.loads there)
        response = handler(event, None)
        cpu = time.thread_time() - started
        assert response == {{"batchItemFailures": []}}, response
        results[mode].append((cpu, collecting[0], collecting[1]))
        del event, response
out.write(json.dumps({{"results": results, "tracked": len(gc.get_objects()) + gc.get_freeze_count()}}))
out.flush()  # as in HANDLER_CHILD
"""

BASELINE_CHILD = """
import time
started = time.perf_counter()
import sys
sys.path[:0] = {path!r}
import google.cloud.bigquery, google.cloud.bigquery_storage_v1
print(time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=None, help="a built zip (default: build one)")
    parser.add_argument("--runs", type=int, default=7, help="cold starts of each kind")
    parser.add_argument("--repeat", type=int, default=7, help="CPU runs per 1,000-record batch")
    parser.add_argument(
        "--writer", choices=("storage_write", "insert_all"), default="storage_write"
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="(c) batches of each kind, taking turns"
    )
    parser.add_argument(
        "--build",
        choices=("loaded", "compiled"),
        default="loaded",
        help="the ddb2bq to package and measure: this interpreter's, or the compiled build",
    )
    args = parser.parse_args()
    if args.build == "compiled" and not COMPILED:
        raise SystemExit(run_compiled())
    with tempfile.TemporaryDirectory(prefix="ddb2bq-bench-") as work:
        task, runtime = _prepare(Path(work), args.zip)
        with start_bigquery(PROJECT, emulator_dir=ROOT / ".cache" / "local-bigquery") as bigquery:
            config = _init_tables(bigquery, "ExampleTableWithStream", [("Id", "N")], args.writer)
            cold_start(task, runtime, bigquery, config, args.runs)
            batch_cost(bigquery, args.repeat)
            steady_state(task, runtime, bigquery, args.writer, args.rounds)


def run_compiled() -> int:
    """This benchmark again, in a child process whose ddb2bq is the compiled build."""
    path = _bench_convert().compiled_path()
    if path is None:
        return 1
    environ = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, *sys.argv], env=environ, check=False).returncode


# --- (a) cold start ----------------------------------------------------------------------------


def cold_start(task: Path, runtime: Path, bigquery: Server, config: Config, runs: int) -> None:
    path = [str(task), str(runtime)]
    event = SAMPLE_EVENT.read_text()
    environ = {**_environ(bigquery, config), "PATH": os.defpath, "LC_ALL": "C.UTF-8"}
    lambda_environ = {**environ, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}  # as in Lambda
    default = config.target.writer == "storage_write"
    kinds = {"handler": (HANDLER_CHILD.format(path=path, event=event, warm=True), lambda_environ)}
    if default:  # outside a Lambda runtime, and no loader: nothing is warmed up
        kinds["no_warm_start"] = (HANDLER_CHILD.format(path=path, event=event, warm=False), environ)
    baseline_code = BASELINE_CHILD.format(path=path)
    walls: dict[str, list[float]] = {"baseline": [], "start": [], **{k: [] for k in kinds}}
    baseline: list[float] = []
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(runs):
        wall, output = _run_child("pass", environ)
        walls["start"].append(wall)
        wall, output = _run_child(baseline_code, environ)
        walls["baseline"].append(wall)
        baseline.append(float(output))
        for kind, (code, env) in kinds.items():
            wall, output = _run_child(code, env)
            walls[kind].append(wall)
            result = json.loads(output)
            assert result["response"] == {"batchItemFailures": []}, result
            assert result.get("second", result["response"]) == {"batchItemFailures": []}, result
            results[kind].append(result)
    start = statistics.median(walls["start"])
    base = start + statistics.median(baseline)
    # each round's own baseline: its runs ran side by side, at the machine's speed of the moment
    rounds = [(s, s + b) for s, b in zip(walls["start"], baseline, strict=True)]
    ms = 1000
    print(
        f"(a) cold start: medians of {runs} fresh isolated processes each, writer "
        f"{config.target.writer}, first write to local-bigquery over loopback (ms)"
    )
    print(
        f"    interpreter start and exit (python -I -S -c pass)                  {start * ms:8.1f}"
    )
    print(
        f"    baseline: start + import google.cloud.bigquery, bigquery_storage_v1 {base * ms:8.1f}"
    )
    print(
        f"    whole processes incl. exit: baseline {statistics.median(walls['baseline']) * ms:.1f}, "
        f"ddb2bq {statistics.median(walls['handler']) * ms:.1f}"
    )
    _report(results["handler"], start, base, rounds, "ddb2bq", target=default)
    if default:
        _report_warm_start(results["handler"], start, base)
        print(
            "    the same handler without the warm start (Storage Write loaded at the first write):"
        )
        _report(results["no_warm_start"], start, base, rounds, "before", target=False)


def _report(
    results: list[dict[str, Any]],
    start: float,
    base: float,
    rounds: list[tuple[float, float]],
    who: str,
    *,
    target: bool,
) -> None:
    ms = 1000
    init = start + statistics.median(r["import"] for r in results)
    first = start + statistics.median(r["first_write"] for r in results)
    print(
        f"    {who + ':':9s} start + import ddb2bq.aws_lambda (Lambda's init phase)   {init * ms:8.1f}"
    )
    print(
        f"    {who + ':':9s} start + import + first invocation written            {first * ms:8.1f}"
    )
    print(f"    ratio init phase / baseline:          {init / base:5.2f}")
    goal = "   (target <= 0.5)" if target else ""
    print(f"    ratio to first write done / baseline: {first / base:5.2f}{goal}")
    own = statistics.median(
        (begin + r["first_write"]) / baseline
        for r, (begin, baseline) in zip(results, rounds, strict=True)
    )
    print(f"      (the median of the {len(rounds)} rounds' own ratios: {own:.2f})")
    waits = [r["waits"] for r in results]
    get, post = (statistics.median(w.get(m, 0.0) for w in waits) for m in ("GET", "POST"))
    if get or post:
        print(
            f"    of which the emulator's answers to the light client (schema GET {get * ms:.1f}, "
            f"insertAll POST {post * ms:.1f}): {(get + post) * ms:.1f}; ratio without them: "
            f"{(first - get - post) / base:5.2f}"
        )


def _report_warm_start(results: list[dict[str, Any]], start: float, base: float) -> None:
    ms = 1000
    cold = sum(1 for r in results if r["cold_batch"])
    loaded = [r for r in results if "loaded" in r]
    ready = sum(1 for r in loaded if r["ready"])
    print(
        f"    warm start: first batch through insertAll in {cold} of {len(results)} runs; "
        f"Storage Write loaded in {ready} of {len(results)}"
    )
    if loaded:
        done = start + statistics.median(r["loaded"] for r in loaded)
        second = start + statistics.median(r["second_write"] for r in loaded)
        print(
            f"    Storage Write loaded in the background, done at          {done * ms:8.1f}  ({done / base:4.2f})"
        )
        print(
            f"    a second batch, through Storage Write, written at        {second * ms:8.1f}  ({second / base:4.2f})"
        )


def _run_child(code: str, environ: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    return wall, done.stdout


# --- (b) CPU per 1,000-record batch ------------------------------------------------------------


def batch_cost(bigquery: Server, repeat: int) -> None:
    from ddb2bq.bigquery import clients  # noqa: PLC0415 (the Google libraries, for the writers)
    from ddb2bq.bigquery.insert_all import InsertAllWriter  # noqa: PLC0415
    from ddb2bq.bigquery.storage_write import StorageWriteWriter  # noqa: PLC0415
    from ddb2bq.bigquery.tables import TableRefs, load_layout  # noqa: PLC0415

    config = _init_tables(
        bigquery,
        "orders",
        [("pk", "S"), ("sk", "N")],
        "insert_all",
        promote={"status": "STRING", "amount": "NUMERIC"},
    )
    client = clients.bigquery_client(config)
    refs = TableRefs.from_config(config, client.project)
    layout = load_layout(client, refs)
    write_client = clients.bigquery_write_client(config)
    path = f"projects/{refs.changes.project}/datasets/{refs.changes.dataset}/tables/{refs.changes.table}"
    storage = StorageWriteWriter(write_client, path, layout.changelog_columns())
    insert_all = InsertAllWriter(client, refs.changes.api, layout.changelog_columns())
    light = InsertAllWriter(
        clients.rest_client(config), refs.changes.api, layout.changelog_columns()
    )
    event = make_event(1000)

    def convert() -> list[Rows]:
        return RowBuilder(layout).build_all(from_lambda_event(event))

    light_body = _bench_convert().ddb2bq_body  # the real writer over the light client

    def insert_all_body() -> bytes:
        body: bytes = light_body(event, layout)
        return body

    def storage_request() -> Any:
        rows = convert()
        return storage.request([storage.encoder.encode(r.changelog) for r in rows])

    body = len(insert_all_body())
    print(f"\n(b) CPU ms per 1,000-record batch (median of {repeat}; min in brackets)")
    for name, work in (
        ("parse + convert", convert),
        ("parse + convert + insertAll JSON body", insert_all_body),
        ("parse + convert + Storage Write rows + AppendRowsRequest", storage_request),
    ):
        median, best = _cpu(work, repeat)
        print(f"    {name:58s} {median:7.1f}  [{best:6.1f}]")
    print("    (target for the default writer, Storage Write rows + request: under 25 ms)")
    print(f"    (insertAll body: {body / 1000:.0f} kB for 1,000 records)")
    print("    network write of the same 1,000 rows to local-bigquery (wall ms / CPU ms here):")
    rows = convert()
    named = (("insertAll", insert_all), ("insertAll, light", light), ("Storage Write", storage))
    for name, writer in named:
        walls, cpus = [], []
        for _ in range(max(3, repeat // 2)):
            wall, cpu = time.perf_counter(), time.process_time()
            result = writer.write(rows)
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            assert result.ok, result.failures[:1]
        print(f"      {name:16s} {statistics.median(walls):8.1f} / {statistics.median(cpus):7.1f}")
    client.close()


def _bench_convert() -> Any:
    """bench/convert.py as a module (its ``ddb2bq_body``: parse, convert, the insertAll writer)."""
    spec = importlib.util.spec_from_file_location(
        "ddb2bq_bench_convert", ROOT / "bench" / "convert.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpu(work: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    work()  # warm: first-call costs (descriptor pools, caches) are not per batch
    for _ in range(repeat):
        gc.collect()
        started = time.thread_time()  # this thread's CPU: not the gRPC client's own threads
        work()
        times.append((time.thread_time() - started) * 1000)
    return statistics.median(times), min(times)


# --- (c) a container's steady state ------------------------------------------------------------


def steady_state(task: Path, runtime: Path, bigquery: Server, writer: str, rounds: int) -> None:
    """Warm invocations of 1,000 records in one container (after its loader is done), the
    runtime's parse of the event included, with and without the init phase's ``gc.freeze``."""
    config = _init_tables(
        bigquery,
        "orders",
        [("pk", "S"), ("sk", "N")],
        writer,
        promote={"status": "STRING", "amount": "NUMERIC"},
    )
    environ = {
        **_environ(bigquery, config),
        "PATH": os.defpath,
        "LC_ALL": "C.UTF-8",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "DDB2BQ_COLUMNS_PROMOTE": "status,amount",
        "DDB2BQ_COLUMNS_TYPES": json.dumps({"status": "STRING", "amount": "NUMERIC"}),
    }
    with tempfile.TemporaryDirectory(prefix="ddb2bq-bench-") as work:
        event = Path(work) / "event.json"
        event.write_text(json.dumps(make_event(1000)), encoding="utf-8")
        code = STEADY_CHILD.format(
            path=[str(task), str(runtime)],
            sample=SAMPLE_EVENT.read_text(),
            event=str(event),
            rounds=rounds,
        )
        _, output = _run_child(code, environ)
    if not output:
        raise SystemExit("the steady-state child answered nothing")
    found = json.loads(output)
    print(
        f"\n(c) a warm container, {writer}: {rounds} invocations of 1,000 records of each kind, "
        "taking turns; the handler thread's CPU ms per invocation (median; min in brackets),\n"
        "    the runtime's json.loads of the event included; full collections per invocation; "
        f"{found['tracked']:,} objects tracked in all"
    )
    for mode, runs in found["results"].items():
        cpus = [cpu * 1000 for cpu, _, _ in runs]
        collecting = statistics.median(gc_s * 1000 for _, gc_s, _ in runs)
        full = statistics.mean(n for _, _, n in runs)
        print(
            f"    {mode:11s} {statistics.median(cpus):7.1f}  [{min(cpus):6.1f}]   of which garbage "
            f"collection {collecting:5.1f}; full collections {full:.1f}"
        )


def make_event(count: int, seed: int = 7) -> dict[str, Any]:
    """A Lambda event of ``count`` realistic order changes (INSERT/MODIFY/REMOVE mix)."""
    rng = random.Random(seed)
    records = []
    for number in range(count):
        keys = {"pk": {"S": f"customer#{rng.randrange(500)}"}, "sk": {"N": str(number)}}
        image = {
            **keys,
            "status": {"S": rng.choice(["NEW", "PAID", "SHIPPED"])},
            "amount": {"N": f"{rng.randrange(10**7)}.{rng.randrange(100):02d}"},
            "currency": {"S": "EUR"},
            "customer": {"M": {"name": {"S": "Zoë Example"}, "tier": {"N": "2"}}},
            "lines": {
                "L": [{"M": {"sku": {"S": f"sku-{i}"}, "qty": {"N": str(i + 1)}}} for i in range(3)]
            },
            "tags": {"SS": ["gift", "express"]},
            "paid": {"BOOL": True},
            "receipt": {"B": base64.b64encode(rng.randbytes(24)).decode()},
            "updated_at": {"N": str(1_700_000_000 + number)},
        }
        op = ("INSERT", "MODIFY", "MODIFY", "REMOVE")[number % 4]
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": 1_700_000_000 + number,
            "Keys": keys,
            "SequenceNumber": str(10**20 + number),
            "SizeBytes": 400,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if op != "REMOVE":
            body["NewImage"] = image
        if op != "INSERT":
            body["OldImage"] = image
        records.append(
            {
                "eventID": f"e{number}",
                "eventName": op,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "eu-west-1",
                "eventSourceARN": STREAM_ARN,
                "dynamodb": body,
            }
        )
    return {"Records": records}


def _line(index: int) -> dict[str, Any]:
    return {"M": {"sku": {"S": f"sku-{index}"}, "qty": {"N": str(index + 1)}}}


def _record(event_id: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventID": event_id,
        "eventName": op,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "eventSourceARN": STREAM_ARN,
        "dynamodb": body,
    }


# --- setup -------------------------------------------------------------------------------------


def _prepare(work: Path, built: Path | None) -> tuple[Path, Path]:
    """The unpacked zip (built for this machine and Python unless given) and a boto3 folder."""
    if built is None:
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        result = build_package(PackageSpec("x86_64", python, work / "ddb2bq-lambda.zip"))
        built = result.path
        converter = result.converter
        print(
            f"built {built} ({built.stat().st_size / 1e6:.1f} MB), "
            + (
                "the compiled converter"
                if converter.compiled
                else f"the pure-Python converter ({converter.why_pure})"
            )
        )
    task = work / "task"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(task)
    runtime = work / "runtime"
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, runtime / name)
        else:
            runtime.mkdir(exist_ok=True)
            shutil.copyfile(origin, runtime / origin.name)
    return task, runtime


def _environ(bigquery: Server, config: Config) -> dict[str, str]:
    return {
        "DDB2BQ_SOURCE_TABLE": config.source.table,
        "DDB2BQ_TARGET_PROJECT": PROJECT,
        "DDB2BQ_TARGET_DATASET": config.target.dataset,
        "DDB2BQ_TARGET_ENDPOINT": bigquery.endpoint,
        "DDB2BQ_TARGET_GRPC_ENDPOINT": bigquery.grpc_endpoint,
        "DDB2BQ_TARGET_WRITER": config.target.writer,
        "DDB2BQ_DEAD_LETTERS_PATH": tempfile.gettempdir() + "/ddb2bq-bench-dead-letters",
    }


def _init_tables(
    bigquery: Server,
    table: str,
    key_schema: list[tuple[str, str]],
    writer: str,
    promote: dict[str, str] | None = None,
) -> Config:
    from ddb2bq.bigquery.clients import bigquery_client  # noqa: PLC0415
    from ddb2bq.bigquery.tables import init_tables, initial_layout  # noqa: PLC0415

    environ = {
        "DDB2BQ_SOURCE_TABLE": table,
        "DDB2BQ_TARGET_PROJECT": PROJECT,
        "DDB2BQ_TARGET_DATASET": "bench",
        "DDB2BQ_TARGET_ENDPOINT": bigquery.endpoint,
        "DDB2BQ_TARGET_GRPC_ENDPOINT": bigquery.grpc_endpoint,
        "DDB2BQ_TARGET_WRITER": writer,
    }
    if promote:
        environ["DDB2BQ_COLUMNS_PROMOTE"] = ",".join(promote)
        environ["DDB2BQ_COLUMNS_TYPES"] = json.dumps(promote)
    config = load_config(environ=environ)
    client = bigquery_client(config)
    init_tables(client, config, initial_layout(config, key_schema))
    client.close()
    return config


if __name__ == "__main__":
    main()
