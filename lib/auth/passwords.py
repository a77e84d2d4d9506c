"""Password hashing for control-center users: bcrypt cost 12, no silent truncation."""

from __future__ import annotations

import threading

import bcrypt

from lib.errors import ValidationFailed

BCRYPT_COST = 12
MIN_LENGTH = 12
MAX_BYTES = 72  # bcrypt ignores everything after 72 bytes; refuse rather than truncate

_dummy_lock = threading.Lock()
_dummy: bytes | None = None


def dummy_hash() -> bytes:
    """A hash to check against when there is no real one (unknown e-mail, over-long password), so
    the answer takes as long as a real check: the same cost as every stored hash. Made on first
    use, once per process (a cost-12 hash takes ~250 ms; at import it would slow every start)."""
    global _dummy
    with _dummy_lock:
        if _dummy is None:
            _dummy = bcrypt.hashpw(b"not-a-real-password", bcrypt.gensalt(BCRYPT_COST))
        return _dummy


def password_problems(password: str) -> list[str]:
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Must be at least {MIN_LENGTH} characters.")
    if len(password.encode()) > MAX_BYTES:
        problems.append(f"Must be at most {MAX_BYTES} bytes.")
    return problems


def hash_password(password: str, field: str = "password") -> str:
    problems = password_problems(password)
    if problems:
        raise ValidationFailed({field: problems})
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def verify_password(password: str, password_hash: str | None) -> bool:
    encoded = password.encode()
    if len(encoded) > MAX_BYTES:
        bcrypt.checkpw(b"x", dummy_hash())
        return False
    if not password_hash:
        bcrypt.checkpw(encoded, dummy_hash())
        return False
    return bcrypt.checkpw(encoded, password_hash.encode())
