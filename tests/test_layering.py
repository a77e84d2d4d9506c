"""Dependency direction runtime -> functions -> lib: lib/ never imports upward."""

from __future__ import annotations

import ast

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
