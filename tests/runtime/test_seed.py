"""`python -m runtime seed-demo`: refused outside development and test; beside `make dev` the
commands it prints walk one chat end to end, and a rerun finds the same data and walks again."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lib.config.env import Settings
from lib.services import Services
from tests.conftest import PROJECT_ROOT
from tests.helpers import process_env
from tests.runtime.test_dev import Dev
from tests.runtime.test_invoke import run_runtime


def _seed(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_runtime("seed-demo", env=env)


def _ids(printed: str) -> dict[str, str]:
    return dict(re.findall(r"^#   (tier|mitra|customer) +([0-9a-f-]{36})", printed, re.MULTILINE))


def test_seed_demo_refuses_outside_development_and_test(settings: Settings) -> None:
    for app_env in ("production", "staging"):
        env = process_env(settings, APP_ENV=app_env, CHAT_ENCRYPTION_KEYS="k1:" + "A" * 43 + "=")
        run = _seed(env)
        assert run.returncode == 2, run.stdout + run.stderr
        assert "seed-demo runs only with APP_ENV development or test" in run.stderr
        assert "TOKEN" not in run.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed walk uses curl")
def test_the_printed_walk_runs_a_chat_end_to_end_and_a_rerun_walks_again(
    settings: Settings, services: Services, tmp_path: Path
) -> None:
    dev = Dev(process_env(settings, DEV_DATA_DIR=str(tmp_path)))
    try:
        dev.wait_for("ready: API docs at ")
        walks = []
        for _ in range(2):
            seeded = _seed(dev.env)
            assert seeded.returncode == 0, seeded.stderr
            walk = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", seeded.stdout],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert walk.returncode == 0, seeded.stdout + "\n---\n" + walk.stdout + walk.stderr
            walks.append((seeded.stdout, walk.stdout))
    finally:
        dev.stop()
    (first, first_walk), (second, second_walk) = walks
    assert _ids(first) == _ids(second)
    assert set(_ids(first)) == {"tier", "mitra", "customer"}
    for printed in (first, second):
        assert "npx wscat -c" in printed
        assert "websockets" in printed
        assert "/internal/_test/payments/" in printed
    for out in (first_walk, second_walk):
        frames = [line for line in out.splitlines() if line.startswith('{"type":')]
        assert frames[0].startswith('{"type":"auth.ok"'), out
        assert frames[-1].startswith('{"type":"message.sent"'), out
        assert '"content":"Halo Bestie!"' in out  # the transcript the mitra reads over REST
    ids = _ids(first)
    counts = services.db.fetch_one(
        "SELECT (SELECT count(*) FROM mitras WHERE phone = '+6281299990001') AS mitras, "
        "(SELECT count(*) FROM customers WHERE phone = '+6281199990001') AS customers, "
        "(SELECT count(*) FROM chat_sessions WHERE customer_id = %(customer)s) AS sessions, "
        "(SELECT count(*) FROM chat_sessions WHERE customer_id = %(customer)s AND status = 'completed') AS done",
        {"customer": ids["customer"]},
    )
    # one of each, two walks: the first chat wound down by the rerun, the second still active
    assert counts == {"mitras": 1, "customers": 1, "sessions": 2, "done": 1}
