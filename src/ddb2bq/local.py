"""Local stand-ins of both clouds, for tests and laptops: moto and the local-bigquery emulator.

- :func:`start_moto` serves DynamoDB and DynamoDB Streams (moto in server mode) over HTTP.
- :func:`start_bigquery` serves BigQuery REST and the Storage Write API over gRPC
  (local-bigquery, installed by ``scripts/setup`` into ``.cache/local-bigquery``: it needs Python
  3.13 and duckdb 1.5.5, so it cannot live in the project's virtualenv).
- :func:`local_servers` starts both; ``python -m ddb2bq.local`` does the same for a human and
  prints the environment variables that point ddb2bq at them.

Each server is a child process in its own process group, bound to 127.0.0.1 on a free port;
:meth:`Server.stop` ends the whole group, so nothing outlives it. moto runs as a subprocess rather
than ``ThreadedMotoServer`` so the process using it (pytest, a runner) stays light: moto's imports
and request handling take neither its memory nor its GIL, and a stop cannot leave threads behind.
Both servers run with a minimal environment, so nothing of the caller's (``PYTHONPATH``, a
virtualenv, the user's ``~/.duckdb``) leaks into them.

moto and local-bigquery are development tools: this module imports only the standard library.

Example::

    with local_servers("local-project") as servers:
        dynamodb = boto3.client("dynamodb", endpoint_url=servers.moto.endpoint, ...)
        print(servers.environment())
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from ddb2bq.exceptions import Ddb2bqError

HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_PROJECT = "local-project"


def _checkout() -> Path:
    """The ddb2bq checkout this module lives in (``src/ddb2bq``, or the compiled build's site
    under ``.cache``): the nearest folder above holding ``scripts/setup``; else the current one."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "scripts" / "setup").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    return Path.cwd()


EMULATOR_DIR = _checkout() / ".cache" / "local-bigquery"
"""Where ``scripts/setup`` installs the emulator: its ``venv`` and a private ``home``."""

AWS_DUMMY_CREDENTIALS = {  # moto accepts any key; boto3 insists on having one
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}

_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalServerError(Ddb2bqError):
    """A local server is not installed, did not start, or died; the message says which and why."""


@dataclass
class Server:
    """A running local server: where it answers, and the process group that :meth:`stop` ends."""

    name: str
    endpoint: str
    process: subprocess.Popen[bytes]
    workdir: Path
    argv: tuple[str, ...]
    grpc_endpoint: str = ""

    @property
    def log_path(self) -> Path:
        """The server's combined stdout and stderr."""
        return self.workdir / "server.log"

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the server's log, for error messages."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_bytes().decode(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """End the server's process group (SIGTERM, then SIGKILL) and remove its work folder."""
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class LocalServers:
    """moto and local-bigquery, started together by :func:`local_servers`."""

    moto: Server
    bigquery: Server
    project: str

    def environment(self) -> dict[str, str]:
        """The environment variables that point ddb2bq and the cloud SDKs at these servers."""
        return {
            "DDB2BQ_SOURCE_ENDPOINT_URL": self.moto.endpoint,
            "DDB2BQ_SOURCE_REGION": REGION,
            "DDB2BQ_TARGET_PROJECT": self.project,
            "DDB2BQ_TARGET_ENDPOINT": self.bigquery.endpoint,
            "DDB2BQ_TARGET_GRPC_ENDPOINT": self.bigquery.grpc_endpoint,
            **AWS_DUMMY_CREDENTIALS,
        }


def start_moto(timeout: float = 30.0) -> Server:
    """Start moto in server mode (DynamoDB and DynamoDB Streams) and wait until it answers.

    Example::

        with start_moto() as moto:
            boto3.client("dynamodb", endpoint_url=moto.endpoint, region_name="us-east-1")
    """
    if importlib.util.find_spec("moto") is None:
        raise LocalServerError(
            f"moto is not installed in {sys.executable}; run scripts/setup to install "
            "requirements/dev.txt."
        )
    port = _free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    server = _launch("moto", argv, _workdir("moto"), f"http://{HOST}:{port}")
    _wait_until(server, lambda: _answers_http(f"{server.endpoint}/moto-api/"), timeout)
    return server


def start_bigquery(
    project: str = DEFAULT_PROJECT,
    data_dir: str | Path | None = None,
    *,
    emulator_dir: str | Path = EMULATOR_DIR,
    timeout: float = 60.0,
) -> Server:
    """Start the local-bigquery emulator (REST and gRPC) and wait until both answer.

    ``data_dir`` keeps the emulator's tables; by default a temporary folder removed on stop.

    Example::

        with start_bigquery("my-project") as bigquery:
            bigquery.endpoint       # "http://127.0.0.1:40123", REST
            bigquery.grpc_endpoint  # "127.0.0.1:40125", Storage Write
    """
    executable = Path(emulator_dir) / "venv" / "bin" / "local-bigquery"
    if not executable.exists():
        raise LocalServerError(
            f"The local-bigquery emulator is not installed ({executable} is missing); "
            "run scripts/setup to install it."
        )
    workdir = _workdir("bigquery")
    port, grpc_port = _free_port(), _free_port()
    argv = [str(executable), "serve", "--host", HOST, "--port", str(port)]
    argv += ["--grpc-port", str(grpc_port), "--project", project]
    argv += ["--data-dir", str(data_dir if data_dir is not None else workdir / "data")]
    home = Path(emulator_dir) / "home"  # holds the DuckDB extensions installed by scripts/setup
    server = _launch("local-bigquery", argv, workdir, f"http://{HOST}:{port}", home=home)
    server.grpc_endpoint = f"{HOST}:{grpc_port}"
    datasets = f"{server.endpoint}/bigquery/v2/projects/{project}/datasets"
    _wait_until(server, lambda: _answers_http(datasets) and _accepts_tcp(grpc_port), timeout)
    return server


@contextlib.contextmanager
def local_servers(project: str = DEFAULT_PROJECT) -> Iterator[LocalServers]:
    """Start moto and local-bigquery, yield both, and stop both on exit.

    Example::

        with local_servers("my-project") as servers:
            os.environ.update(servers.environment())
    """
    with start_moto() as moto, start_bigquery(project) as bigquery:
        yield LocalServers(moto=moto, bigquery=bigquery, project=project)


def _workdir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"ddb2bq-{name}-"))


def _launch(
    name: str, argv: list[str], workdir: Path, endpoint: str, home: Path | None = None
) -> Server:
    env = {"PATH": os.defpath, "HOME": str(home or workdir), "LC_ALL": "C.UTF-8"}
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own process group, ended whole by Server.stop
        )
    return Server(name, endpoint, process, workdir, tuple(argv))


def _wait_until(server: Server, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if server.process.poll() is not None:
            _fail(server, f"exited with code {server.process.returncode} while starting")
        if time.monotonic() > deadline:
            _fail(server, f"did not answer at {server.endpoint} within {timeout:.0f} s")
        time.sleep(0.1)


def _fail(server: Server, why: str) -> NoReturn:
    tail = server.log_tail()
    server.stop()
    raise LocalServerError(
        f"The local {server.name} server {why} (command: {shlex.join(server.argv)})."
        f" If its environment is missing or stale, run scripts/setup. Last lines of its log:\n{tail}"
    )


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_http(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` with a success status."""
    try:
        with _LOOPBACK.open(url, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def _accepts_tcp(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddb2bq.local``: start both servers, print how to use them, wait for Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m ddb2bq.local", description=main.__doc__)
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="the BigQuery project id")
    args = parser.parse_args(argv)
    # Ctrl-C even when started with SIGINT ignored (a background job), and SIGTERM too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with local_servers(args.project) as servers:
        _print_usage(servers)
        try:
            while servers.moto.process.poll() is None and servers.bigquery.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nStopping.")
            return 0
        dead = servers.moto if servers.moto.process.poll() is not None else servers.bigquery
        print(f"The {dead.name} server stopped. Last lines of its log:\n{dead.log_tail()}")
        return 1


def _print_usage(servers: LocalServers) -> None:
    print(f"DynamoDB + Streams (moto): {servers.moto.endpoint}")
    print(f"BigQuery REST:             {servers.bigquery.endpoint}")
    print(f"BigQuery gRPC (Storage):   {servers.bigquery.grpc_endpoint}")
    print(f"BigQuery project:          {servers.project}\n")
    print("Environment for ddb2bq and the SDKs (paste into a shell):")
    for name, value in servers.environment().items():
        print(f"export {name}={value}")
    print("\nPress Ctrl-C to stop both servers.")


if __name__ == "__main__":
    raise SystemExit(main())
