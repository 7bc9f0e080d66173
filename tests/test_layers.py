"""The package layering holds: no two packages of ``voiceforge`` import each other, directly or
round a longer loop (read from the source, so lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import voiceforge

ROOT = Path(voiceforge.__file__).parent


def package_imports() -> dict[str, dict[str, list[str]]]:
    """package → imported package → the files that import it."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "voiceforge":
                    names = [f"voiceforge.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("voiceforge."):
                    target = name.split(".")[1]
                    if target != package:
                        edges[package][target].append(str(path.relative_to(ROOT)))
    return edges


def test_no_package_imports_one_that_imports_it_back() -> None:
    edges = package_imports()
    pairs = [
        f"{a} ↔ {b} ({sorted(set(edges[a][b]))} / {sorted(set(edges[b][a]))})"
        for a in edges
        for b in edges[a]
        if a < b and a in edges.get(b, {})
    ]
    assert not pairs, "packages import each other: " + "; ".join(pairs)


def test_packages_form_layers() -> None:
    edges = package_imports()
    try:
        order = list(TopologicalSorter({a: set(b) for a, b in edges.items()}).static_order())
    except CycleError as error:
        raise AssertionError(f"a loop of package imports: {' → '.join(error.args[1])}") from None
    assert order.index("audio") < order.index("engines") < order.index("service") < order.index("server")
