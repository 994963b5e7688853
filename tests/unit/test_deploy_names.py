"""The names ``ddb2bq template`` and ``deploy`` derive from the table: valid for CloudFormation
and Lambda, within their limits, unique per table, and unchanged where they needed no change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddb2bq.config import Config, load_config
from ddb2bq.deploy.template import (
    build_template,
    derived_name,
    function_name_for,
    legacy_name,
    renamed_from,
    stack_name_for,
)

TABLE_NAMES = st.from_regex(r"[A-Za-z0-9_.-]{3,255}", fullmatch=True)  # DynamoDB's rule
VALID = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")  # a stack's rule, within a function's limit


def config_for(table: str, tmp_path: Path, extra: str = "") -> Config:
    path = tmp_path / "ddb2bq.toml"
    path.write_text(
        f'[source]\ntable = "{table}"\n[target]\nproject = "analytics-prod"\n'
        f'dataset = "dynamodb"\n[lambda]\ncode_bucket = "acme-artifacts"\n{extra}'
    )
    return load_config(path, environ={})


@given(st.lists(TABLE_NAMES, min_size=2, max_size=20, unique=True))
def test_distinct_tables_get_distinct_valid_names(tables: list[str]) -> None:
    # GIVEN distinct DynamoDB table names  WHEN their names are derived
    names = [derived_name(table) for table in tables]
    # THEN no two are the same, and each is a valid stack and function name
    assert len(set(names)) == len(names)
    assert all(VALID.fullmatch(name) for name in names), names


@given(st.from_regex(r"[A-Za-z0-9-]{2,56}[A-Za-z0-9]", fullmatch=True))
def test_names_that_needed_no_change_keep_their_form(table: str) -> None:
    # GIVEN a table whose `ddb2bq-<table>` is already a valid name of at most 64 characters
    # (earlier versions cut a trailing '-': `orders-` was named as `orders`, so it changes)
    # WHEN its name is derived  THEN it is that name, as earlier versions gave it
    assert derived_name(table) == f"ddb2bq-{table}" == legacy_name(table)


@pytest.mark.parametrize(
    "tables",
    [
        ("orders-v2", "orders_v2", "orders.v2", "orders__v2", "orders-v2-"),
        ("a" * 57 + "x", "a" * 57 + "y", "a" * 255),  # the same first 57 characters
        ("Orders", "orders"),  # CloudFormation's and Lambda's names are case-sensitive
    ],
)
def test_names_that_collided_before_are_distinct(tables: tuple[str, ...]) -> None:
    names = [derived_name(table) for table in tables]
    assert len(set(names)) == len(tables), names
    assert all(len(name) <= 64 for name in names)


def test_every_derived_name_of_the_stack_fits_its_service(tmp_path: Path) -> None:
    # GIVEN DynamoDB's longest table name
    table = "orders_" + "x" * 248
    config = config_for(table, tmp_path)
    stream = f"arn:aws:dynamodb:eu-west-1:123456789012:table/{table}/stream/2026-11-30T00:00:00.000"
    # WHEN the template is built
    document = build_template(config, stream_arn=stream)
    resources = document["Resources"]
    # THEN the function (64), the stack (128) and the log group (512) fit, and they agree
    function = resources["Function"]["Properties"]["FunctionName"]
    assert len(function) <= 64
    assert VALID.fullmatch(function)
    assert stack_name_for(config) == function == function_name_for(config)
    assert resources["LogGroup"]["Properties"]["LogGroupName"] == f"/aws/lambda/{function}"
    # AND the role, queue and alarms are left for CloudFormation to name (unique, within limits)
    for logical_id in ("Role", "DeadLetterQueue", "Errors", "IteratorAgeCritical"):
        properties = resources[logical_id]["Properties"]
        assert not {"RoleName", "QueueName", "AlarmName"} & set(properties), logical_id


def test_a_renamed_table_points_at_its_old_stack_name(tmp_path: Path) -> None:
    # GIVEN orders_v2, whose stack earlier versions named ddb2bq-orders-v2
    config = config_for("orders_v2", tmp_path)
    # THEN the old name is known (deploy refuses to start a second stack beside it)
    assert renamed_from(config) == "ddb2bq-orders-v2"
    assert stack_name_for(config) == derived_name("orders_v2") != "ddb2bq-orders-v2"
    # AND tables whose names did not change, or explicit names, have no old name
    assert renamed_from(config_for("orders-v2", tmp_path)) is None
    assert renamed_from(config_for("orders_v2", tmp_path, 'stack_name = "mine"\n')) is None


def test_explicit_names_are_used_as_they_are(tmp_path: Path) -> None:
    config = config_for(
        "orders_v2", tmp_path, 'function_name = "orders-to-bq"\nstack_name = "orders-stack"\n'
    )
    assert (function_name_for(config), stack_name_for(config)) == ("orders-to-bq", "orders-stack")
