"""The deploy subcommands of ``ddb2bq``: ``package``, ``template``, ``enable-stream``, ``deploy``.

Thin: each parses its options, calls :mod:`ddb2bq.deploy.package`, :mod:`~ddb2bq.deploy.template`
or :mod:`~ddb2bq.deploy.stack`, and prints. AWS clients come from ``client_factory`` (boto3 by
default, in ``[source] region``), so tests pass clients on moto.

AWS's errors become one sentence naming what was being done (the bucket, the stack, the
endpoint) and what to do: missing credentials or region, a missing bucket, zip or output path
are configuration (exit 2); an endpoint that does not answer, or a call AWS refused, exit 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ddb2bq.cli.common import AddConfig
from ddb2bq.config import Config
from ddb2bq.deploy import package, stack, template
from ddb2bq.dynamodb.connect import AwsUnavailable, aws_error, is_unreachable
from ddb2bq.exceptions import ConfigError, Ddb2bqError

ClientFactory = Callable[[str, Config], Any]


def register(commands: Any, add_config: AddConfig) -> None:
    """Add the deploy subcommands to the ``ddb2bq`` parser's ``commands``."""
    _package_parser(commands, add_config)
    _template_parser(commands, add_config)
    enable = commands.add_parser(
        "enable-stream",
        help="turn on the table's NEW_AND_OLD_IMAGES stream (idempotent)",
        description="UpdateTable with StreamSpecification NEW_AND_OLD_IMAGES on [source] table; "
        "nothing happens when that stream is already on.",
    )
    add_config(enable)
    enable.set_defaults(run=run_enable_stream)
    _deploy_parser(commands, add_config)


def _package_parser(commands: Any, add_config: AddConfig) -> None:
    parser = commands.add_parser(
        "package",
        help="build the Lambda deployment zip",
        description="Build a reproducible Lambda zip: ddb2bq and its dependencies for the "
        "Lambda platform, without boto3 (the runtime has it).",
    )
    parser.add_argument("--arch", choices=sorted(package.ARCHITECTURES), default="arm64")
    parser.add_argument("--python", choices=package.PYTHONS, default="3.12")
    parser.add_argument("--out", type=Path, default=package.DEFAULT_OUT, metavar="ZIP")
    parser.add_argument(
        "--constraints",
        type=Path,
        default=None,
        metavar="FILE",
        help="a pip constraints file pinning dependency versions (builds on any day match)",
    )
    parser.add_argument(
        "--no-compile", action="store_true", help="leave out .pyc files (slower cold starts)"
    )
    parser.add_argument(
        "--converter",
        choices=package.CONVERTERS,
        default="auto",
        help="the compiled converter (from a compiled install built for the target), pure "
        "Python, or auto: compiled when it fits the target (default)",
    )
    add_config(parser)
    parser.set_defaults(run=run_package)


def _template_parser(commands: Any, add_config: AddConfig) -> None:
    parser = commands.add_parser(
        "template",
        help="write the CloudFormation template of the Lambda function",
        description="Print (or write to --out) the CloudFormation stack: function, event source "
        "mapping, least-privilege role, dead-letter queue, alarms.",
    )
    _add_stack_options(parser)
    parser.add_argument("--out", type=Path, default=None, metavar="FILE")
    add_config(parser)
    parser.set_defaults(run=run_template)


def _deploy_parser(commands: Any, add_config: AddConfig) -> None:
    parser = commands.add_parser(
        "deploy",
        help="create or update the Lambda stack through a change set",
        description="Create a CloudFormation change set for the stack, print each change, "
        "then execute it. With --zip, upload the zip first (content-addressed key).",
    )
    _add_stack_options(parser)
    parser.add_argument("--zip", type=Path, default=None, help="the zip from `ddb2bq package`")
    parser.add_argument(
        "--no-execute", action="store_true", help="print the changes, then delete the change set"
    )
    add_config(parser)
    parser.set_defaults(run=run_deploy)


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stream-arn", default=None, help="default [lambda] stream_arn, else DescribeTable"
    )
    parser.add_argument("--code-key", default=None, help="default [lambda] code_key")


def boto3_client(service: str, config: Config) -> Any:
    """A boto3 client for ``service`` in ``[source] region`` (DynamoDB on its endpoint)."""
    import boto3  # noqa: PLC0415 (only the deploy commands need it)

    endpoint = config.source.endpoint_url if service == "dynamodb" else None
    return boto3.client(service, region_name=config.source.region, endpoint_url=endpoint)


def run_package(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    """``ddb2bq package``: build the zip, print where and how big."""
    _check_writable(args.out)
    if args.constraints is not None and not args.constraints.is_file():
        raise ConfigError(
            f"--constraints {str(args.constraints)!r} is not a file: give the path of a pip "
            "constraints file (pip freeze > constraints.txt)."
        )
    spec = package.PackageSpec(
        arch=args.arch,
        python=args.python,
        out=args.out,
        constraints=args.constraints,
        compile=not args.no_compile,
        converter=args.converter,
    )
    result = package.build_package(spec)
    compiled = f"compiled by {result.compiled_with}" if result.compiled_with else "no .pyc"
    converter = result.converter
    print(
        f"{result.path}: {result.size_bytes / 1e6:.1f} MB ({result.size_bytes} bytes), "
        f"{result.files} files, Python {spec.python} on {spec.arch}, {compiled}, "
        + ("the compiled converter" if converter.compiled else "the pure-Python converter"),
        file=out or sys.stdout,
    )
    if not converter.compiled and spec.converter == "auto":
        print(f"the converter is pure Python: {converter.why_pure}.", file=out or sys.stdout)
    return 0


def run_template(
    args: argparse.Namespace,
    config: Config,
    out: TextIO | None = None,
    client_factory: ClientFactory = boto3_client,
) -> int:
    """``ddb2bq template``: the CloudFormation template, to stdout or ``--out``."""
    if args.out is not None:
        _check_writable(args.out)
    text = template.render(_template(args, config, client_factory, args.code_key))
    _print_notes(config)
    if args.out is None:
        (out or sys.stdout).write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _unwritable(args.out, exc) from exc
    print(f"wrote {args.out}", file=out or sys.stdout)
    return 0


def run_enable_stream(
    args: argparse.Namespace,
    config: Config,
    out: TextIO | None = None,
    client_factory: ClientFactory = boto3_client,
) -> int:
    """``ddb2bq enable-stream``: turn on the NEW_AND_OLD_IMAGES stream, print its ARN."""
    table = _table(config)
    dynamodb = _client(client_factory, "dynamodb", config)
    with _aws(config, "turning on the table's stream (UpdateTable)", dynamodb):
        state = stack.enable_stream(dynamodb, table)
    verb = "enabled" if state.changed else "already enabled"
    print(f"{state.table}: stream {verb}: {state.stream_arn}", file=out or sys.stdout)
    return 0


def run_deploy(
    args: argparse.Namespace,
    config: Config,
    out: TextIO | None = None,
    client_factory: ClientFactory = boto3_client,
) -> int:
    """``ddb2bq deploy``: check, upload the zip (with --zip), then create or update the stack.

    Everything that can be checked is checked before anything changes: the template (settings,
    names, secrets), the stack's owner (never another table's stack), the code in S3.
    """
    stream = out or sys.stdout
    table = _table(config)
    body = _read_zip(args.zip) if args.zip is not None else None
    code_key = args.code_key or config.lambda_.code_key
    if body is not None:
        code_key = stack.code_key_for(code_key, body)
    document = _template(args, config, client_factory, code_key)
    _print_notes(config)
    name = template.stack_name_for(config)
    cloudformation = _client(client_factory, "cloudformation", config)
    with _aws(config, f"reading CloudFormation stack {name!r}", cloudformation):
        stack.check_owner(cloudformation, name, table)
        old_name = template.renamed_from(config)
        if old_name is not None:
            stack.check_renamed(cloudformation, old_name, name, table)
    if body is not None or not args.no_execute:
        _put_code(config, client_factory, args.code_key or config.lambda_.code_key, body, stream)
    with _aws(config, f"deploying CloudFormation stack {name!r}", cloudformation):
        result = stack.deploy_stack(
            cloudformation,
            name,
            template.render(document),
            execute=not args.no_execute,
            tags={template.TABLE_TAG: table},
            report=lambda line: print(line, file=stream),
        )
    for key, value in sorted(result.outputs.items()):
        print(f"  {key}: {value}", file=stream)
    return 0


def _put_code(
    config: Config, client_factory: ClientFactory, key: str, body: bytes | None, stream: TextIO
) -> None:
    """Upload the zip ``body`` (content-addressed), or check the code at ``key`` is there."""
    bucket = config.lambda_.code_bucket
    s3 = _client(client_factory, "s3", config)
    with _aws(config, f"putting the code in S3 bucket {bucket!r} ([lambda] code_bucket)", s3):
        if body is None:
            stack.check_code(s3, bucket, key)
            return
        uploaded = stack.upload_code(s3, bucket, key, body)
    print(f"code: s3://{bucket}/{uploaded}", file=stream)


def _template(
    args: argparse.Namespace, config: Config, client_factory: ClientFactory, code_key: str | None
) -> dict[str, Any]:
    arn = args.stream_arn or config.lambda_.stream_arn
    if not arn:
        dynamodb = _client(client_factory, "dynamodb", config)
        doing = (
            "looking up the table's stream with DescribeTable, a call that [lambda] stream_arn "
            "or --stream-arn makes unneeded"
        )
        with _aws(config, doing, dynamodb):
            arn = stack.stream_arn_of(dynamodb, _table(config))
    return template.build_template(config, stream_arn=arn, code_key=code_key)


def _print_notes(config: Config) -> None:
    for note in template.notes(config):
        print(f"ddb2bq: note: {note}", file=sys.stderr)


def _table(config: Config) -> str:
    if not config.source.table:
        raise ConfigError("Set [source] table (or DDB2BQ_SOURCE_TABLE).")
    return config.source.table


def _read_zip(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"--zip {str(path)!r} cannot be read ({exc.strerror}): build it with `ddb2bq package "
            f"--out {path}`, or give the path of the zip it built."
        ) from exc


def _check_writable(path: Path) -> None:
    """Refuse an ``--out`` that is a folder or cannot be written, before any work is done."""
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise _unwritable(path, exc) from exc


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"--out {str(path)!r} cannot be written ({exc.strerror or exc}): give the path of a file "
        "in a folder you can write to."
    )


def _client(client_factory: ClientFactory, service: str, config: Config) -> Any:
    with _aws(config, f"making the {service} client", None):
        return client_factory(service, config)


@contextmanager
def _aws(config: Config, doing: str, client: Any) -> Iterator[None]:
    """botocore's errors inside the block as ddb2bq's, each one sentence that says what to do
    (:func:`ddb2bq.dynamodb.connect.aws_error`), with ``client``'s own endpoint when it does
    not answer."""
    try:
        yield
    except Ddb2bqError:
        raise
    except Exception as exc:
        if is_unreachable(exc):
            raise AwsUnavailable(
                f"{_endpoint(client, config)} cannot be reached while {doing}: check the network "
                f"and {_endpoint_settings(client)}, then try again."
            ) from exc
        if type(exc).__name__ == "ParamValidationError":
            raise ConfigError(f"AWS's client refused the call while {doing}: {exc}") from exc
        translated = aws_error(exc, config, doing)
        if translated is None:
            raise
        raise translated from exc


def _endpoint(client: Any, config: Config) -> str:
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return str(url) if url else f"the AWS endpoint of region {config.source.region!r}"


def _endpoint_settings(client: Any) -> str:
    """The settings that choose ``client``'s endpoint (only DynamoDB's has one of ddb2bq's)."""
    model = getattr(getattr(client, "meta", None), "service_model", None)
    if getattr(model, "service_name", "") == "dynamodb":
        return "[source] endpoint_url and region"
    return "[source] region (and AWS_ENDPOINT_URL, when it is set)"
