"""Fixtures for the Lambda tests: the deployment zip (built once per session), a Lambda-like
runtime folder holding boto3, and a replication target on the emulator.

The zip is built for this machine (x86_64) and the Python running the tests, from a snapshot of
the ddb2bq sources (other work in the tree cannot change it between two builds).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

import ddb2bq
from ddb2bq.bigquery.tables import TableRefs, init_tables, initial_layout
from ddb2bq.config import Config, load_config
from ddb2bq.deploy.package import PackageResult, PackageSpec, build_package
from ddb2bq.local import Server

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
"""What the Lambda Python runtime provides next to the function's code."""


@dataclass(frozen=True)
class BuiltZip:
    """The built zip, the sources it was built from, and its contents unpacked."""

    result: PackageResult
    spec: PackageSpec
    unpacked: Path


@pytest.fixture(scope="session")
def lambda_zip(tmp_path_factory: pytest.TempPathFactory) -> BuiltZip:
    work = tmp_path_factory.mktemp("lambda-zip")
    # a copy of the ddb2bq this run imports, as installed: with a compiled install's RECORD and
    # mypyc's shared library beside the package, so the zip takes the compiled converter too
    installed = Path(ddb2bq.__file__).parent
    sources = work / "site" / "ddb2bq"
    shutil.copytree(installed, sources, ignore=shutil.ignore_patterns("__pycache__"))
    for beside in sorted(installed.parent.glob("ddb2bq[-_]*")):
        if beside.name.endswith(".dist-info"):
            shutil.copytree(beside, sources.parent / beside.name)
        elif beside.name.startswith("ddb2bq__mypyc."):
            shutil.copyfile(beside, sources.parent / beside.name)
    spec = PackageSpec(arch="x86_64", python=PYTHON, out=work / "ddb2bq-lambda.zip", source=sources)
    result = build_package(spec)
    unpacked = work / "task"
    with zipfile.ZipFile(result.path) as archive:
        archive.extractall(unpacked)
    return BuiltZip(result, spec, unpacked)


@pytest.fixture(scope="session")
def lambda_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with boto3 and its dependencies only, as the Lambda runtime has them."""
    runtime = tmp_path_factory.mktemp("lambda-runtime")
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert spec.origin is not None, name
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(
                origin.parent, runtime / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copyfile(origin, runtime / origin.name)
    return runtime


def replication_environ(
    bigquery_server: Server,
    project: str,
    dataset: str,
    table: str,
    dead_letters: Path,
    **settings: str,
) -> dict[str, str]:
    """The function's DDB2BQ_* environment for replicating ``table`` into the emulator."""
    return {
        "DDB2BQ_SOURCE_TABLE": table,
        "DDB2BQ_TARGET_PROJECT": project,
        "DDB2BQ_TARGET_DATASET": dataset,
        "DDB2BQ_TARGET_ENDPOINT": bigquery_server.endpoint,
        "DDB2BQ_TARGET_GRPC_ENDPOINT": bigquery_server.grpc_endpoint,
        "DDB2BQ_DEAD_LETTERS_KIND": "local",
        "DDB2BQ_DEAD_LETTERS_PATH": str(dead_letters),
        **settings,
    }


def init_replication(
    client: bigquery.Client, environ: Mapping[str, str], key_schema: list[tuple[str, str]]
) -> Config:
    """``ddb2bq init`` for the table of ``environ``: changelog and mirror on the emulator."""
    config = load_config(environ=environ)
    init_tables(client, config, initial_layout(config, key_schema))
    return config


def query(client: bigquery.Client, sql: str, retry: Retry) -> list[dict[str, Any]]:
    rows = client.query(sql, retry=retry, job_retry=retry).result(retry=retry, timeout=60)
    return [dict(row.items()) for row in rows]


def mirror_rows(
    client: bigquery.Client, config: Config, retry: Retry, columns: str = "*"
) -> list[dict[str, Any]]:
    refs = TableRefs.from_config(config, client.project)
    return query(client, f"SELECT {columns} FROM {refs.mirror.sql}", retry)


def changelog_rows(client: bigquery.Client, config: Config, retry: Retry) -> list[dict[str, Any]]:
    refs = TableRefs.from_config(config, client.project)
    return query(client, f"SELECT * FROM {refs.changes.sql} ORDER BY seq", retry)
