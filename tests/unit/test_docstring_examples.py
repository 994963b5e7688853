"""The examples in the docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ddb2bq

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(ddb2bq.__path__, "ddb2bq.")
    if name != "ddb2bq.local"  # its examples start servers: the integration tests run them
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
