"""Backfill benchmark: items/s of ``ddb2bq backfill`` (Scan, export) against the obvious approach.

One run starts moto (DynamoDB, S3) and local-bigquery, fills a table of ``--items`` items (default
20,000; 14 attributes of every type, two levels of nesting) with point-in-time recovery on, then
runs three phases, each in a fresh child process, into a fresh dataset made by ``ddb2bq init``
(view mirror: nothing to refresh after a backfill; a merge mirror's MERGE would cost both the same):

- ``obvious``: one Scan (no segments, no Limit: 1 MB pages), each item through boto3's
  ``TypeDeserializer`` and ``json.dumps`` into a changelog row (keys, promoted columns, ``item``),
  sent by the google-cloud-bigquery client's ``insert_rows_json`` 500 rows at a time, its row
  errors checked. boto3's deserializer, not ddb2bq's row builder: the job one writes by hand.
- ``scan``: what ``ddb2bq backfill [--segments S] [--workers W]`` runs (``backfill_from_config(...)
  .scan()``, pages of 1,000), in process so that its parts can be timed.
- ``export``: what ``ddb2bq backfill --export s3://...`` runs: ``start_export`` (polled every 0.1 s,
  not the CLI's 10 s), ``data_files``, ``read_lines``, ``.export()``.

items/s = items / the phase's wall time, clients built to last row loaded (imports excluded: what
ddb2bq imports at first use is imported up front). Each changelog is counted afterwards: rows and
distinct keys must both equal the items. The split: "Scan in flight" is wall time with a Scan call
outstanding (moto, the wire and boto3's parsing, "boto3 CPU" this process's share), "load job" the
spool file's upload and the wait for its job; moto/BQ CPU is what the servers' processes used
meanwhile. Peak memory: "tree" is the largest sum of RSS of the phase's process, its forkserver and
its workers (sampled every 50 ms from /proc), "main" the phase's process's ``ru_maxrss``; both
include ~100 MB of imported libraries. "load" is the 1-minute load average as the phase ends: on a
shared machine others take cores from moto too.

``--verify`` is the scale check the test suite leaves to this bench (tests/integration/
test_backfill.py runs it at 2,000 items): after the Scan and the export phase, untimed,
``ddb2bq verify --segments 1 --recheck-after 0`` compares each dataset's mirror with the table
item by item, and the run fails unless both report zero differences.

Run from the repository root (needs scripts/setup's emulator)::

    .venv/bin/python bench/backfill.py                          # 20,000 items, a few minutes
    .venv/bin/python bench/backfill.py --verify                 # and verified: ~2 minutes more
    .venv/bin/python bench/backfill.py --items 5000 --segments 4 --workers 2
    .venv/bin/python bench/backfill.py --dry --items 300        # no server: NOT a measurement

``--dry`` runs the three phases on moto's in-process mock and a BigQuery stand-in that keeps the
rows' event ids (no server, no network): it shows the bench is wired up, and measures nothing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import orjson
from boto3.dynamodb.types import Binary, TypeDeserializer
from google.cloud import bigquery as _bigquery  # noqa: F401 (ddb2bq imports it at first use)

from ddb2bq.backfill import export as exports
from ddb2bq.backfill.build import backfill_from_config
from ddb2bq.backfill.loading import Loader
from ddb2bq.backfill.run import BackfillOptions
from ddb2bq.bigquery import factory as _factory  # noqa: F401 (as _bigquery)
from ddb2bq.bigquery.clients import bigquery_client
from ddb2bq.bigquery.tables import TableRefs, initial_layout
from ddb2bq.cli import main as ddb2bq_cli
from ddb2bq.config import load_config
from ddb2bq.contract import WriteResult
from ddb2bq.dead_letters import stores as _stores  # noqa: F401 (as _bigquery)
from ddb2bq.dead_letters.local import LocalDeadLetters
from ddb2bq.dynamodb.connect import dynamodb_client, s3_client
from ddb2bq.local import REGION, local_servers
from ddb2bq.pipeline import Pipeline

PROJECT, TABLE, BUCKET = "bench-project", "orders", "bench-exports"
KEYS = [("pk", "S"), ("sk", "N")]
PROMOTE = {"status": "STRING", "amount": "NUMERIC"}
SEQ = "/".join(["0" * 16] * 4)
PHASES = {
    "obvious": "obvious: 1 Scan, insert_rows_json x500",
    "scan": "ddb2bq backfill (Scan)",
    "export": "ddb2bq backfill --export",
}
CHILD = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import backfill; backfill.main()"
"""A phase's process: no ``__main__`` file, so that the backfill's workers (the forkserver re-runs
``__main__``'s imports in each) import what they need, not this module's Google and AWS clients."""
PAGE, TICKS = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")


def item(n: int) -> dict[str, Any]:
    """Item ``n`` as boto3 reads it (binary as bytes): every type, exact decimals, a 31-digit
    number (past float and int64), a map in a map, a list of a map and a string."""
    return {
        "pk": {"S": f"customer#{n % 1000:04d}"},
        "sk": {"N": str(n)},
        "status": {"S": ("NEW", "PAID", "SHIPPED")[n % 3]},
        "amount": {"N": f"{n % 99_991}.{n % 89 + 10}"},
        "ledger": {"N": str(10**30 + n)},
        "email": {"S": f"user{n}@example.com"},
        "active": {"BOOL": n % 2 == 0},
        "coupon": {"NULL": True},
        "tags": {"SS": ["gift", f"t{n % 10}"]},
        "scores": {"NS": ["1", "2.5", str(n % 100 + 3)]},
        "avatar": {"B": n.to_bytes(4, "big") * 6},
        "thumbs": {"BS": [b"\x01\x02", bytes([n % 256])]},
        "address": {"M": {"city": {"S": "Zürich"}, "geo": {"M": {"lat": {"N": "47.37"}}}}},
        "lines": {"L": [{"M": {"sku": {"S": f"sku-{n % 50}"}, "qty": {"N": "2"}}}, {"S": "x"}]},
    }


# --- the phases, each in a child process ------------------------------------------------------


class Spans:
    """Wall-clock spans and thread CPU of wrapped calls, from any thread (appends are atomic)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.cpu: list[float] = []

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            begun, cpu = time.perf_counter(), time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.spans.append((begun, time.perf_counter()))
                self.cpu.append(time.thread_time() - cpu)

        return timed

    def total(self) -> float:
        return sum(end - begun for begun, end in self.spans)

    def in_flight(self) -> float:
        """Wall time with at least one call outstanding (the union of the spans)."""
        covered, reach = 0.0, float("-inf")
        for begun, end in sorted(self.spans):
            covered += max(0.0, end - max(begun, reach))
            reach = max(reach, end)
        return covered


class Timed:
    """``inner`` with its ``name`` calls timed into ``spans``."""

    def __init__(self, inner: Any, name: str, spans: Spans) -> None:
        self._inner = inner
        setattr(self, name, spans.wrap(getattr(inner, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def obvious(args: argparse.Namespace) -> dict[str, Any]:
    started, scans, inserts = time.perf_counter(), Spans(), Spans()
    config, extra = load_config(args.work / "ddb2bq.toml"), _dry(args)
    scan = scans.wrap(dynamodb_client(config).scan)
    client = extra.get("client") or bigquery_client(config)
    insert, table = inserts.wrap(client.insert_rows_json), TableRefs.from_config(config).changes
    deserialize, now = TypeDeserializer().deserialize, datetime.now(UTC).isoformat()
    request: dict[str, Any] = {"TableName": TABLE}
    rows: list[dict[str, Any]] = []
    while True:
        page = scan(**request)
        for found in page["Items"]:
            value = {name: deserialize(v) for name, v in found.items()}
            pk, sk, status, amount = (value[k] for k in ("pk", "sk", "status", "amount"))
            rows.append({"event_id": f"{pk}|{sk}", "op": "SNAPSHOT", "seq": SEQ, "changed_at": now,
                         "pk": pk, "sk": int(sk), "status": status, "amount": str(amount),
                         "item": json.dumps(value, default=_plain)})  # fmt: skip
        more = "LastEvaluatedKey" in page
        while len(rows) >= 500 or (rows and not more):
            if errors := insert(table.api, rows[:500]):
                raise SystemExit(f"BigQuery refused rows of the baseline: {errors[:2]}")
            del rows[:500]
        if not more:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    wall = time.perf_counter() - started
    parts = {"Scan calls": scans.total(), "boto3 CPU in them": sum(scans.cpu)}
    parts |= {"insert_rows_json": inserts.total()}
    parts["converting"] = wall - scans.total() - inserts.total()
    return _figures(wall, parts, extra)


def _plain(value: Any) -> Any:
    """The baseline's ``json.dumps`` default: what TypeDeserializer returns, as JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode()
    if isinstance(value, set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def backfill(args: argparse.Namespace) -> dict[str, Any]:
    started = exported = time.perf_counter()
    config, extra = load_config(args.work / "ddb2bq.toml"), _dry(args)
    scans, loads = Spans(), Spans()
    Loader.load = loads.wrap(Loader.load)  # type: ignore[method-assign]  # in this process only
    dynamodb = dynamodb_client(config)
    options = BackfillOptions(segments=args.segments, workers=args.workers)
    run = backfill_from_config(config, options, dynamodb=Timed(dynamodb, "scan", scans),
                               spool_dir=args.work / "spool", **extra)  # fmt: skip
    if args.phase == "scan":
        report = run.scan()
    else:
        s3 = s3_client(config)
        location, run.taken_at_us = exports.start_export(
            dynamodb, s3, TABLE, BUCKET, "bench", poll_s=0.1, report=lambda _: None
        )
        exported = time.perf_counter()
        report = run.export(exports.data_files(s3, location), exports.read_lines(s3, BUCKET))
    wall = time.perf_counter() - started
    assert report.complete, report
    assert report.items == args.items, report
    if args.phase == "scan":
        parts = {"Scan in flight": scans.in_flight(), "sum of Scan calls": scans.total()}
        parts |= {"boto3 CPU in them": sum(scans.cpu), "load job": loads.total()}
        parts["the rest"] = wall - scans.in_flight() - loads.total()
    else:
        parts = {"export (moto writes it)": exported - started, "load job": loads.total()}
        parts["reading + converting"] = wall - sum(parts.values())
    return _figures(wall, parts, extra)


def _figures(wall: float, parts: dict[str, float], extra: dict[str, Any]) -> dict[str, Any]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ids = extra["client"].event_ids if "client" in extra else None
    dry_rows = None if ids is None else (len(ids), len(set(ids)))
    return {"wall": wall, "parts": parts, "main_bytes": rss, "dry_rows": dry_rows}


def _dry(args: argparse.Namespace) -> dict[str, Any]:
    """``--dry``: an in-memory BigQuery client and a pipeline that writes to it (none: real)."""
    if not args.dry:
        return {}
    config = load_config(args.work / "ddb2bq.toml")
    letters = LocalDeadLetters(args.work / "dead-letters")
    pipeline = Pipeline(config, initial_layout(config, KEYS), lambda _: DryBigQuery(), letters)
    return {"client": DryBigQuery(), "pipeline": pipeline}


class DryBigQuery:
    """``--dry``'s BigQuery (and pipeline writer): keeps the event ids of the rows it is sent."""

    project = PROJECT

    def __init__(self) -> None:
        self.event_ids: list[str] = []

    def insert_rows_json(self, table: str, rows: list[Any]) -> list[Any]:
        self.event_ids += [row["event_id"] for row in rows]
        return []

    def load_table_from_file(self, handle: Any, table: str, **_: Any) -> DryBigQuery:
        self.event_ids += [orjson.loads(line)["event_id"] for line in handle if line.strip()]
        return self

    def result(self, **_: Any) -> None:
        return None

    def write(self, batch: Any) -> WriteResult:
        return WriteResult(written=len(batch))


def _fill(client: Callable[[str], Any], count: int) -> None:
    """The table of ``count`` items, with point-in-time recovery on, and the exports' bucket."""
    dynamodb, schema = client("dynamodb"), [("pk", "HASH"), ("sk", "RANGE")]
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in schema],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in KEYS],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, count, 25):
        puts = [{"PutRequest": {"Item": item(n)}} for n in range(start, min(count, start + 25))]
        dynamodb.batch_write_item(RequestItems={TABLE: puts})
    on = {"PointInTimeRecoveryEnabled": True}
    dynamodb.update_continuous_backups(TableName=TABLE, PointInTimeRecoverySpecification=on)
    client("s3").create_bucket(Bucket=BUCKET)


# --- the parent: servers, the table, a child per phase, the check, the table of figures -------


def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    if args.dry:
        return {name: _child(args, name, _configure(work / name), []) for name in PHASES}
    with local_servers(PROJECT) as servers:
        os.environ.update(servers.environment())
        endpoint = servers.moto.endpoint
        _fill(lambda s: boto3.client(s, endpoint_url=endpoint, region_name=REGION), args.items)
        results = {}
        for name in PHASES:
            folder = _configure(work / name)
            with contextlib.redirect_stdout(sys.stderr):
                assert ddb2bq_cli(["init", "--config", str(folder / "ddb2bq.toml")]) == 0
            results[name] = _child(args, name, folder, [servers.moto, servers.bigquery])
            results[name]["rows"], results[name]["keys"] = _count(folder)
            if args.verify and name != "obvious":  # the baseline's rows are not ddb2bq's
                results[name]["verify"] = _verify(folder)
        return results


def _configure(folder: Path) -> Path:
    folder.mkdir(parents=True)
    types = ", ".join(f'{a} = "{t}"' for a, t in PROMOTE.items())
    (folder / "ddb2bq.toml").write_text(
        f'[source]\ntable = "{TABLE}"\nregion = "{REGION}"\n[target]\nproject = "{PROJECT}"\n'
        f'dataset = "bench_{uuid.uuid4().hex[:8]}"\nmirror = "view"\nwriter = "insert_all"\n'
        f"[columns]\npromote = {json.dumps(list(PROMOTE))}\ntypes = {{ {types} }}\n"
        f'[dead_letters]\npath = "{folder / "dead-letters"}"\n'
        f'[runner]\ncheckpoints = "{folder / "state.sqlite"}"\n'
    )
    return folder


def _child(args: argparse.Namespace, name: str, folder: Path, servers: list[Any]) -> dict[str, Any]:
    command = [sys.executable, "-c", CHILD, "--phase", name, "--work", str(folder)]
    command += ["--items", str(args.items), *(["--dry"] if args.dry else [])]
    command += [f"--{o}={getattr(args, o)}" for o in ("segments", "workers") if getattr(args, o)]
    cpu = [_tree_cpu(s.process.pid) for s in servers]
    child, peak = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=folder), 0
    while child.poll() is None:  # it prints one short line as it ends: the pipe never fills
        procs = _procs()
        peak = max(peak, sum(procs[p][1] for p in _tree(child.pid, procs)))
        time.sleep(0.05)
    assert child.stdout is not None
    if child.returncode != 0:
        raise SystemExit(f"The {name} phase failed (exit code {child.returncode}).")
    figures: dict[str, Any] = json.loads(child.stdout.read())
    after = [_tree_cpu(s.process.pid) for s in servers]
    figures["server_cpu"] = [a - b for a, b in zip(after, cpu, strict=True)]
    figures["rows"], figures["keys"] = figures["dry_rows"] or (None, None)
    return {**figures, "tree_bytes": peak, "load": os.getloadavg()[0]}


def _procs() -> dict[int, tuple[int, int, float]]:
    """Every process now: pid -> (parent pid, RSS bytes, CPU seconds)."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / TICKS
                table[int(entry.name)] = (int(fields[1]), int(fields[21]) * PAGE, cpu)
    return table


def _tree(root: int, procs: dict[int, tuple[int, int, float]]) -> Iterator[int]:
    yield from [root] if root in procs else []
    for pid, (parent, _, _) in procs.items():
        if parent == root:
            yield from _tree(pid, procs)


def _tree_cpu(root: int) -> float:
    procs = _procs()
    return sum(procs[pid][2] for pid in _tree(root, procs))


def _verify(folder: Path) -> tuple[bool, str]:
    """Whether ``ddb2bq verify`` found the phase's mirror equal to the table, and its summary."""
    out = io.StringIO()
    command = ["verify", "--config", str(folder / "ddb2bq.toml"), "--segments", "1"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(sys.stderr):
        code = ddb2bq_cli([*command, "--recheck-after", "0"])
    return code == 0, (out.getvalue().splitlines() or [f"nothing printed, exit code {code}"])[0]


def _count(folder: Path) -> tuple[int, int]:
    config = load_config(folder / "ddb2bq.toml")
    keys = "COUNT(DISTINCT CONCAT(pk, '|', CAST(sk AS STRING)))"
    sql = f"SELECT COUNT(*) AS n, {keys} AS k FROM {TableRefs.from_config(config).changes.sql}"
    (row,) = bigquery_client(config).query(sql).result(timeout=120)
    return int(row["n"]), int(row["k"])


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], load: str) -> str:
    where = "moto + local-bigquery"
    if args.dry:
        where = "moto's mock and a row counter: --dry, NOT a measurement"
    lines = [
        f"{args.items:,} items, {where}; {os.cpu_count()} cores (load average {load}), segments "
        f"{args.segments or 'default'}, workers {args.workers or 'default (every core)'}",
        f"{'phase':<40}{'items/s':>9}{'wall s':>8}{'moto CPU s':>11}{'BQ CPU s':>9}"
        f"{'peak MB tree':>13}{'main':>6}{'load':>6}",
    ]
    for name, label in PHASES.items():
        f = results[name]
        cpu = [f"{c:.1f}" for c in f["server_cpu"]] or ["-", "-"]
        lines.append(f"{label:<40}{args.items / f['wall']:>9,.0f}{f['wall']:>8.1f}{cpu[0]:>11}"
                     f"{cpu[1]:>9}{f['tree_bytes'] / 1e6:>13.0f}{f['main_bytes'] / 1e6:>6.0f}{f['load']:>6.1f}")  # fmt: skip
    base = results["obvious"]["wall"]
    lines.append(
        f"ratio Scan / obvious = {base / results['scan']['wall']:.2f}x (target 3x), "
        f"export / obvious = {base / results['export']['wall']:.2f}x (target 5x)"
    )
    for name, label in PHASES.items():
        parts = ", ".join(f"{k} {v:.1f}" for k, v in results[name]["parts"].items())
        lines.append(f"  {label} (s): {parts}")
    verified = {n: results[n]["verify"] for n in PHASES if "verify" in results[n]}
    for name, (equal, line) in verified.items():
        lines.append(f"verify after {PHASES[name]}: {line} -> {'ok' if equal else 'WRONG'}")
    checks = [(results[n]["rows"], results[n]["keys"]) for n in PHASES]
    ok = all(c == (args.items, args.items) for c in checks)
    ok = ok and all(equal for equal, _ in verified.values())
    lines.append(f"changelog rows, distinct keys: {checks} -> {'ok' if ok else 'WRONG'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=20_000, help="items in the table")
    parser.add_argument("--segments", type=int, help="Scan segments (default: the CLI's)")
    parser.add_argument("--workers", type=int, help="converting processes (default: the CLI's)")
    parser.add_argument("--dry", action="store_true", help="moto's mock, no BigQuery: no figures")
    parser.add_argument(
        "--verify", action="store_true", help="then `ddb2bq verify` the Scan's and export's mirrors"
    )
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.verify and args.dry:
        parser.error("--verify needs the servers: it cannot run with --dry")
    if args.phase:
        print(json.dumps(_phase(args)))
        return 0
    started, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ddb2bq-bench-backfill-") as work:
        results = measure(args, Path(work))
    text = report(args, results, f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"{text}\n(bench wall time {time.perf_counter() - started:.0f} s)")
    return 0 if text.endswith("-> ok") else 1


def _phase(args: argparse.Namespace) -> dict[str, Any]:
    run = obvious if args.phase == "obvious" else backfill
    if not args.dry:
        return run(args)
    from moto import mock_aws  # noqa: PLC0415 (a development tool, for --dry only)

    with mock_aws():
        _fill(lambda s: boto3.client(s, region_name=REGION), args.items)
        return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
