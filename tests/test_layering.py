"""Dependency direction runtime -> functions -> lib: lib/ never imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def _imports(path_glob: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted(PROJECT_ROOT.glob(path_glob)):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(PROJECT_ROOT)), a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((str(path.relative_to(PROJECT_ROOT)), node.module))
    return found


def test_lib_never_imports_functions_or_runtime() -> None:
    bad = [(f, m) for f, m in _imports("lib/**/*.py") if m.split(".")[0] in ("functions", "runtime")]
    assert bad == []


def test_functions_never_import_runtime() -> None:
    bad = [(f, m) for f, m in _imports("functions/**/*.py") if m.split(".")[0] == "runtime"]
    assert bad == []


PACKAGES = ("lib", "runtime", "functions")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((PROJECT_ROOT / pkg).rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> list[str]:
    """The project modules an import statement loads (`from a.b import c` loads a.b.c if it is one)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return [n for n in names if n in modules]


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """Every import edge between project modules (top level, TYPE_CHECKING blocks and function
    bodies alike), and the imports of project modules that sit inside a function."""
    modules = _project_modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    nested: list[tuple[str, str]] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[name].update(t for t in _targets(node, modules) if t != name)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        nested += [(name, t) for t in _targets(inner, modules)]
    return edges, nested


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_no_project_import_hides_inside_a_function() -> None:
    # An import inside a function is how a cycle gets dodged; third-party optional extras may.
    _, nested = _graph()
    assert nested == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
