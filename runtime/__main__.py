"""The one CLI: python -m runtime
migrate|serve|worker|routes|openapi|create-cc-user|chat-key|rotate-chat-key|dev|invoke|seed-demo|money-check."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from lib.cc_users import create_cc_user, seed_admin
from lib.config.env import WEB_SERVERS, ConfigError, settings
from lib.db import Database
from lib.errors import ApiError
from lib.payments import reconciliation
from lib.transcripts import KeyRing, Transcripts, key_ring, rotate_batch, rows_by_master_key
from runtime import boot, dev, migrate, seed, worker
from runtime.app import route_table, routes_for
from runtime.container import build_services
from runtime.invoke import Invocation, invoke, sign_in_as
from runtime.migrate import MigrationError
from runtime.openapi import build_spec, release
from runtime.router import DiscoveryError
from runtime.seed import SeedError
from runtime.serve import serve


def _cmd_migrate(args: argparse.Namespace) -> int:

    s = settings()
    boot.init_process(s)
    dsn = s.require_database_url()
    if args.action == "status":
        for name, state in migrate.status(dsn):
            print(f"{name:40} {state}")
        return 0
    applied = migrate.migrate(dsn)
    print(f"{len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))
    db = Database(dsn, min_size=0, max_size=1, application_name="halobestie-migrate")
    try:
        if seed_admin(db, s.admin_email, s.admin_password):
            print(f"seeded admin {s.admin_email}")
    finally:
        db.close()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:

    s = settings()
    boot.init_process(s)
    boot.check_timezone(s)
    serve(args.surface, s, bind=args.bind, server=args.server)
    return 0


def _cmd_routes(args: argparse.Namespace) -> int:

    print("\n".join(route_table()))
    return 0


def _cmd_openapi(args: argparse.Namespace) -> int:

    # As a production listener serves it: the development hooks (/internal/_test/...) left out.
    routes = [r for r in routes_for(args.surface) if not r.endpoint.dev_only]
    document = build_spec(args.surface, routes, version=release() if args.release else None)
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_create_cc_user(args: argparse.Namespace) -> int:

    password = args.password
    if password is None or password == "-":  # noqa: S105 ("-" means stdin, not a password)
        # Prompted or piped, so the password stays out of shell history and the process list.
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    db = Database(settings().require_database_url(), min_size=0, max_size=1, application_name="halobestie-cli")
    try:
        user = create_cc_user(db, email=args.email, password=password, role=args.role, display_name=args.display_name)
    finally:
        db.close()
    print(f"created {user['role']} {user['email']} ({user['id']})")
    return 0


def _cmd_chat_key(args: argparse.Namespace) -> int:
    """A fresh ring entry on stdout (the secret goes where the operator pipes it, not to a log)."""
    print(KeyRing.generate(args.id))
    return 0


def _cmd_rotate_chat_key(args: argparse.Namespace) -> int:
    s = settings()
    boot.init_process(s)
    db = Database(s.require_database_url(), min_size=0, max_size=1, application_name="halobestie-rotate")
    try:
        transcripts = Transcripts(db, key_ring(s))
        total = 0
        while done := rotate_batch(db, transcripts, args.batch):
            total += done
            print(f"re-sealed {total} message(s) under {transcripts.ring.active!r}", flush=True)
        counts = rows_by_master_key(db)
        print(f"done: {total} re-sealed; rows per master key: {counts or 'none'}")
    finally:
        db.close()
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:

    s = settings()
    boot.init_process(s)
    boot.check_timezone(s)
    worker.main(build_services(s, application_name="halobestie-worker"))
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:

    return dev.run()


class UsageError(Exception):
    """A command line that cannot run as given (exit status 2)."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _request_json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(Path(value[1:]).read_text() if value.startswith("@") else value)
    except OSError as exc:
        raise UsageError(f"--json {value}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"--json is not JSON: {exc}") from exc


def _header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected K:V, got {value!r}")
    return name.strip(), content.strip()


def _print_answer(result: Invocation, include_headers: bool) -> None:
    try:
        phrase = HTTPStatus(result.status).phrase
    except ValueError:
        phrase = ""
    print(f"{result.status} {phrase}".rstrip())
    if include_headers:
        for name, value in result.headers.items():
            print(f"{name}: {value}")
    if result.body is None:
        return
    if isinstance(result.body, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(result.body)
        return
    print(
        result.body if isinstance(result.body, str) else orjson.dumps(result.body, option=orjson.OPT_INDENT_2).decode()
    )


def _cmd_invoke(args: argparse.Namespace) -> int:
    """One request through the pipeline against the configured (or make dev's) servers; exit 1 on >= 400."""
    body = _request_json(args.json)
    if args.user_id and not args.caller:
        raise UsageError("--user-id needs --as")
    environ = dict(os.environ)
    environ.setdefault("LOG_LEVEL", "WARNING")  # the access log would repeat the answer on stderr
    with dev.local_environment(environ, _stderr) as s:
        services = build_services(s, application_name="halobestie-invoke")
        try:
            token = None
            if args.caller:
                token, user_id, created = sign_in_as(services, args.caller, args.user_id)
                again = f" (new; --user-id {user_id} calls as it again)" if created else ""
                _stderr(f"as {args.caller} {user_id}{again}")
            result = invoke(services, f"{args.method} {args.path}", json=body, headers=args.header, token=token)
        except ValueError as exc:  # --as of no known kind, a role that is not the user's, a malformed target
            raise UsageError(str(exc)) from exc
        finally:
            services.close()
    _print_answer(result, args.include)
    return 0 if result.status < 400 else 1


def _cmd_money_check(args: argparse.Namespace) -> int:
    """Poll Xendit once, then prove every paid invoice is served or refunded exactly once (exit 1 if not)."""
    s = settings()
    boot.init_process(s)
    services = build_services(s, application_name="halobestie-money-check")
    try:
        return reconciliation.main(services, days=args.days, poll=not args.no_poll)
    finally:
        services.close()


def _cmd_seed_demo(args: argparse.Namespace) -> int:

    with dev.local_environment(os.environ, _stderr) as s:
        print(seed.seed_demo(s))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply pending migrations (or: migrate status)")
    p.add_argument("action", nargs="?", choices=["apply", "status"], default="apply")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("serve", help="run a listener (REST under WEB_SERVER, realtime under gunicorn)")
    p.add_argument("surface", choices=["public", "internal", "realtime"])
    p.add_argument("--bind", help="host:port (default from PUBLIC_PORT, INTERNAL_HOST:INTERNAL_PORT, REALTIME_PORT)")
    p.add_argument("--server", choices=WEB_SERVERS, help="the REST server (default WEB_SERVER, granian)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "money-check", help="prove every paid invoice is served or refunded exactly once (exit 1 if not)"
    )
    p.add_argument("--days", type=int, default=reconciliation.WINDOW_DAYS, help="the window in days (default 30)")
    p.add_argument("--no-poll", action="store_true", help="report from the database only; do not ask Xendit first")
    p.set_defaults(func=_cmd_money_check)

    p = sub.add_parser("worker", help="run the scheduled jobs (timers, sweeps)")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("routes", help="print the route table")
    p.set_defaults(func=_cmd_routes)

    p = sub.add_parser("openapi", help="write a listener's OpenAPI description (openapi --surface public)")
    p.add_argument("--surface", required=True, choices=["public", "internal"])
    p.add_argument("--out", default="-", help="a file, or - for stdout (default)")
    p.add_argument(
        "--release",
        action="store_true",
        help="version it with the release only (no revision), as the committed openapi.<surface>.json are",
    )
    p.set_defaults(func=_cmd_openapi)

    p = sub.add_parser("create-cc-user", help="create a control-center user")
    p.add_argument("--email", required=True)
    p.add_argument("--password", help="omit (or '-') to be prompted / read one line from stdin")
    p.add_argument("--role", required=True, choices=["admin", "operator"])
    p.add_argument("--display-name")
    p.set_defaults(func=_cmd_create_cc_user)

    p = sub.add_parser("chat-key", help="print a new CHAT_ENCRYPTION_KEYS entry (chat-key new [--id ID])")
    p.add_argument("action", choices=["new"])
    p.add_argument("--id", default=datetime.now(UTC).strftime("k%Y%m%d"), help="the key id (default kYYYYMMDD)")
    p.set_defaults(func=_cmd_chat_key)

    p = sub.add_parser("rotate-chat-key", help="re-seal every message under the active key (resumable)")
    p.add_argument("--batch", type=int, default=500, help="rows per transaction")
    p.set_defaults(func=_cmd_rotate_chat_key)

    p = sub.add_parser("dev", help="run everything locally (embedded servers when URLs are unset)")
    p.set_defaults(func=_cmd_dev)

    p = sub.add_parser(
        "invoke",
        help="run one endpoint through the request pipeline and print the status and the body",
        description="Runs one request through the listeners' pipeline against DATABASE_URL/REDIS_URL "
        "(unset: make dev's embedded servers). Exit status 1 when the answer is >= 400.",
    )
    p.add_argument("method", type=str.upper, help="GET, POST, PUT, PATCH, DELETE")
    p.add_argument("path", help="the URL path with its query, e.g. /api/client/me or '/internal/sessions?limit=5'")
    p.add_argument("--json", metavar="JSON|@FILE", help="the JSON body, inline or read from a file")
    p.add_argument(
        "--header", action="append", type=_header, default=[], metavar="K:V", help="a request header (repeatable)"
    )
    p.add_argument(
        "--as",
        dest="caller",
        metavar="customer|mitra|cc[:role]",
        help="sign in as a new user of this kind (cc alone: admin), or as --user-id",
    )
    p.add_argument("--user-id", metavar="UUID", help="with --as: an existing user of that kind")
    p.add_argument("-i", "--include", action="store_true", help="print the response headers too")
    p.set_defaults(func=_cmd_invoke)

    p = sub.add_parser(
        "seed-demo", help="development/test only: a tier, a mitra online, a customer, tokens and a chat to walk"
    )
    p.set_defaults(func=_cmd_seed_demo)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except (MigrationError, DiscoveryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc.code}: {exc.message} {exc.details or ''}".rstrip(), file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
