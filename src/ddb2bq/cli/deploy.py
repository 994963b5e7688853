"""The deploy subcommands of ``ddb2bq``: ``package``, ``template``, ``enable-stream``, ``deploy``.

Thin: each parses its options, calls :mod:`ddb2bq.deploy.package`, :mod:`~ddb2bq.deploy.template` or :mod:`~ddb2bq.deploy.stack`, and
prints. AWS clients come from ``client_factory`` (boto3 by default, in ``[source] region``), so
tests pass clients on moto.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ddb2bq.cli.common import AddConfig
from ddb2bq.config import Config
from ddb2bq.deploy import package, stack, template
from ddb2bq.exceptions import ConfigError

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
    spec = package.PackageSpec(
        arch=args.arch,
        python=args.python,
        out=args.out,
        constraints=args.constraints,
        compile=not args.no_compile,
    )
    result = package.build_package(spec)
    compiled = f"compiled by {result.compiled_with}" if result.compiled_with else "no .pyc"
    print(
        f"{result.path}: {result.size_bytes / 1e6:.1f} MB ({result.size_bytes} bytes), "
        f"{result.files} files, Python {spec.python} on {spec.arch}, {compiled}",
        file=out or sys.stdout,
    )
    return 0


def run_template(
    args: argparse.Namespace,
    config: Config,
    out: TextIO | None = None,
    client_factory: ClientFactory = boto3_client,
) -> int:
    """``ddb2bq template``: the CloudFormation template, to stdout or ``--out``."""
    text = template.render(_template(args, config, client_factory, args.code_key))
    if args.out is None:
        (out or sys.stdout).write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=out or sys.stdout)
    return 0


def run_enable_stream(
    args: argparse.Namespace,
    config: Config,
    out: TextIO | None = None,
    client_factory: ClientFactory = boto3_client,
) -> int:
    """``ddb2bq enable-stream``: turn on the NEW_AND_OLD_IMAGES stream, print its ARN."""
    state = stack.enable_stream(client_factory("dynamodb", config), _table(config))
    verb = "enabled" if state.changed else "already enabled"
    print(f"{state.table}: stream {verb}: {state.stream_arn}", file=out or sys.stdout)
    return 0


def run_deploy(
    args: argparse.Namespace,
    config: Config,
    out: TextIO | None = None,
    client_factory: ClientFactory = boto3_client,
) -> int:
    """``ddb2bq deploy``: upload the zip (with --zip), then create or update the stack."""
    stream = out or sys.stdout
    code_key = args.code_key
    if args.zip is not None:
        s3 = client_factory("s3", config)
        code_key = stack.upload_code(
            s3, config.lambda_.code_bucket, code_key or config.lambda_.code_key, args.zip
        )
        print(f"code: s3://{config.lambda_.code_bucket}/{code_key}", file=stream)
    body = template.render(_template(args, config, client_factory, code_key))
    result = stack.deploy_stack(
        client_factory("cloudformation", config),
        template.stack_name_for(config),
        body,
        execute=not args.no_execute,
        report=lambda line: print(line, file=stream),
    )
    for key, value in sorted(result.outputs.items()):
        print(f"  {key}: {value}", file=stream)
    return 0


def _template(
    args: argparse.Namespace, config: Config, client_factory: ClientFactory, code_key: str | None
) -> dict[str, Any]:
    arn = args.stream_arn or config.lambda_.stream_arn
    if not arn:
        arn = stack.stream_arn_of(client_factory("dynamodb", config), _table(config))
    return template.build_template(config, stream_arn=arn, code_key=code_key)


def _table(config: Config) -> str:
    if not config.source.table:
        raise ConfigError("Set [source] table (or DDB2BQ_SOURCE_TABLE).")
    return config.source.table
