"""Call one endpoint the way a listener does, without a socket: `invoke(services, "GET /path", ...)`.

The request goes through a WSGI call into the same Falcon app the listener serves
(runtime.app.create_app, built once per services and surface): the middleware, the router and its
converters, authentication and permissions, the endpoint's schemas, the handler, the rendering and
the error envelope all run as they do over HTTP (runtime/pipeline.py). Tests, the CLI
(`python -m runtime invoke`) and seed-demo use it.
"""

from __future__ import annotations

import io
import secrets
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes, urlencode
from wsgiref.headers import Headers

import orjson

from lib.auth.accounts import load_account, require_usable
from lib.auth.flows import access_for, sign_in
from lib.auth.tokens import issue_access_token
from lib.cc_users import create_cc_user
from lib.jsonenc import dumps
from lib.mitras import create_mitra
from lib.principal import Principal
from lib.services import Services
from runtime.app import HaloApp, create_app

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Invocation(NamedTuple):
    """What the client would have received. `body` is the decoded JSON for a JSON response, text
    for a text/* one, bytes for anything else, and None when the response has no body (204)."""

    status: int
    headers: Headers  # case-insensitive; get_all("Set-Cookie") for every cookie
    body: Any


_apps: weakref.WeakKeyDictionary[Services, dict[str, HaloApp]] = weakref.WeakKeyDictionary()
_apps_lock = threading.Lock()


def app_for(services: Services, surface: str) -> HaloApp:
    """The surface's app on these services, built on first use and kept while they live."""
    with _apps_lock:
        apps = _apps.setdefault(services, {})
        if surface not in apps:
            apps[surface] = create_app(surface, services)
        return apps[surface]


def surface_of(path: str) -> str:
    """/internal/... is the internal listener's; everything else (the probes too) the public one's."""
    return "internal" if path == "/internal" or path.startswith("/internal/") else "public"


def token_for(services: Services, principal: Principal) -> str:
    """An access token for this principal, as sign-in would issue it (no session row is made: the
    session id is the principal's, and only a revoked one is refused)."""
    token, _ = issue_access_token(
        services.settings.auth_jwt_secret,
        user_type=principal.user_type,
        user_id=principal.user_id,
        session_id=principal.session_id,
        ttl_seconds=services.settings.access_token_ttl_seconds,
        role=principal.role,
    )
    return token


def invoke(
    services: Services,
    target: str,
    *,
    json: Any = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    query: Mapping[str, Any] | None = None,
    token: str | None = None,
    principal: Principal | None = None,
    surface: str | None = None,
    remote_addr: str = "127.0.0.1",
) -> Invocation:
    """Run `target` ("METHOD /path?query") through the app of its surface and return what a client
    would get. `json` is sent as an application/json body (`body` sends bytes as they are, with
    the Content-Type you give in `headers`); `token` or `principal` (for which a token is minted)
    becomes the Authorization header. The path is the URL path, percent-encoded as on the wire."""
    method, _, url = target.strip().partition(" ")
    method, url = method.upper(), url.strip()
    if method not in _METHODS or not url.startswith("/"):
        raise ValueError(f"expected 'METHOD /path', got {target!r}")
    path, _, query_string = url.partition("?")
    if query:
        query_string = "&".join(filter(None, (query_string, urlencode(query, doseq=True))))
    sent: list[tuple[str, str]] = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    if token is not None and principal is not None:
        raise ValueError("give token or principal, not both")
    if principal is not None:
        token = token_for(services, principal)
    if token is not None:
        sent.append(("Authorization", f"Bearer {token}"))
    if json is not None:
        if body is not None:
            raise ValueError("give json or body, not both")
        body = dumps(json)
        if not any(name.lower() == "content-type" for name, _ in sent):
            sent.append(("Content-Type", "application/json"))
    app = app_for(services, surface or surface_of(path))
    return _call(app, _environ(method, path, query_string, sent, body, remote_addr))


def _environ(
    method: str, path: str, query_string: str, headers: list[tuple[str, str]], body: bytes | None, remote_addr: str
) -> dict[str, Any]:
    """A WSGI environ as a server builds it (PEP 3333): PATH_INFO decoded, as latin-1 text."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query_string,
        "SERVER_NAME": "invoke",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote_addr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body or b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _call(app: HaloApp, environ: dict[str, Any]) -> Invocation:
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        raw = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status_line, header_list = started
    headers = Headers(list(header_list))
    return Invocation(int(status_line.split(" ", 1)[0]), headers, _decode(headers, raw))


def _decode(headers: Headers, raw: bytes) -> Any:
    if not raw:
        return None
    media = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return orjson.loads(raw)
    if media.startswith("text/"):
        return raw.decode("utf-8", "replace")
    return raw


CALLERS = ("customer", "mitra", "cc")


def sign_in_as(services: Services, caller: str, user_id: str | None = None) -> tuple[str, str, bool]:
    """An access token for `python -m runtime invoke --as customer|mitra|cc[:role] [--user-id ID]`:
    the existing user `user_id` (it must exist and be usable, as at sign-in), or else a new user of
    that kind (an anonymous customer, a mitra with a made-up phone, a control-center user with a
    random password; `cc` alone is an admin). Each call starts a real session (auth_sessions), as a
    sign-in does. Returns (token, user id, whether the user is new)."""
    kind, _, role = caller.partition(":")
    if kind not in CALLERS or (role and kind != "cc"):
        raise ValueError(f"--as takes customer, mitra or cc[:role], not {caller!r}")
    user_type = "cc_user" if kind == "cc" else kind
    created = user_id is None
    if user_id is None:
        user_id = _new_user(services, user_type, role or "admin")
    with services.db.connection() as conn:
        account = require_usable(user_type, load_account(conn, user_type, user_id))
        if role and account.get("role") != role:
            raise ValueError(f"control-center user {user_id} is {account.get('role')}, not {role}")
        grant = sign_in(conn, services.settings, user_type, user_id)
    access = access_for(services.settings, grant, account.get("role") if user_type == "cc_user" else None)
    return str(access["access_token"]), user_id, created


def _new_user(services: Services, user_type: str, role: str) -> str:
    tag = secrets.token_hex(4)
    if user_type == "cc_user":
        email = f"invoke-{tag}@halobestie.local"
        return str(create_cc_user(services.db, email=email, password=secrets.token_urlsafe(24), role=role)["id"])
    if user_type == "mitra":
        phone = f"+62899{secrets.randbelow(10**8):08d}"
        return str(create_mitra(services.db, phone, f"Invoke {tag}")["id"])
    row = services.db.fetch_one(
        "INSERT INTO customers (display_name) VALUES (%(name)s) RETURNING id", {"name": f"Invoke {tag}"}
    )
    assert row is not None
    return str(row["id"])
