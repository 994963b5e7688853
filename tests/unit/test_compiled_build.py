"""Which build of the conversion hot path a process loads (see setup.py): the compiled one where
``scripts/test`` asks for it (``EXPECT_COMPILED_DDB2BQ=1``, the compiled site first on the path),
else the source, as an editable install must (a compiled module would shadow edited code)."""

from __future__ import annotations

import os
from pathlib import Path

import ddb2bq.convert
import ddb2bq.numeric
from ddb2bq.convert import COMPILED, lean_item

EXPECT_COMPILED = os.environ.get("EXPECT_COMPILED_DDB2BQ") == "1"


def test_the_build_loaded_is_the_one_this_run_asked_for() -> None:
    # GIVEN the run's wish (the compiled pass of scripts/test sets it, every other run does not)
    # WHEN the conversion modules are imported
    loaded = {Path(module.__file__ or "").suffix for module in (ddb2bq.convert, ddb2bq.numeric)}
    # THEN both are the build asked for, and COMPILED says which
    assert loaded == ({".so"} if EXPECT_COMPILED else {".py"})
    assert COMPILED is EXPECT_COMPILED


IMAGE = {
    "id": {"S": "o-1"},
    "price": {"N": "12.50"},
    "ledger": {"N": "0.1000000000000000000001"},
    "tags": {"SS": ["b", "a"]},
    "avatar": {"B": "AAE="},
    "lines": {"L": [{"M": {"qty": {"N": "2"}, "big": {"N": "1" * 38}}}]},
}
"""An item with a value of every kind the sidecar tags, and a long exact number."""


def test_either_build_converts_an_item_the_same_way() -> None:
    # GIVEN an item with a value of every kind the sidecar tags, and a long exact number
    image = IMAGE
    # WHEN it is converted by whichever build is loaded
    item, types = lean_item(image)
    # THEN the plain item and the sidecar are the documented ones
    assert item == {
        "id": "o-1",
        "price": 12.5,
        "ledger": "0.1000000000000000000001",
        "tags": ["a", "b"],
        "avatar": "AAE=",
        "lines": [{"qty": 2, "big": "1" * 38}],
    }
    assert types == {"ledger": "N", "tags": "SS", "avatar": "B", "lines": {"0": {"big": "N"}}}
