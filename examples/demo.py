"""The local end-to-end demo: DynamoDB (moto) -> its stream -> ``ddb2bq run`` -> BigQuery.

Run it with ``scripts/demo`` (which sets everything up first). Against local stand-ins of both
clouds on 127.0.0.1 it does what a user does with the real ones:

1. creates a table, turns its stream on (``ddb2bq enable-stream``), creates the changelog and
   the mirror in BigQuery (``ddb2bq init``);
2. starts ``ddb2bq run`` in a process of its own and, while it replicates, writes a few thousand
   changes: batches of inserts of items holding every DynamoDB type (extreme numbers too),
   UpdateItem calls, batches of deletes. Two thirds of the way it stops the runner with SIGTERM
   (a clean stop: exit 0 after the batch in hand) and writes on;
3. restarts it with ``ddb2bq run --until-caught-up`` (it resumes after its checkpoint and exits
   once everything written is in BigQuery), then shows ``ddb2bq status``;
4. prints what landed (counts, a few mirror rows, the lag) and checks that the mirror equals the
   table (each key once, every value exact to the last digit and byte) and that the changelog
   holds every change written, once, in order; exit code 1 when not.

One writer, not several: moto numbers the stream records of concurrent writes racily (two can
share a sequence number; DynamoDB never does that). Files: ``.cache/demo`` (the configuration,
this run's endpoints in ``env``, the runner's checkpoints and ``runner.log``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ddb2bq.bigquery.clients import bigquery_client
from ddb2bq.config import load_config
from ddb2bq.convert import plain_item
from ddb2bq.local import REGION, local_servers
from ddb2bq.records import encode_binary

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "demo"
CONFIG, RUNNER_LOG, ENV_FILE = WORK / "ddb2bq.toml", WORK / "runner.log", WORK / "env"
PROJECT, DATASET, TABLE = "demo-project", "dynamodb", "orders"
Key = tuple[str, int]  # (pk, sk)
EXTREMES = (  # DynamoDB's limits: 38 significant digits, magnitudes from 1E-130 to 9.99...E+125
    "9.9999999999999999999999999999999999999E+125", "-9.9999999999999999999999999999999999999E+125",
    "1E-130", "-1E-130", "12345678901234567890123456789012345678",
    "1234567895171680000000000000000000000000", "0.10000000000000000000000000000000000001",
)  # fmt: skip
NAMES = ("Zoë Ångström ✓", "Ada", "Grace", "李小龍", "O'Brien; DROP TABLE", "")
UPDATES = (  # UpdateItem expressions, one drawn per call; #name stands for the attribute `name`
    ("SET #status = :shipped, #total = #total + :cent", {":shipped": {"S": "shipped"}, ":cent": {"N": "0.01"}}),
    ("ADD #tags :vip, #visits :one", {":vip": {"SS": ["vip"]}, ":one": {"N": "1"}}),
    ("SET #lines = list_append(if_not_exists(#lines, :none), :line)", {":none": {"L": []}, ":line": {"L": [{"S": "gift wrap"}]}}),
    ("SET #extreme = :x, #paid = :yes REMOVE #coupon", {":x": {"N": EXTREMES[0]}, ":yes": {"BOOL": True}}),
    ("SET #receipt = :b, #sizes = :ns", {":b": {"B": b"\xff\x00v2"}, ":ns": {"NS": ["1E-130", "7"]}}),
)  # fmt: skip
CONFIG_TEXT = """\
# Written by examples/demo.py; the servers' endpoints are in the environment: . .cache/demo/env
[source]
table = "{table}"

[target]
dataset = "{dataset}"
mirror = "view"

[columns]
promote = ["customer", "status", "total"]
types = {{ total = "NUMERIC" }}

[dead_letters]
path = "{work}/dead-letters"

[runner]
checkpoints = "{work}/state.sqlite"
report_interval = 0.5
"""
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--changes", type=int, default=3000, help="how many changes to write (in rounds of 40)"
    )
    changes = max(100, parser.parse_args().changes)
    began = time.monotonic()
    console.print("Starting moto (DynamoDB + Streams) and local-bigquery on 127.0.0.1 ...")
    with local_servers(PROJECT) as servers:
        prepare(servers.environment())
        dynamodb = boto3.client("dynamodb", endpoint_url=servers.moto.endpoint, region_name=REGION)
        create_source_table(dynamodb)
        ddb2bq("enable-stream")
        ddb2bq("init")
        writer = Writer(dynamodb)
        replicate_while_writing(writer, changes)
        restarted_at = catch_up()
        ddb2bq("status")
        landed = read_back(dynamodb)
        show_landed(writer, landed)
        show_lag(landed.changelog, restarted_at)
        code = verify(writer, landed)
        console.print(f"\nThe demo took {time.monotonic() - began:.0f} s.")
        show_commands(keep=console.is_terminal and sys.stdin.isatty())
    return code


def prepare(environment: dict[str, str]) -> None:
    """A fresh .cache/demo with the configuration and the endpoints, also set for our children."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    CONFIG.write_text(CONFIG_TEXT.format(table=TABLE, dataset=DATASET, work=WORK), "utf-8")
    exports = (f"export {name}={shlex.quote(value)}\n" for name, value in environment.items())
    ENV_FILE.write_text("".join(exports), "utf-8")
    os.environ.update(environment)


def command(*args: str) -> list[str]:
    """The argv of ``ddb2bq ARGS --config .cache/demo/ddb2bq.toml``."""
    return [sys.executable, "-m", "ddb2bq.cli", *args, "--config", str(CONFIG)]


def ddb2bq(*args: str, stderr: Any = None) -> None:
    """Run one ddb2bq command as a user would, in a process of its own; stop if it fails."""
    console.print(f"\n[bold]$ ddb2bq {' '.join(args)} --config {CONFIG.relative_to(ROOT)}[/]")
    sys.stdout.flush()
    code = subprocess.run(command(*args), stderr=stderr, check=False).returncode
    if code != 0:
        raise SystemExit(f"ddb2bq {' '.join(args)} failed with exit code {code}.")


def create_source_table(dynamodb: Any) -> None:
    console.print(f"\nCreating the DynamoDB table {TABLE!r} (keys: pk string, sk number) ...")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip


class Writer:
    """Rounds of changes (seeded: every run alike): a BatchWriteItem of 20 inserts, 12 UpdateItem
    calls, a BatchWriteItem of 8 deletes. ``history`` keeps each key's changes as the stream names
    them, for the final check."""

    def __init__(self, dynamodb: Any) -> None:
        self.dynamodb = dynamodb
        self.rng = random.Random(2024)
        self.live: list[dict[str, Any]] = []
        self.history: dict[Key, list[str]] = {}

    def write(self, changes: int) -> Iterator[int]:
        """Write ``changes`` changes (in whole rounds); yields how many so far, at each request."""
        done = 0
        while done < changes:
            done += self.insert(20)
            yield done
            for _ in range(12):
                done += self.update()
                yield done
            done += self.delete(8)
            yield done

    def insert(self, count: int) -> int:
        items = [new_item(len(self.history) + i, self.rng) for i in range(count)]
        self.batch([{"PutRequest": {"Item": item}} for item in items])
        for item in items:
            self.live.append({"pk": item["pk"], "sk": item["sk"]})
            self.history[_key_of(item)] = ["INSERT"]
        return count

    def update(self) -> int:
        expression, values = self.rng.choice(UPDATES)
        key = self.rng.choice(self.live)
        self.dynamodb.update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression=expression,
            ExpressionAttributeNames={f"#{n}": n for n in re.findall(r"#(\w+)", expression)},
            ExpressionAttributeValues=values,
        )
        self.history[_key_of(key)].append("MODIFY")
        return 1

    def delete(self, count: int) -> int:
        keys = [self.live.pop(self.rng.randrange(len(self.live))) for _ in range(count)]
        self.batch([{"DeleteRequest": {"Key": key}} for key in keys])
        for key in keys:
            self.history[_key_of(key)].append("REMOVE")
        return count

    def batch(self, requests: list[dict[str, Any]]) -> None:
        while requests:  # what DynamoDB leaves unprocessed (throttled) is sent again
            answer = self.dynamodb.batch_write_item(RequestItems={TABLE: requests})
            requests = answer.get("UnprocessedItems", {}).get(TABLE, [])


def new_item(n: int, rng: random.Random) -> dict[str, Any]:
    """An order; every fourth one holds every DynamoDB type: S, N, B, BOOL, NULL, SS, NS, BS, M, L
    (the others are smaller: moto serves small items faster)."""
    order = {
        "pk": {"S": f"customer#{n % 40:02d}"},
        "sk": {"N": str(1000 + n)},
        "customer": {"S": NAMES[n % len(NAMES)]},
        "status": {"S": "new"},
        "total": {"N": f"{rng.randrange(1, 5000)}.{rng.randrange(100):02d}"},
        "extreme": {"N": EXTREMES[n % len(EXTREMES)]},
        "paid": {"BOOL": n % 3 == 0},
    }
    if n % 4:
        return order
    return order | {
        "coupon": {"NULL": True},
        "receipt": {"B": b"\x00PDF" + n.to_bytes(4, "big")},
        "tags": {"SS": ["gift", f"batch-{n % 7}"]},
        "sizes": {"NS": ["42", "-0.5", EXTREMES[(n + 1) % len(EXTREMES)]]},
        "chunks": {"BS": [b"\x00", bytes([n % 256, 255])]},
        "address": {"M": {"city": {"S": "Zürich"}, "geo": {"L": [{"N": "47.3769"}, {"N": "8.5417"}]}}},
        "lines": {"L": [{"M": {"sku": {"S": f"A-{n}"}, "qty": {"N": str(n % 5 + 1)}}}, {"S": ""}]},
    }  # fmt: skip


def replicate_while_writing(writer: Writer, changes: int) -> None:
    """Write while ``ddb2bq run`` replicates, and stop it with SIGTERM two thirds of the way."""
    console.print(f"\n[bold]$ ddb2bq run --config {CONFIG.relative_to(ROOT)} &[/]")
    with RUNNER_LOG.open("ab") as log:
        runner = subprocess.Popen(command("run"), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_until_replicating(runner)
        console.print(f"It replicates (pid {runner.pid}, log {RUNNER_LOG.relative_to(ROOT)}).")
        stopped = False
        progress = WriteProgress(changes)
        with progress.bars or contextlib.nullcontext():
            for done in writer.write(changes):
                if not stopped and done >= changes * 2 // 3:
                    runner.send_signal(signal.SIGTERM)
                    stopped = True
                    progress.note(f"{done:,} written: SIGTERM to ddb2bq run; writing on")
                elif not stopped and runner.poll() is not None:
                    raise SystemExit(f"ddb2bq run stopped on its own; see {RUNNER_LOG}.")
                progress.update(done, last=done >= changes)
        code = runner.wait(timeout=60)
    finally:
        if runner.poll() is None:  # the demo failed or was interrupted: stop it now (safe)
            runner.kill()
            runner.wait()
    console.print(f"ddb2bq run exited with code {code}: {last_line(RUNNER_LOG)}")
    if code != 0:
        raise SystemExit(f"ddb2bq run did not stop cleanly (exit code {code}); see {RUNNER_LOG}.")


def catch_up() -> float:
    """``ddb2bq run --until-caught-up``: its live table on a terminal, else its log to the file.
    Returns when it started."""
    started = time.time()
    if console.is_terminal:
        ddb2bq("run", "--until-caught-up")
    else:
        with RUNNER_LOG.open("ab") as log:
            ddb2bq("run", "--until-caught-up", stderr=log)
        console.print(last_line(RUNNER_LOG))
    console.print(f"Caught up {time.time() - started:.1f} s after the restart.")
    return started


def wait_until_replicating(runner: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the runner holds the lease and has listed the shards (its log says so)."""
    deadline = time.monotonic() + timeout
    while b"Replicating" not in RUNNER_LOG.read_bytes():
        if runner.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"ddb2bq run did not start; see {RUNNER_LOG}: {last_line(RUNNER_LOG)}")
        time.sleep(0.1)


class WriteProgress:
    """Changes written to DynamoDB, and those the runner has written to BigQuery (from its log):
    rich bars on a terminal, a plain line every tenth of the way otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.tenths, self.next_draw = total, 0, 0.0
        self.bars: Progress | None = None
        if console.is_terminal:
            columns = (TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn())
            self.bars = Progress(*columns, TimeElapsedColumn(), console=console)
            self.written = self.bars.add_task("written to DynamoDB", total=total)
            self.replicated = self.bars.add_task("replicated by ddb2bq run", total=total)

    def update(self, written: int, *, last: bool = False) -> None:
        if self.bars is not None and (last or time.monotonic() >= self.next_draw):
            self.bars.update(self.written, completed=written)
            self.bars.update(self.replicated, completed=replicated_by_runner())
            self.next_draw = time.monotonic() + 0.1
        elif self.bars is None and written * 10 // self.total > self.tenths:
            self.tenths = written * 10 // self.total
            replicated = replicated_by_runner()
            console.print(f"  {written:>6,} written to DynamoDB, {replicated:>6,} replicated")

    def note(self, text: str) -> None:
        console.print(f"  [yellow]{text}[/]")


def replicated_by_runner() -> int:
    """Changes the runner has written, from its last progress line (JSON, every 0.5 s)."""
    written = 0
    for line in RUNNER_LOG.read_bytes().splitlines()[-20:]:
        if line.startswith(b"{") and b'"written"' in line:
            written = int(orjson.loads(line)["written"])
    return written


def last_line(path: Path) -> str:
    lines = path.read_text("utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(nothing)"


@dataclass(frozen=True)
class Landed:
    """The table, the mirror and the changelog, read back at the end."""

    items: list[dict[str, Any]]
    mirror: list[dict[str, Any]]
    changelog: list[dict[str, Any]]


def read_back(dynamodb: Any) -> Landed:
    """Scan the table while BigQuery answers the two queries."""
    console.print("\nReading back the DynamoDB table, the changelog and the mirror ...")
    client = bigquery_client(load_config(CONFIG))
    columns = "event_id, op, seq, pk, sk, changed_at, ingested_at"
    with ThreadPoolExecutor(2) as pool:
        mirror = pool.submit(query, client, f"SELECT * FROM `{DATASET}.{TABLE}` ORDER BY pk, sk")
        changelog = pool.submit(query, client, f"SELECT {columns} FROM `{DATASET}.{TABLE}_changes`")
        pages = dynamodb.get_paginator("scan").paginate(TableName=TABLE)
        items = [item for page in pages for item in page["Items"]]
        return Landed(items, mirror.result(), changelog.result())


def query(client: Any, sql: str) -> list[dict[str, Any]]:
    return [dict(row) for row in client.query(sql).result(timeout=60)]


def show_landed(writer: Writer, landed: Landed) -> None:
    """The counts at each step, then a few mirror rows."""
    written = Counter(op for ops in writer.history.values() for op in ops)
    console.print(
        f"\n[bold]What landed[/]\n"
        f"  DynamoDB    {written.total():,} changes ({_counts(written)}); "
        f"{len(landed.items):,} items in the table now\n"
        f"  changelog   {len(landed.changelog):,} rows in {DATASET}.{TABLE}_changes "
        f"({_counts(Counter(r['op'] for r in landed.changelog))})\n"
        f"  mirror      {len(landed.mirror):,} rows in {DATASET}.{TABLE} "
        "(a view: each key's latest change)"
    )
    rows = landed.mirror[:: max(1, len(landed.mirror) // 6)][:6]
    header = ("pk", "sk", "customer", "status", "total", "item (plain JSON)")
    cells = [[_cell(r[c]) for c in (*header[:-1], "item")] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(header)]
    room = max(20, console.width - sum(widths[:-1]) - 3 * len(header) - 1)
    title = f"\nSome rows of {DATASET}.{TABLE}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for name, width in zip(header, widths, strict=True):
        table.add_column(name, no_wrap=True, min_width=min(width, room), max_width=room)
    for line in cells:
        table.add_row(*line)
    console.print(table)


def show_lag(changelog: list[dict[str, Any]], restarted_at: float) -> None:
    """How long changes took to reach BigQuery: while the runner ran, and at its restart."""
    live: list[float] = []
    later: list[float] = []
    for row in changelog:
        lag = (row["ingested_at"] - row["changed_at"]).total_seconds()
        (live if row["ingested_at"].timestamp() < restarted_at else later).append(lag)
    console.print("[bold]Lag[/] (changed_at -> ingested_at in the changelog)")
    if live:
        console.print(
            f"  while ddb2bq run ran  p50 {_quantile(live, 0.5):.2f} s, p99 "
            f"{_quantile(live, 0.99):.2f} s, max {max(live):.2f} s ({len(live):,} changes)"
        )
    if later:
        console.print(
            f"  after the restart     {len(later):,} changes made while it was stopped waited "
            f"{_quantile(later, 0.5):.1f} s (p50) to {max(later):.1f} s (max)"
        )


def verify(writer: Writer, landed: Landed) -> int:
    """The mirror equals the table (each key once, every value exact); the changelog holds each
    change written, once, in the order written."""
    expected = {_key_of(i): plain_item(encode_binary(i)) for i in landed.items}
    actual = {_key_of(item): item for item in (_json(r["item"]) for r in landed.mirror)}
    logged: dict[Key, list[str]] = {}
    unique = {r["event_id"]: r for r in landed.changelog}.values()
    for row in sorted(unique, key=lambda r: str(r["seq"])):
        logged.setdefault((row["pk"], int(row["sk"])), []).append(row["op"])
    differ = [k for k in expected.keys() & actual.keys() if actual[k] != expected[k]]
    keys = writer.history.keys() | logged.keys()
    checks = {
        "keys are in the mirror more than once": len(landed.mirror) - len(actual),
        "items are missing from the mirror": len(expected.keys() - actual.keys()),
        "deleted items are still in the mirror": len(actual.keys() - expected.keys()),
        "items differ between the mirror and the table": len(differ),
        "keys have other changes in the changelog than were written (missing, extra or out of "
        "order)": sum(1 for k in keys if writer.history.get(k) != logged.get(k)),
        "changelog rows are there twice (the same event_id)": len(landed.changelog) - len(unique),
    }
    show_extremes(landed.items, actual)
    problems = [f"{count:,} {what}" for what, count in checks.items() if count]
    if problems:
        console.print(f"\n[bold red]MISMATCH[/]: {'; '.join(problems)}.", soft_wrap=True)
        for key in differ[:1]:
            console.print(f"  {key}: in the table {expected[key]}\n  in the mirror {actual[key]}")
        return 1
    console.print(
        f"\n[bold green]The mirror equals the DynamoDB table[/] ({len(expected):,} items, each key "
        f"once, every value exact); the changelog holds each of the {len(landed.changelog):,} "
        "changes written, once, in order.",
        soft_wrap=True,
    )
    return 0


def show_extremes(items: list[Any], mirror: dict[Key, Any]) -> None:
    """Each extreme number as the table holds it and as the mirror's item gives it back."""
    console.print(
        "\n[bold]Numbers at DynamoDB's limits[/], in the table and in the mirror's item (a JSON "
        "number when float64 holds it exactly, else a string with the exact decimal):"
    )
    where = {i["extreme"]["N"]: _key_of(i) for i in items}
    for number in EXTREMES:
        if where.get(number) in mirror:
            back = mirror[where[number]]["extreme"]
            console.print(f"  {number:<46} -> {orjson.dumps(back).decode()}")


def show_commands(*, keep: bool) -> None:
    """What to run yourself against these servers, while they are up (on a terminal: until Enter)."""
    sql = f"SELECT op, COUNT(*) AS changes FROM {DATASET}.{TABLE}_changes GROUP BY op"
    body = orjson.dumps({"useLegacySql": False, "query": sql}).decode()
    rows = (
        'import json, sys; [print(*(c["v"] for c in r["f"])) for r in json.load(sys.stdin)["rows"]]'
    )
    console.print(
        "\nThe servers are up until you press Enter. In another shell, in the project's folder:"
        if keep
        else "\nThe servers stop now; on a terminal the demo keeps them up at the end, for:"
    )
    console.print(
        f"  . {ENV_FILE.relative_to(ROOT)}    # this run's endpoints and dummy AWS keys\n"
        f"  .venv/bin/ddb2bq status --config {CONFIG.relative_to(ROOT)}\n"
        f'  curl -s "$DDB2BQ_TARGET_ENDPOINT/bigquery/v2/projects/{PROJECT}/queries" '
        f"-H 'Content-Type: application/json' -d '{body}' | python3 -c {shlex.quote(rows)}\n"
        "The SQL is BigQuery's (`bq query --use_legacy_sql=false` runs it there). Servers of "
        "your own: .venv/bin/python -m ddb2bq.local",
        markup=False,
        soft_wrap=True,
    )
    if keep:
        with contextlib.suppress(EOFError, KeyboardInterrupt):
            console.input("\nPress Enter to stop them. ")


def _key_of(item: dict[str, Any]) -> Key:
    """(pk, sk) of an item in DynamoDB JSON or plain JSON."""
    pk, sk = item["pk"], item["sk"]
    return (pk["S"], int(sk["N"])) if isinstance(pk, dict) else (pk, int(sk))


def _json(value: Any) -> Any:
    """JSON columns come back parsed from the query API; accept JSON text too."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _cell(value: Any) -> str:
    """A value as a table cell: JSON columns (parsed by the query API) as JSON text."""
    if value is None:
        return "NULL"
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n:,} {op}" for op, n in sorted(counter.items()))


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("\nInterrupted; the servers are stopped.")
