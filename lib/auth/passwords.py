"""Password hashing for control-center users: bcrypt cost 12, no silent truncation."""

from __future__ import annotations

import bcrypt

from lib.errors import ValidationFailed

BCRYPT_COST = 12
MIN_LENGTH = 12
MAX_BYTES = 72  # bcrypt ignores everything after 72 bytes; refuse rather than truncate
# A valid hash to compare against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = bcrypt.hashpw(b"not-a-real-password", bcrypt.gensalt(4))


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
        bcrypt.checkpw(b"x", _DUMMY_HASH)
        return False
    if not password_hash:
        bcrypt.checkpw(encoded, _DUMMY_HASH)
        return False
    return bcrypt.checkpw(encoded, password_hash.encode())
