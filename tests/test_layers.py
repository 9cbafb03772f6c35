"""The import graph points down only and has no circle (DESIGN.md §2).

Reads every module's imports with `ast` (top-level and function-local ones alike, since a lazy
import is still a dependency) and fails on:
- an import of a higher layer: models <- activities <- workflows <- client <- workers <- cli, with
  bench/, scripts/, examples/ and tests/ above everything (migrations sit beside activities);
- a circle between packages (a package depending on itself through others);
- a Temporal client below client/: models, activities and workflows never import temporalio.client.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RANK = {"models": 0, "activities": 1, "migrations": 1, "workflows": 2, "client": 3, "workers": 4, "cli": 5,
        "bench": 6, "scripts": 6, "examples": 6, "tests": 6}
NO_TEMPORAL_CLIENT = {"models", "activities", "workflows"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in RANK:
        base = ROOT / pkg
        if base.is_dir():
            out += [(pkg, p) for p in sorted(base.rglob("*.py")) if "versions" not in p.parts]
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _graph() -> tuple[dict[str, set[str]], list[str], list[str]]:
    """(package -> packages it imports, upward imports, temporal-client imports below client/)."""
    deps: dict[str, set[str]] = defaultdict(set)
    upward, clients = [], []
    for pkg, path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        for name in sorted(_imports(path)):
            top = name.split(".")[0]
            if name.startswith("temporalio.client") and pkg in NO_TEMPORAL_CLIENT:
                clients.append(f"{rel} imports {name}")
            if top not in RANK or top == pkg:
                continue
            deps[pkg].add(top)
            if RANK[top] > RANK[pkg]:
                upward.append(f"{rel} imports {name} ({top} is above {pkg})")
    return deps, sorted(set(upward)), sorted(set(clients))


def _cycles(deps: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(deps.get(node, ())):
            if nxt == path[0]:
                found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each circle once, from its smallest package
                walk(nxt, [*path, nxt])

    for start in sorted(deps):
        walk(start, [start])
    return found


def test_the_graph_is_read() -> None:
    deps, _, _ = _graph()
    # a sanity check that the parser sees the real dependencies (an empty graph would pass anything)
    assert "models" in deps["activities"] and "client" in deps["workers"] and "workflows" in deps["workers"]


def test_no_import_from_a_higher_layer() -> None:
    _, upward, _ = _graph()
    assert upward == []


def test_no_circle_between_packages() -> None:
    deps, _, _ = _graph()
    assert _cycles(deps) == []


def test_only_client_and_above_use_the_temporal_client() -> None:
    _, _, clients = _graph()
    assert clients == []


def test_the_checks_catch_what_they_are_for() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
