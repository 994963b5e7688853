"""The Lambda's light path: with ``writer = "insert_all"`` the handler, imported from the built
zip in a fresh isolated process, writes the AWS sample event without importing the Google client
libraries (google.cloud.bigquery, google.api_core, gRPC, requests): its cold start does not pay
for them. With ``storage_write`` it imports gRPC and google.api_core in the background (which
shows the probe sees them), still not the full BigQuery client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.api_core.retry import Retry
from google.cloud import bigquery

from ddb2bq.local import Server
from tests.integration.aws_lambda.conftest import (
    BuiltZip,
    changelog_rows,
    init_replication,
    replication_environ,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"
HEAVY = ("google.cloud.bigquery", "google.api_core", "grpc", "requests", "urllib3", "google.auth")

CHILD = """
import json, sys
sys.path[:0] = {path!r}
answers, sys.stdout = sys.stdout, sys.stderr
from ddb2bq.aws_lambda import handler
response = handler(json.loads({event!r}), None)
from ddb2bq import aws_lambda  # the default writer's Storage Write client loads in the background
loader = aws_lambda.container_handler().storage_loader
loaded = loader is None or loader.wait(60)
answers.write(json.dumps({{"response": response, "loaded": loaded, "modules": sorted(sys.modules)}}))
answers.flush()  # at exit, with the container's objects frozen, it may go unflushed
"""


def heavy(modules: list[str]) -> list[str]:
    return sorted({m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")})


@pytest.mark.parametrize("writer", ["insert_all", "storage_write"])
def test_the_insert_all_path_writes_without_the_google_client_libraries(
    writer: str,
    lambda_zip: BuiltZip,
    lambda_runtime: Path,
    bigquery_server: Server,
    bq_project: str,
    bq_client: bigquery.Client,
    dataset: bigquery.Dataset,
    bq_retry: Retry,
    tmp_path: Path,
) -> None:
    # GIVEN the function's environment for ExampleTableWithStream on the emulator
    environ = replication_environ(
        bigquery_server,
        bq_project,
        dataset.dataset_id,
        "ExampleTableWithStream",
        tmp_path / "dead-letters",
        DDB2BQ_TARGET_WRITER=writer,
    )
    config = init_replication(bq_client, environ, [("Id", "N")])
    # WHEN a fresh process that sees only the zip and boto3 handles the AWS sample event
    code = CHILD.format(
        path=[str(lambda_zip.unpacked), str(lambda_runtime)],
        event=(FIXTURES / "aws_sample_event.json").read_text(),
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env={**environ, "PATH": os.defpath},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    # THEN the three changes are written
    assert result["response"] == {"batchItemFailures": []}
    assert len(changelog_rows(bq_client, config, bq_retry)) == 3
    # ... and on insert_all no Google client library (nor google-auth: no credentials for an
    # emulator) was imported; Storage Write needs its own (loaded beside the first write, see
    # docs/lambda.md), but not the full BigQuery client
    assert result["loaded"] is True
    loaded = heavy(result["modules"])
    if writer == "insert_all":
        assert loaded == []
    else:
        assert {"google.api_core", "grpc"} <= set(loaded)
        assert "google.cloud.bigquery" not in loaded
