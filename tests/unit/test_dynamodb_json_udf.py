"""The BigQuery UDF of docs/dynamodb_json_udf.sql, run by Node.js (BigQuery's UDFs are
JavaScript too), rebuilds the same items as ddb2bq.images.dynamodb_item."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb2bq.convert import lean_item
from ddb2bq.images import dynamodb_item
from ddb2bq.verify.canonical import canonical_map
from tests.strategies import items, to_event_json

UDF = Path(__file__).resolve().parents[2] / "docs" / "dynamodb_json_udf.sql"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js runs the UDF; it is not installed")
HARNESS = """
const dynamodb_json = (item, item_types) => {{ {body} }};
const lines = require("fs").readFileSync(0, "utf8").split("\\n").filter(Boolean);
for (const line of lines) {{
  const [item, types] = JSON.parse(line);
  console.log(JSON.stringify(dynamodb_json(item, types)));
}}
"""


def run_udf(pairs: list[tuple[str | None, str | None]]) -> list[Any]:
    body = re.search(r'LANGUAGE js AS r"""(.*?)"""', UDF.read_text(), re.DOTALL)
    assert body is not None, 'the UDF\'s body is between r""" quotes'
    script = HARNESS.format(body=body[1])
    stdin = "\n".join(json.dumps(pair) for pair in pairs) + "\n"
    done = subprocess.run(
        [str(NODE), "-e", script], input=stdin, capture_output=True, text=True, check=True
    )
    return [json.loads(line) for line in done.stdout.split("\n") if line]  # not splitlines: \u2028


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items(), min_size=1, max_size=30))
def test_the_udf_rebuilds_what_the_python_function_rebuilds(images: list[dict[str, Any]]) -> None:
    # GIVEN lean rows of any items, their JSON columns as TO_JSON_STRING gives them
    lean = [lean_item(to_event_json(image)) for image in images]
    pairs = [
        (orjson.dumps(item).decode(), None if types is None else orjson.dumps(types).decode())
        for item, types in lean
    ]
    # WHEN the UDF runs on each
    rebuilt = run_udf(pairs)
    # THEN each is the item the Python function rebuilds, and the original item
    for (item, types), text, image in zip(lean, rebuilt, images, strict=True):
        assert canonical_map(json.loads(text)) == canonical_map(dynamodb_item(item, types))
        assert canonical_map(json.loads(text)) == canonical_map(to_event_json(image))


def test_a_null_item_is_null_and_a_member_named_proto_is_kept() -> None:
    item = {"__proto__": "x", "tags": ["a"], "n": "123456789012345678901234567890"}
    types = {"tags": "SS", "n": "N"}
    (none, text) = run_udf([(None, None), (json.dumps(item), json.dumps(types))])
    assert none is None
    assert json.loads(text) == {
        "__proto__": {"S": "x"},
        "tags": {"SS": ["a"]},
        "n": {"N": "123456789012345678901234567890"},
    }
