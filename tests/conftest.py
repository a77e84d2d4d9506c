"""Fixtures: real servers (from DATABASE_URL / REDIS_URL, else embedded), a migrated template
database cloned per test, a flushed Valkey database, and test clients for both apps."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import bcrypt
import psycopg
import pytest
import redis
from falcon import testing
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lib.config.env import Settings
from lib.services import Services
from runtime import migrate
from runtime.app import create_app
from runtime.container import build_services
from runtime.embedded import DEV_DIR, EmbeddedPostgres, EmbeddedValkey
from tests.claims import claim_dir, claim_valkey_db

pytest_plugins = ["tests.payflow", "tests.chatflow"]  # payment fixtures and the chat harness

TEST_SECRET = "test-only-secret-7Qx2vK9pLm4Rt8Wz3Nc6Yb1Hd5Jf0Gs"
# pytest-xdist workers (gw0, gw1, ...) each get their own Valkey database and embedded servers;
# PostgreSQL needs nothing: every test clones its own database.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
# Counting down from 15 keeps tests off database 0, which a dev service on the same server uses;
# a number another run on this machine holds is skipped (tests/claims.py).
PREFERRED_VALKEY_DB = 15 - int(WORKER.removeprefix("gw") or 0) % 15
CC_ORIGIN = "https://cc.halobestie.test"
CC_PASSWORD = "correct horse battery staple"
_CC_HASH = bcrypt.hashpw(CC_PASSWORD.encode(), bcrypt.gensalt(12)).decode()  # once: bcrypt 12 is slow


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    """(PostgreSQL admin DSN, Valkey URL): the given servers, or embedded ones under .dev/. Each is
    this worker's alone while the run lasts, whatever other runs this machine has going."""
    stoppers = []
    claims = []
    pg_url = os.environ.get("DATABASE_URL", "")
    if not pg_url:
        pg_dir, held = claim_dir(DEV_DIR / f"test-pg-{WORKER}")
        claims.append(held)
        pg = EmbeddedPostgres(pg_dir)
        pg_url = pg.url("postgres")
        stoppers.append(pg.stop)
    valkey_url = os.environ.get("REDIS_URL", "")
    if not valkey_url:
        valkey_dir, held = claim_dir(DEV_DIR / f"test-valkey-{WORKER}")
        claims.append(held)
        vk = EmbeddedValkey(valkey_dir)
        valkey_url = vk.url
        stoppers.append(vk.stop)
    # Always a database number of our own, whatever the URL says.
    base, _, last = valkey_url.rstrip("/").rpartition("/")
    base = base if last.isdigit() else valkey_url.rstrip("/")
    number, held = claim_valkey_db(base, PREFERRED_VALKEY_DB)
    claims.append(held)
    yield pg_url, f"{base}/{number}"
    for stop in reversed(stoppers):
        stop()
    for held in claims:
        held.close()


def dsn_for(admin_dsn: str, dbname: str) -> str:
    return make_conninfo(admin_dsn, dbname=dbname)


def admin_connect(admin_dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    params = conninfo_to_dict(admin_dsn)
    # Clone and drop from a maintenance database, never from the template itself.
    params["dbname"] = "postgres"
    return psycopg.connect(make_conninfo(**params), autocommit=True)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def template_db(server_urls: tuple[str, str]) -> str:
    """A database with every migration applied, built once per migration set and reused."""
    admin_dsn = server_urls[0]
    digest = hashlib.sha256()
    for m in migrate.load():
        digest.update(m.checksum.encode())
    name = f"hb_tmpl_{digest.hexdigest()[:16]}"
    with admin_connect(admin_dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")
        try:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                building = f"{name}_build"
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(building)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
                migrate.migrate(dsn_for(admin_dsn, building))
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(name))
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(4242)")
    return name


def create_database(admin_dsn: str, template: str | None = None) -> str:
    name = f"hb_test_{uuid.uuid4().hex[:12]}"
    with admin_connect(admin_dsn) as conn:
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template or "template0")
        )
        conn.execute(query)
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    with admin_connect(admin_dsn) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_urls: tuple[str, str], template_db: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test only."""
    name = create_database(server_urls[0], template_db)
    yield dsn_for(server_urls[0], name)
    drop_database(server_urls[0], name)


@pytest.fixture
def empty_database_url(server_urls: tuple[str, str]) -> Iterator[str]:
    """A database with no migrations applied."""
    name = create_database(server_urls[0])
    yield dsn_for(server_urls[0], name)
    drop_database(server_urls[0], name)


@pytest.fixture
def valkey_url(server_urls: tuple[str, str]) -> str:
    client = redis.Redis.from_url(server_urls[1])
    client.flushdb()
    client.close()
    return server_urls[1]


@pytest.fixture
def settings(database_url: str, valkey_url: str) -> Settings:
    return Settings(
        app_env="test",
        database_url=database_url,
        redis_url=valkey_url,
        auth_jwt_secret=TEST_SECRET,
        log_format="text",
        db_pool_max=20,
        db_pool_timeout=2.0,
        cc_origin=(CC_ORIGIN,),
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = build_services(settings, application_name="halobestie-test")
    yield svc
    svc.close()


@pytest.fixture
def public(services: Services) -> testing.TestClient:
    return testing.TestClient(create_app("public", services))


@pytest.fixture
def internal(services: Services) -> testing.TestClient:
    return testing.TestClient(create_app("internal", services))


@pytest.fixture
def make_settings(settings: Settings):
    """Variants of the test settings: make_settings(redis_url=...)."""
    return lambda **changes: replace(settings, **changes)


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def anonymous(public: testing.TestClient):
    """Sign up a fresh anonymous customer; returns the token pair."""

    def make(display_name: str | None = None) -> dict[str, Any]:
        result = public.simulate_post("/api/shared/auth/anonymous", json={"display_name": display_name})
        assert result.status_code == 201, result.text
        data: dict[str, Any] = result.json["data"]
        return data

    return make


@pytest.fixture
def make_mitra(services: Services):
    def make(phone: str = "+6281200000001", name: str = "Bestie Ayu", active: bool = True) -> dict[str, Any]:
        row = services.db.fetch_one(
            "INSERT INTO mitras (phone, display_name, is_active) VALUES (%(p)s, %(n)s, %(a)s) RETURNING *",
            {"p": phone, "n": name, "a": active},
        )
        assert row is not None
        return row

    return make


@pytest.fixture
def make_cc_user(services: Services):
    """Insert a control-center user whose password is CC_PASSWORD (hash computed once per run)."""

    def make(role: str = "admin", email: str | None = None, active: bool = True) -> dict[str, Any]:
        row = services.db.fetch_one(
            "INSERT INTO cc_users (email, display_name, role, password_hash, is_active) "
            "VALUES (%(e)s, %(n)s, %(r)s, %(h)s, %(a)s) RETURNING *",
            {
                "e": email or f"{role}-{uuid.uuid4().hex[:8]}@halobestie.test",
                "n": role.title(),
                "r": role,
                "h": _CC_HASH,
                "a": active,
            },
        )
        assert row is not None
        return row

    return make


@pytest.fixture
def cc_login(services: Services, make_cc_user):
    """Create a CC user and sign it in without the login route (bcrypt 12 costs ~250 ms a check; the
    route itself is tested in test_cc_auth). Returns (user row, access token, refresh cookie value)."""
    from lib.auth.flows import access_for, sign_in

    def login(role: str = "admin") -> tuple[dict[str, Any], str, str]:
        user = make_cc_user(role)
        with services.db.connection() as conn:
            grant = sign_in(conn, services.settings, "cc_user", str(user["id"]))
        return user, str(access_for(services.settings, grant, role)["access_token"]), grant.refresh_token

    return login


@pytest.fixture
def mitra_login(services: Services, make_mitra):
    """Create a mitra and sign it in: returns (mitra row, access token)."""
    from lib.auth.flows import access_for, sign_in

    counter = iter(range(10, 100))

    def login(active: bool = True, name: str = "Bestie") -> tuple[dict[str, Any], str]:
        mitra = make_mitra(f"+62812000001{next(counter):02d}", name, active)
        with services.db.connection() as conn:
            grant = sign_in(conn, services.settings, "mitra", str(mitra["id"]))
        return mitra, str(access_for(services.settings, grant)["access_token"])

    return login


@pytest.fixture
def throwaway_valkey(tmp_path: Path):
    """A private valkey-server on its own port, so a test can stop it without touching the shared one."""
    from runtime.embedded import EmbeddedValkey

    server = EmbeddedValkey(tmp_path / "valkey")
    yield server
    server.stop()
