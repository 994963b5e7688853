"""The public surface is curated: __all__ is sorted and complete."""

from __future__ import annotations

import ddb2bq


def test_all_is_sorted_and_names_every_public_member() -> None:
    public = {name for name in dir(ddb2bq) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(ddb2bq, name)).__name__ == "module"}
    assert ddb2bq.__all__ == sorted(ddb2bq.__all__)
    assert set(ddb2bq.__all__) - {"__version__"} == public - modules
