"""The Lambda function's cold start imports only what its first batch needs: the init phase (the
handler module imported in a Lambda runtime, which makes the container's state) leaves the
command line, the other runtimes, the full BigQuery client, boto3 and the TOML reader unimported;
and a section the configuration does not set is its defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ddb2bq.config import Config, load_config

# Imported by the init phase, these would be paid by every cold start and used by none of them
# (the Storage Write client loads in the background, after the init phase: not listed here).
NOT_AT_COLD_START = (
    "boto3",
    "botocore",
    "google.cloud.bigquery",
    "tomllib",
    "ddb2bq.backfill",
    "ddb2bq.bigquery.reclassify",
    "ddb2bq.bigquery.storage_write",
    "ddb2bq.cli",
    "ddb2bq.dead_letters.replay",
    "ddb2bq.deploy",
    "ddb2bq.dynamodb",
    "ddb2bq.runner",
    "ddb2bq.state",
    "ddb2bq.verify",
    # what only init, schema evolution, the MERGE or entities need
    "ddb2bq.bigquery.entity_mirrors",
    "ddb2bq.bigquery.generations",
    "ddb2bq.bigquery.mirror",
    "ddb2bq.entities",
    # the light REST client speaks HTTP on sockets: http.client would import email (and ssl,
    # which a plain-HTTP endpoint such as this one does not need)
    "email",
    "http.client",
    "ssl",
    "hashlib",  # a hashed column or snapshot id only: its OpenSSL library loads slowly
)

FUNCTION_ENVIRON = {
    "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",  # as in Lambda: the init phase runs at import
    "DDB2BQ_SOURCE_TABLE": "ExampleTableWithStream",
    "DDB2BQ_TARGET_PROJECT": "analytics-prod",
    "DDB2BQ_TARGET_DATASET": "dynamodb",
    "DDB2BQ_TARGET_ENDPOINT": "http://127.0.0.1:9",  # never reached: nothing is written
    "DDB2BQ_DEAD_LETTERS_KIND": "sqs",
    "DDB2BQ_DEAD_LETTERS_SQS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dl",
}

PROBE = """
import gc, json, sys
out, sys.stdout = sys.stdout, sys.stderr  # the init phase logs to stdout
import ddb2bq.aws_lambda
state = ddb2bq.aws_lambda._container
out.write(json.dumps({
    "modules": sorted(sys.modules),
    "warm_start": state is not None and state.storage_loader is not None,
    "frozen": gc.get_freeze_count(),
    "tracked": len(gc.get_objects()),
}))
out.flush()
"""


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted({m for m in modules for n in names if m == n or m.startswith(n + ".")})


def test_the_init_phase_imports_nothing_the_first_batch_does_not_need() -> None:
    # GIVEN a fresh interpreter in a Lambda runtime, configured for the default writer
    environ = {**FUNCTION_ENVIRON, "PATH": os.environ.get("PATH", os.defpath)}
    # WHEN the handler module is imported (Lambda's init phase)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=environ, check=True
    )
    found = json.loads(done.stdout)
    # THEN the container's state is made (the warm start began) and the write path is imported,
    assert found["warm_start"] is True
    assert "ddb2bq.bigquery.insert_all" in found["modules"]
    # but nothing only another runtime, an error or a later batch uses
    assert loaded(found["modules"], NOT_AT_COLD_START) == []
    # AND what it made is out of the garbage collector's reach (tens of thousands of objects
    # that live as long as the container), not walked again by every full collection
    assert found["frozen"] > 10_000
    assert found["tracked"] < found["frozen"] / 10


def test_a_section_left_unset_is_its_defaults() -> None:
    # GIVEN an environment that sets only [source] and [target]
    environ = {"DDB2BQ_SOURCE_TABLE": "orders", "DDB2BQ_TARGET_DATASET": "dynamodb"}
    # WHEN the configuration is read
    config = load_config(environ=environ)
    # THEN every other section equals the default configuration's
    defaults = Config()
    assert config.columns == defaults.columns
    assert config.dead_letters == defaults.dead_letters
    assert config.google == defaults.google
    assert config.lambda_ == defaults.lambda_
    assert config.runner == defaults.runner
