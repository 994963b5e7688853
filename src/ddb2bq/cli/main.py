"""The ``ddb2bq`` command line: parses arguments, calls the library, prints.

Each command lives in its own module of this package and registers its parser here; the exit
codes are in :mod:`ddb2bq.cli.common`. This module is the command line's error boundary: every
failure ends as one line on stderr, ``ddb2bq: error: <a sentence naming the table, endpoint,
path or setting, and what to do>``, and a documented exit code, never a traceback:

- ddb2bq's own errors: :class:`~ddb2bq.exceptions.ConfigError` and
  :class:`~ddb2bq.exceptions.RecordError` exit 2, the others 1;
- the cloud libraries' exceptions that were not translated where they arose: botocore's through
  :func:`ddb2bq.dynamodb.connect.aws_error`, Google's (``google.api_core``, ``google.auth``,
  ``requests``, ``grpc``) through :func:`ddb2bq.bigquery.errors.bigquery_error`;
- a file that cannot be read or written (``OSError`` with a file name: the path is named, exit 2),
  input that is not UTF-8 (exit 2), an endpoint that does not answer (exit 1);
- Ctrl-C: "stopped by Ctrl-C", exit 130; SIGTERM: "stopped by SIGTERM", exit 143 (commands that
  stop cleanly on signals, ``run``, ``backfill``, ``start``, say so themselves); output closed
  early (``| head``): nothing more, exit 141;
- anything else is a bug in ddb2bq: one line naming the exception, asking for a report, exit 1.

``DDB2BQ_DEBUG=1`` in the environment adds the Python traceback to every error. Secrets never
reach a message: no exception's text quotes credentials or key material (see
:mod:`ddb2bq.credentials`), and an unknown exception's text is cut to one line.

Retries are bounded: ``--retry-deadline`` (30 s) is the longest any one call to AWS or BigQuery
is retried (:func:`ddb2bq.contract.limit_retries`); each retry says so on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from types import FrameType

from ddb2bq.cli.common import (
    DEFAULT_RETRY_DEADLINE,
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Command,
    add_config,
)
from ddb2bq.config import DEBUG_VARIABLE, Config, load_config
from ddb2bq.contract import limit_retries
from ddb2bq.exceptions import ConfigError, Ddb2bqError, RecordError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Run as the program (``argv`` None: the arguments are ``sys.argv``), a Ctrl-C that comes
    once the exit code is known is ignored: the interpreter's shutdown (worker processes joined,
    files closed) cannot turn a finished command into a traceback or a different exit code.
    """
    code = _main(argv)
    if argv is None:
        with suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


def _main(argv: Sequence[str] | None) -> int:
    debug = _debug(os.environ)
    config: Config | None = None
    command = ""
    with _sigterm_raises():
        try:
            args = _parser().parse_args(argv)
            command = str(args.command)
            config = read_config(args.config)
            run_command: Command = args.run
            with limit_retries(getattr(args, "retry_deadline", DEFAULT_RETRY_DEADLINE)):
                return run_command(args, config)
        except SystemExit:
            raise  # argparse's usage errors (exit 2) and --help (exit 0)
        except BaseException as exc:  # noqa: BLE001 - the boundary: every failure is reported
            return report(exc, command, config, debug=debug)


def read_config(path: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """:func:`~ddb2bq.config.load_config` of ``path`` and the environment: every way a file
    cannot be read (missing, a directory, empty, not UTF-8, not TOML) is its ConfigError."""
    return load_config(path, environ=environ)


def report(exc: BaseException, command: str, config: Config | None, *, debug: bool) -> int:
    """Print what ``exc`` means for the user of ``ddb2bq COMMAND``; return the exit code."""
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    message, code = explain(exc, command, config or Config())
    with suppress(OSError):
        print(f"ddb2bq: {message}", file=sys.stderr, flush=True)
    return code


def explain(exc: BaseException, command: str, config: Config) -> tuple[str, int]:
    """The line ``ddb2bq: ...`` and the exit code for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by Ctrl-C.", EXIT_INTERRUPTED
    if isinstance(exc, _Terminated):
        return "stopped by SIGTERM.", EXIT_TERMINATED
    error = exc if isinstance(exc, Ddb2bqError) else translate(exc, command, config)
    if error is not None:
        bad_input = isinstance(error, ConfigError | RecordError)
        return f"error: {error}", EXIT_BAD_INPUT if bad_input else EXIT_FAILED
    return (
        f"internal error: {_one_line(exc)}. This is a bug in ddb2bq: please report it with the "
        f"command you ran; rerun with {DEBUG_VARIABLE}=1 to see the traceback.",
        EXIT_FAILED,
    )


def translate(exc: BaseException, command: str, config: Config) -> Ddb2bqError | None:
    """The ddb2bq error for an exception of the cloud libraries or the system; None for a bug."""
    module = type(exc).__module__
    if module.startswith(("botocore", "boto3", "s3transfer")):
        from ddb2bq.dynamodb.connect import aws_error  # noqa: PLC0415 (only when one is met)

        return aws_error(exc, config, f"running `ddb2bq {command}`")
    if module.startswith(("google", "requests", "grpc", "urllib3")) or isinstance(
        exc, ConnectionError | TimeoutError
    ):
        from ddb2bq.bigquery.errors import bigquery_error  # noqa: PLC0415 (only when one is met)

        endpoint = config.target.endpoint or "https://bigquery.googleapis.com"
        return bigquery_error(exc, endpoint=endpoint, project=config.target.project)
    if isinstance(exc, UnicodeDecodeError):
        return RecordError(
            f"The input is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): give `ddb2bq {command}` UTF-8 JSON."
        )
    if isinstance(exc, OSError):
        return _os_error(exc)
    return _sqlite_error(exc, config)


def _os_error(exc: OSError) -> Ddb2bqError:
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    why = exc.strerror or str(exc)
    if not names:
        return Ddb2bqError(f"A system call failed: {why}.")
    return ConfigError(
        f"{' -> '.join(repr(n) for n in names)} cannot be used: {why}. Check the path given "
        "on the command line or in the configuration."
    )


def _sqlite_error(exc: BaseException, config: Config) -> Ddb2bqError | None:
    sqlite = sys.modules.get("sqlite3")
    if sqlite is None or not isinstance(exc, sqlite.Error):
        return None
    where = f"The state store {config.runner.checkpoints!r} ([runner] checkpoints)"
    if "unable to open" in str(exc) or "not a database" in str(exc):
        return ConfigError(f"{where} cannot be opened ({exc}): give the path of a SQLite file.")
    return Ddb2bqError(f"{where} failed: {exc}; try again.")


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0].rstrip(".")
    return text if len(text) <= 200 else text[:199] + "…"


def _debug(environ: Mapping[str, str]) -> bool:
    return environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail again."""
    with suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


class _Terminated(BaseException):
    """SIGTERM, raised where the program is, so that ``finally`` blocks run."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`_Terminated` (unless someone else handles it)."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave the signal alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(number: int, frame: FrameType | None) -> None:
    raise _Terminated


def _parser() -> argparse.ArgumentParser:
    # the commands' modules are imported here, inside the boundary: a Ctrl-C while Python loads
    # them is reported like any other
    from ddb2bq.cli import (  # noqa: PLC0415
        backfill,
        convert,
        dead_letters,
        deploy,
        run,
        start,
        tables,
        verify,
    )

    parser = argparse.ArgumentParser(
        prog="ddb2bq",
        description="Replicate Amazon DynamoDB tables into Google BigQuery, continuously and "
        "without loss.",
        epilog=f"Exit codes: 0 done, 1 failed, 2 bad input or configuration, 3 a gap in the "
        f"stream, 130 Ctrl-C, 141 output closed, 143 SIGTERM. {DEBUG_VARIABLE}=1 shows "
        "tracebacks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, deploy, tables, dead_letters, run, backfill, start, verify):
        module.register(commands, add_config)
    return parser
