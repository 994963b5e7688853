"""The optional compiled build: the conversion hot path, compiled from the same source by mypyc.

``pip install .`` (or a wheel built with ``pip wheel .``) compiles ``ddb2bq.convert`` and
``ddb2bq.numeric`` to C extensions, which take the place of the ``.py`` modules beside them: the
same code, type-checked by mypy, about a fifth faster at conversion (``bench/convert.py`` prints
both builds). Everything else is metadata in ``pyproject.toml``.

Pure Python instead, the same behaviour:

- an editable install (``pip install -e .``, as ``scripts/setup`` makes): a compiled module would
  shadow the source being edited;
- ``PURE_DDB2BQ=1`` in the environment of the build (not ``DDB2BQ_...``: those are settings);
- a machine without a C compiler: each extension is optional, so a failed compile leaves the
  pure module in the wheel;
- the Lambda package (``ddb2bq package``) always: it copies the ``.py`` modules, because a
  module compiled here would not load on Lambda's Amazon Linux and CPU (see docs/lambda.md).

``ddb2bq.convert.COMPILED`` says which build is loaded.
"""

from __future__ import annotations

import os
import sys
from typing import Any

COMPILED_MODULES = ["src/ddb2bq/convert.py", "src/ddb2bq/numeric.py"]
"""The modules compiled; ``scripts/compiled.py`` reads this list (running this file without the
``__main__`` block below)."""


def extensions() -> list[Any]:
    """The compiled modules, or none for a pure build (see the module docstring)."""
    if os.environ.get("PURE_DDB2BQ") == "1" or "editable_wheel" in sys.argv:
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (a build requirement, only when compiling)

    modules = mypycify(COMPILED_MODULES, opt_level="3", group_name="ddb2bq")
    for module in modules:
        module.optional = True  # no compiler, or a failed compile: the pure module stays
    return list(modules)


if __name__ == "__main__":  # as setuptools' build backend runs it
    from setuptools import setup

    setup(ext_modules=extensions())
