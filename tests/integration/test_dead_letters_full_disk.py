"""Dead letters on a full disk, a cut-off line and an interrupted replay: no letter is ever lost.

A full disk is real here, not a mock: the child process runs with a small file-size limit
(``RLIMIT_FSIZE``, SIGXFSZ ignored), so a write past it is short, then fails with ``EFBIG``,
exactly as a disk filling up makes ``write`` short, then fail with ``ENOSPC``. Each test drives
``ddb2bq replay-dead-letters`` as a user does (a child process, or ``main(argv)``) and checks the
exit code, the message (it names the path, no traceback) and, above all, that every letter is
still on disk, whole, afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import bigquery

from ddb2bq.bigquery.tables import TableRefs, init_tables, initial_layout
from ddb2bq.cli import main
from ddb2bq.config import Config, load_config
from ddb2bq.contract import DeadLetter
from ddb2bq.dead_letters import LocalDeadLetters, decode_letter, encode_letter, read_dead_letters
from ddb2bq.local import Server
from tests.integration.config_support import write_config
from tests.integration.fault_proxy import HttpFaultProxy
from tests.sink_data import record

ROOT = Path(__file__).resolve().parents[2]
KEY_SCHEMA = [("Id", "N"), ("Sk", "S")]
FAILED_AT = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z


def letter(n: int, *, broken: bool = False) -> DeadLetter:
    """The dead letter of order ``n``: a Lambda record BigQuery refused once. A ``broken`` one
    lost its keys, so that a replay cannot parse it and must keep it (write it again)."""
    original = record(n)
    if broken:
        del original["dynamodb"]["Keys"]
    return DeadLetter(
        table="orders",
        error=f"BigQuery rejected the row of event evt-{n:04d}-insert: column 'total'",
        failed_at_us=FAILED_AT + n,
        source="lambda",
        record=original,
        event_id=f"evt-{n:04d}-insert",
        keys={"Id": {"N": str(n)}, "Sk": {"S": f"order#{n:04d}"}},
    )


def files_of_at_most(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: no file of the child grows past ``limit`` bytes (its disk is full)."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_file_size


def ddb2bq(*argv: str, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """``ddb2bq ARGV`` in a child process (its disk full past ``limit`` bytes per file)."""
    return subprocess.run(
        [sys.executable, "-m", "ddb2bq.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        preexec_fn=None if limit is None else files_of_at_most(limit),
    )


def every_line(folder: Path) -> list[bytes]:
    """Every line of every file under ``folder``, hidden and set-aside files included."""
    return [
        line
        for file in sorted(folder.rglob("*"))
        if file.is_file()
        for line in file.read_bytes().splitlines()
    ]


def on_disk(folder: Path) -> list[DeadLetter]:
    """The letters a replay would see under ``folder``, oldest first."""
    return sorted(read_dead_letters(LocalDeadLetters(folder)), key=lambda x: x.event_id)


@pytest.fixture
def replication(
    tmp_path: Path,
    local_env: dict[str, str],
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
) -> tuple[str, Config, Path]:
    """A ddb2bq.toml for ``orders`` on the emulator, its tables made, and its (empty) local
    dead-letter folder."""
    config_path = write_config(tmp_path / "ddb2bq.toml", "orders", dataset.dataset_id)
    config = load_config(config_path)
    init_tables(bq_client, config, initial_layout(config, KEY_SCHEMA))
    letters = Path(config.dead_letters.path)
    letters.mkdir()
    return config_path, config, letters


def changelog_events(client: bigquery.Client, config: Config) -> set[str]:
    ref = TableRefs.from_config(config, client.project).changes
    rows = client.query(f"SELECT event_id FROM `{ref.api}`").result(timeout=30)
    return {row["event_id"] for row in rows}


# --- writing letters -----------------------------------------------------------------------

SEND = """
import json, sys
from ddb2bq.dead_letters import LocalDeadLetters, decode_letter
from ddb2bq.exceptions import RetryableError

letters = [decode_letter(line) for line in sys.stdin.buffer.read().splitlines()]
try:
    LocalDeadLetters(sys.argv[1]).send(letters)
except RetryableError as exc:
    print(json.dumps({"retryable": str(exc)}))
else:
    print(json.dumps({"sent": len(letters)}))
"""


def test_a_send_the_disk_cannot_hold_stores_nothing_and_is_retryable(tmp_path: Path) -> None:
    # GIVEN five letters (about 1 KB each) and a disk with room for about two of them
    letters = [letter(n) for n in range(1, 6)]
    folder = tmp_path / "dead-letters"
    assert 2 * 1024 < 2_500 < len(b"".join(encode_letter(x) + b"\n" for x in letters))
    # WHEN they are sent to the local store there
    result = subprocess.run(
        [sys.executable, "-c", SEND, str(folder)],
        input=b"".join(encode_letter(x) + b"\n" for x in letters),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        preexec_fn=files_of_at_most(2_500),
    )
    # THEN the send raises RetryableError naming the folder and saying what to do
    assert result.returncode == 0, result.stderr.decode()
    message = json.loads(result.stdout)["retryable"]
    assert str(folder) in message
    assert "File too large" in message
    assert "Free disk space" in message
    # AND nothing half-written is left: no letter file, no temporary file
    assert every_line(folder) == []
    # AND with room again, the same send stores all five, whole
    LocalDeadLetters(folder).send(letters)
    assert on_disk(folder) == letters
    assert [decode_letter(line) for line in every_line(folder)] == letters


# --- replaying on a full disk -----------------------------------------------------------------


def test_a_replay_on_a_full_disk_fails_naming_the_file_and_keeps_every_letter(
    replication: tuple[str, Config, Path], bq_client: bigquery.Client
) -> None:
    # GIVEN five letters in one file: three that will land, two whose record is broken (a
    # replay keeps them, so it must write them again) ...
    config_path, config, folder = replication
    originals = [letter(1), letter(2, broken=True), letter(3), letter(4, broken=True), letter(5)]
    LocalDeadLetters(folder).send(originals)
    (file,) = (folder / "orders").iterdir()
    # ... on a disk that has no room for the two letters to keep
    limit = 2_000
    assert file.stat().st_size > limit
    # WHEN they are replayed
    result = ddb2bq("replay-dead-letters", "--config", config_path, limit=limit)
    # THEN the replay fails, saying which file holds the letters and what to do
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("ddb2bq: error: Cannot settle the replayed dead letters of ")
    assert f"{file}.replaying-" in result.stderr
    assert "File too large" in result.stderr
    assert "Free disk space" in result.stderr
    # AND every original letter is still on disk, whole, as it was
    assert on_disk(folder) == originals
    assert [decode_letter(line) for line in every_line(folder)] == originals

    # WHEN the disk has room again and the replay runs again
    result = ddb2bq("replay-dead-letters", "--config", config_path)
    # THEN it takes the claimed file: three landed, the two broken ones are kept, whole
    assert (result.returncode, result.stdout) == (1, "orders: 3 landed, 2 kept (2 unreadable)\n")
    kept = on_disk(folder)
    assert [(x.event_id, x.record) for x in kept] == [
        (x.event_id, x.record) for x in (originals[1], originals[3])
    ]
    assert all("cannot be parsed again" in x.error for x in kept)
    assert changelog_events(bq_client, config) == {x.event_id for x in originals[::2]}
    assert not list(folder.rglob("*.replaying-*"))


# --- a line cut off ---------------------------------------------------------------------------


def test_a_cut_off_line_is_set_aside_whole_and_the_other_letters_of_its_file_land(
    replication: tuple[str, Config, Path], bq_client: bigquery.Client
) -> None:
    # GIVEN a day file (as earlier versions appended them) whose second line was cut off by a
    # full disk, between two whole letters
    config_path, config, folder = replication
    lines = [encode_letter(letter(n)) for n in (1, 2, 3)]
    cut = lines[1][: len(lines[1]) // 2]
    file = folder / "orders" / "2024-05-01.jsonl"
    file.parent.mkdir()
    file.write_bytes(lines[0] + b"\n" + cut + b"\n" + lines[2] + b"\n")
    # WHEN the letters are replayed
    out, err = io.StringIO(), io.StringIO()
    code = run(["replay-dead-letters", "--config", config_path], out, err)
    # THEN the two whole letters landed and were removed; the cut line is counted and named
    # (file and line) and moved, byte for byte, to a file of its own; exit code 1
    (aside,) = (folder / "orders").glob("2024-05-01.jsonl.unreadable-*")
    report = out.getvalue().splitlines()
    assert (code, err.getvalue()) == (1, "")
    assert report[0] == "orders: 2 landed, 0 kept, 1 line set aside (not a letter)"
    assert report[1].startswith(f"  {file}:2 is not a whole dead letter (")
    assert report[1].endswith(f"); moved whole to {aside}")
    assert len(report) == 2
    assert aside.read_bytes() == cut + b"\n"
    assert changelog_events(bq_client, config) == {"evt-0001-insert", "evt-0003-insert"}
    assert sorted(p.name for p in (folder / "orders").iterdir()) == [aside.name]
    # AND the next replay has nothing left to do: the set-aside line is not read again
    out = io.StringIO()
    code = run(["replay-dead-letters", "--config", config_path], out, err)
    assert (code, out.getvalue()) == (0, "orders: 0 landed, 0 kept\n")


def run(argv: list[str], out: io.StringIO, err: io.StringIO) -> int:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        return main(argv)


# --- an interrupted replay ----------------------------------------------------------------------


class HoldingInserts(HttpFaultProxy):
    """Forwards every BigQuery request but ``insertAll``, which it holds until stopped: a
    replay caught in the middle of its write."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url)
        self.holding = threading.Event()

    def _exchange(self, request: bytes) -> bytes:
        if b"/insertAll" not in request.split(b"\r\n", 1)[0]:
            return super()._exchange(request)
        self.holding.set()
        self._stopping.wait(30)
        raise OSError("held until the proxy stopped")


@pytest.fixture
def holding_proxy(bigquery_server: Server) -> Iterator[HoldingInserts]:
    proxy = HoldingInserts(bigquery_server.endpoint)
    proxy.start()
    yield proxy
    proxy.stop()


def test_ctrl_c_during_a_replay_leaves_every_letter_and_the_next_replay_takes_them(
    replication: tuple[str, Config, Path],
    bq_client: bigquery.Client,
    holding_proxy: HoldingInserts,
) -> None:
    # GIVEN three letters, and a replay whose write to BigQuery hangs
    config_path, config, folder = replication
    originals = [letter(n) for n in (1, 2, 3)]
    LocalDeadLetters(folder).send(originals)
    env = {**os.environ, "DDB2BQ_TARGET_ENDPOINT": holding_proxy.url}
    child = subprocess.Popen(
        [sys.executable, "-m", "ddb2bq.cli", "replay-dead-letters", "--config", config_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert holding_proxy.holding.wait(60), "the replay never wrote to BigQuery"
        assert list(folder.rglob("*.replaying-*"))  # its file is claimed
        # WHEN it is interrupted (Ctrl-C) in the middle of the write
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # THEN it exits 130, saying where the letters are, without a traceback
    assert (child.returncode, stdout) == (130, "")
    assert "Traceback" not in stderr
    assert f"replay of orders interrupted; every letter is still in {folder}" in stderr
    # AND every letter is on disk, whole, in the claimed file
    assert on_disk(folder) == originals
    assert [".jsonl.replaying-" in p.name for p in (folder / "orders").iterdir()] == [True]

    # WHEN the next replay runs, BigQuery answering
    result = ddb2bq("replay-dead-letters", "--config", config_path)
    # THEN it takes the interrupted replay's file: all three land, nothing is left
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "orders: 3 landed, 0 kept\n",
        "",
    )
    assert changelog_events(bq_client, config) == {x.event_id for x in originals}
    assert list((folder / "orders").iterdir()) == []


# --- mistakes on the command line ---------------------------------------------------------------


def test_a_mistyped_dead_letter_path_is_an_error_naming_it(tmp_path: Path) -> None:
    # GIVEN a configuration whose [dead_letters] path names no folder
    missing = tmp_path / "dead-leters"
    config = tmp_path / "ddb2bq.toml"
    config.write_text(f'[source]\ntable = "orders"\n[dead_letters]\npath = "{missing}"\n')
    # WHEN the letters are replayed or listed
    for extra in ([], ["--list"]):
        result = ddb2bq("replay-dead-letters", "--config", str(config), *extra)
        # THEN it is not "nothing to do": exit 2, naming the path
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert result.stderr == (
            f"ddb2bq: error: [dead_letters] path {missing} does not exist: no dead letter was "
            "ever written there. Check the path (a relative one is taken from the working "
            "folder).\n"
        )


@pytest.mark.parametrize("size", ["0", "-5", "1000000", "nan"])
def test_a_batch_size_out_of_range_is_refused(tmp_path: Path, size: str) -> None:
    # GIVEN a configuration with an (empty) dead-letter folder
    config = tmp_path / "ddb2bq.toml"
    config.write_text(f'[source]\ntable = "orders"\n[dead_letters]\npath = "{tmp_path}"\n')
    # WHEN a replay is asked for with a batch size of none, fewer or a million changes
    result = ddb2bq("replay-dead-letters", "--config", str(config), "--batch-size", size)
    # THEN it is a usage error naming the option and its range; nothing is replayed
    assert (result.returncode, result.stdout) == (2, "")
    assert "Traceback" not in result.stderr
    assert f"argument --batch-size: {size!r} is not a whole number" in result.stderr
