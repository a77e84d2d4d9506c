"""halobestie_build_info's version carries the build's git revision: the image's GIT_REVISION, else
the checkout's HEAD, else "unknown" (tests/test_deploy.py runs the image's case end to end)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from lib import metrics as prom
from tests.conftest import PROJECT_ROOT


@pytest.fixture(autouse=True)
def fresh_revision() -> Iterator[None]:
    prom.revision.cache_clear()
    yield
    prom.revision.cache_clear()


def test_the_build_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_REVISION", "9f8e7d6")
    assert prom.version().endswith("+9f8e7d6")


@pytest.mark.skipif(
    not (PROJECT_ROOT / ".git").exists() or not shutil.which("git"), reason="not run from a git checkout"
)
def test_a_checkout_reports_its_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_REVISION", raising=False)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert prom.revision() == head
    assert prom.version().endswith(f"+{head}")


@pytest.mark.parametrize("given", ["a b", "x" * 41, "1.0\n2.0", "rev$(id)"])
def test_a_label_value_is_never_unbounded(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv("GIT_REVISION", given)
    assert prom.revision() == "unknown"
