"""The route table, reviewed as data: every route or auth change is a visible diff here."""

from __future__ import annotations

import subprocess
import sys

from runtime.app import route_table
from tests.conftest import PROJECT_ROOT

ROUTES = """
internal GET /health none runtime.probes.health
internal GET /ready none runtime.probes.ready
public GET /health none runtime.probes.health
public GET /ready none runtime.probes.ready
""".strip().splitlines()


def test_route_table_snapshot() -> None:
    assert route_table() == ROUTES


def test_cli_prints_the_same_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "routes"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip().splitlines() == ROUTES
