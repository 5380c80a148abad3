"""The shape of the packages: no import circle inside one, counting every import (at the top, in
functions and type-only ones alike), so each package reads from its leaves up."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in sorted((ROOT / package).rglob("*.py")):
        here = _module(path)
        is_package = path.name == "__init__.py"
        graph.add_node(here)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".") if is_package else here.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from PKG import MOD` takes the module; `from PKG import NAME`, the package's name
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in _modules(package) else stem
                           for a in node.names]
            for target in targets:
                # the deepest module of the package the import names
                while target and target.startswith(package) and target not in _modules(package):
                    target = target.rpartition(".")[0]
                if target.startswith(package) and target != here:
                    graph.add_edge(here, target)
    return graph


_MODULE_CACHE: dict[str, set] = {}


def _modules(package: str) -> set:
    if package not in _MODULE_CACHE:
        _MODULE_CACHE[package] = {_module(p) for p in (ROOT / package).rglob("*.py")}
    return _MODULE_CACHE[package]


@pytest.mark.parametrize("package", ["nasframe_core", "nasframe_darts", "nasframe_blackbox", "nasframe_spaces",
                                     "nasframe_cpu", "nasframe_proxies"])
def test_no_import_circle_inside_a_package(package):
    graph = import_graph(package)
    assert set(graph.nodes) == _modules(package)
    circles = list(nx.simple_cycles(graph))
    assert circles == [], f"import circles in {package}: {circles[:3]}"


def test_the_graph_sees_lazy_and_type_only_imports(tmp_path):
    """The check itself: an import inside a function and one under TYPE_CHECKING both count."""
    graph = import_graph("nasframe_core")
    assert graph.has_edge("nasframe_core.datasets", "nasframe_core.plugins")  # module level
    assert graph.has_edge("nasframe_core.score_cmd", "nasframe_core.scoring")  # inside a function
    assert graph.has_edge("nasframe_core.hookspecs", "nasframe_core.data")  # under TYPE_CHECKING
