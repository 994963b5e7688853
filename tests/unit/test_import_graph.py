"""The source tree's import graph: no module imports another that imports it back (directly or
through others), and the core imports no runtime, cloud client or command line."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import ddb2bq

SRC = Path(ddb2bq.__file__).parent
CORE = ("ddb2bq.records", "ddb2bq.convert", "ddb2bq.schema", "ddb2bq.rows", "ddb2bq.pipeline")
OUTER = (
    "ddb2bq.aws_lambda",
    "ddb2bq.cli",
    "ddb2bq.bigquery",
    "ddb2bq.dead_letters",
    "ddb2bq.deploy",
    "ddb2bq.dynamodb",
    "ddb2bq.runner",
    "ddb2bq.state",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: Collection[str]) -> Iterator[str]:
    """Every ddb2bq module ``path`` imports, wherever the import stands (lazy ones included).

    ``from ddb2bq.x import y`` imports module ``ddb2bq.x.y`` when there is one, else ``ddb2bq.x``
    (a package's own ``__init__`` running first is Python's doing, not an edge of the code)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in modules else node.module


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in SRC.rglob("*.py")}
    return {
        name: {target for target in imported(path, modules) if target in modules} - {name}
        for name, path in modules.items()
    }


def cycle_through(edges: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start -> ... -> start, or None."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for target in edges.get(node, ()):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    # GIVEN every import of the package, lazy ones inside functions included
    edges = graph()
    # WHEN each module's imports are followed  THEN none leads back to it
    cycles = {name: cycle_through(edges, name) for name in edges}
    assert {name: cycle for name, cycle in cycles.items() if cycle} == {}


def test_the_core_imports_no_runtime_client_or_command_line() -> None:
    edges = graph()
    for name in CORE:
        outward = {t for t in edges[name] if t.startswith(OUTER)}
        assert outward == set(), f"{name} imports {sorted(outward)}"


def test_the_graph_sees_lazy_imports() -> None:
    # GIVEN the Lambda module, which imports the composition root inside a function
    # THEN the graph has that edge (so the cycle test covers lazy imports too)
    assert "ddb2bq.bigquery.factory" in graph()["ddb2bq.aws_lambda"]
