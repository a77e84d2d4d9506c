"""Password hashing: the dummy hash costs what a real one costs, and is made once, lazily."""

from __future__ import annotations

import subprocess
import sys

from lib.auth.passwords import BCRYPT_COST, dummy_hash, hash_password
from tests.conftest import PROJECT_ROOT


def _cost(password_hash: bytes) -> int:
    return int(password_hash.split(b"$")[2])


def test_the_dummy_hash_has_the_real_cost() -> None:
    assert _cost(dummy_hash()) == BCRYPT_COST == _cost(hash_password("a long enough password").encode())


def test_the_dummy_hash_is_made_once_per_process_and_not_at_import() -> None:
    assert dummy_hash() is dummy_hash()
    probe = "import lib.auth.passwords as p; assert p._dummy is None; p.dummy_hash(); assert p._dummy is not None"
    subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, check=True, timeout=60)
