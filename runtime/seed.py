"""`python -m runtime seed-demo`: demo data beside `make dev` (development and test only) and the
commands that walk one chat end to end: a tier, a mitra online, a customer, their tokens.

Rerunning it is safe: the tier, the mitra and the customer are found again by their keys (the
tier's mode and minutes, the two demo phone numbers), each run signs both in anew (fresh tokens),
sets the mitra online again (a fresh heartbeat) and winds down a chat a previous walk left open, so
the walk can be taken again. Every step that an app would take goes through the request pipeline
(runtime.invoke), as the app's request would.
"""

from __future__ import annotations

import shlex
from typing import Any

from lib.auth.signin import customer_sign_in, mitra_sign_in
from lib.chat.states import ACTIVE, EXTENDING, OPEN, SEARCHING
from lib.config.env import ConfigError, Settings
from lib.services import Services
from runtime.container import build_services
from runtime.invoke import invoke

DEMO_MITRA_PHONE = "+6281299990001"
DEMO_MITRA_NAME = "Bestie Demo"
DEMO_CUSTOMER_PHONE = "+6281199990001"
DEMO_TIER = {"mode": "chat", "minutes": 15, "price": 30000, "label": "15 menit", "sort_order": 10}


class SeedError(RuntimeError):
    """A step of the seed was refused; the message says which and why."""


def seed_demo(settings: Settings) -> str:
    """Seed (or find again) the demo data and return what to print: ids, tokens and the walk."""
    if not settings.is_dev_or_test:
        raise ConfigError(f"seed-demo runs only with APP_ENV development or test (it is {settings.app_env})")
    services = build_services(settings, application_name="halobestie-seed")
    try:
        tier = _demo_tier(services)
        mitra_id = _demo_mitra(services)
        mitra = mitra_sign_in(services.db, settings, DEMO_MITRA_PHONE)
        customer = customer_sign_in(
            services.db,
            services.profiles,
            settings,
            "phone",
            DEMO_CUSTOMER_PHONE,
            caller=None,
            phone=DEMO_CUSTOMER_PHONE,
        )
        customer_token, mitra_token = str(customer["access_token"]), str(mitra["access_token"])
        left_open = _wind_down(services, str(customer["user"]["id"]), customer_token, mitra_id, mitra_token)
        _call(services, "POST /api/mitra/status/online", mitra_token)  # online, with a fresh heartbeat
    finally:
        services.close()
    return _walk(settings, tier, mitra_id, str(customer["user"]["id"]), customer_token, mitra_token, left_open)


def _call(services: Services, target: str, token: str, json: Any = None) -> Any:
    result = invoke(services, target, token=token, json=json)
    if result.status >= 400:
        raise SeedError(f"{target}: {result.status} {result.body}")
    return result.body["data"] if isinstance(result.body, dict) else None


def _demo_tier(services: Services) -> dict[str, Any]:
    """The active chat tier with the fewest minutes; when there is none, the 15-minute tier of
    migration 0005, created (or switched back on) as that migration seeds it."""
    rows = services.db.fetch_all(
        "SELECT id, minutes, price, label FROM pricing_tiers WHERE mode = 'chat' AND is_active "
        "ORDER BY minutes, id LIMIT 1"
    )
    if rows:
        return rows[0]
    row = services.db.fetch_one(
        "INSERT INTO pricing_tiers (mode, minutes, price, label, sort_order) "
        "VALUES (%(mode)s, %(minutes)s, %(price)s, %(label)s, %(sort_order)s) "
        "ON CONFLICT (mode, minutes) DO UPDATE SET is_active = true, "
        "updated_at = date_trunc('milliseconds', clock_timestamp()) "
        "RETURNING id, minutes, price, label",
        DEMO_TIER,
    )
    assert row is not None
    return row


def _demo_mitra(services: Services) -> str:
    row = services.db.fetch_one(
        "INSERT INTO mitras (phone, display_name) VALUES (%(phone)s, %(name)s) "
        "ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING id, is_active",
        {"phone": DEMO_MITRA_PHONE, "name": DEMO_MITRA_NAME},
    )
    assert row is not None
    if not row["is_active"]:
        raise SeedError(f"the demo mitra {row['id']} ({DEMO_MITRA_PHONE}) was deactivated; reactivate it first")
    return str(row["id"])


def _wind_down(services: Services, customer_id: str, customer_token: str, mitra_id: str, mitra_token: str) -> list[str]:
    """End the chats a previous walk left open (a customer has one at a time), as the two apps
    would: cancel a search, end an active chat, skip both goodbyes. Returns what stays open."""
    sessions = services.db.fetch_all(
        "SELECT id, status, mitra_id FROM chat_sessions WHERE customer_id = %(customer)s AND status = ANY(%(open)s)",
        {"customer": customer_id, "open": list(OPEN)},
    )
    for session in sessions:
        sid = session["id"]
        if session["status"] == SEARCHING:
            invoke(services, "POST /api/client/chat/cancel", token=customer_token)
            continue
        if session["status"] in (ACTIVE, EXTENDING):
            invoke(services, f"POST /api/client/chat/{sid}/end", token=customer_token)
        skip = {"skip": True}
        invoke(services, f"POST /api/shared/chat/{sid}/closing-message", token=customer_token, json=skip)
        if str(session["mitra_id"]) == mitra_id:
            invoke(services, f"POST /api/shared/chat/{sid}/closing-message", token=mitra_token, json=skip)
    still = services.db.fetch_all(
        "SELECT id, status FROM chat_sessions WHERE customer_id = %(customer)s AND status = ANY(%(open)s)",
        {"customer": customer_id, "open": list(OPEN)},
    )
    return [f"{r['id']} ({r['status']})" for r in still]


_JSON_FIELD = 'python3 -c \'import json,sys; print(json.load(sys.stdin)["data"]["{field}"])\''

# Joins the session (the auth frame with its id), sends one message, prints frames until it is stored.
_WS_CLIENT = """
import json, os
from websockets.sync.client import connect
with connect(os.environ["WS"]) as ws:
    ws.send(json.dumps({"type": "auth", "token": os.environ["CUSTOMER_TOKEN"], "session_id": os.environ["SESSION_ID"]}))
    print(ws.recv())
    ws.send(json.dumps({"type": "message.send", "client_message_id": os.urandom(8).hex(), "content": "Halo Bestie!"}))
    while json.loads(frame := ws.recv())["type"] != "message.sent":
        print(frame)
    print(frame)"""


def _walk(
    settings: Settings,
    tier: dict[str, Any],
    mitra_id: str,
    customer_id: str,
    customer_token: str,
    mitra_token: str,
    left_open: list[str],
) -> str:
    api = f"http://127.0.0.1:{settings.public_port}"
    internal = f"http://{settings.internal_host}:{settings.internal_port}"
    ws = f"ws://127.0.0.1:{settings.realtime_port}/api/shared/ws"
    auth = {
        "C": '-H "Authorization: Bearer $CUSTOMER_TOKEN"',
        "M": '-H "Authorization: Bearer $MITRA_TOKEN"',
    }
    json_type = "-H 'Content-Type: application/json'"
    payment_body = '{"mode": "chat", "tier_id": "\'"$TIER_ID"\'"}'
    lines = [
        "# Demo data (python -m runtime seed-demo; run it again for fresh tokens, valid "
        f"{settings.access_token_ttl_seconds // 60} min)",
        f"#   tier      {tier['id']}  ({tier['label']}, {tier['minutes']} min, Rp {tier['price']})",
        f"#   mitra     {mitra_id}  ({DEMO_MITRA_NAME}, {DEMO_MITRA_PHONE}), online",
        f"#   customer  {customer_id}  ({DEMO_CUSTOMER_PHONE})",
    ]
    if left_open:
        lines.append(f"# NOTE: the demo customer still has a chat open ({', '.join(left_open)}); paying will be 409")
    if settings.xendit_enabled:
        lines.append("# NOTE: XENDIT_ENABLED is true: the confirm hook below refuses (403); pay the invoice instead")
    lines += [
        "# Paste into a shell while `make dev` runs (curl and python3 needed):",
        f"export API={api} INTERNAL={internal} WS={ws}",
        f"export TIER_ID={tier['id']}",
        f"export CUSTOMER_TOKEN={shlex.quote(customer_token)}",
        f"export MITRA_TOKEN={shlex.quote(mitra_token)}",
        "",
        "# The mitra's app hears requests on its WebSocket; in another terminal (the same exports),",
        "# then type the auth frame:",
        '#   npx wscat -c "$WS"        (or: .venv/bin/python -m websockets "$WS")',
        '#   {"type": "auth", "token": "<MITRA_TOKEN>"}',
        "# The worker sets a mitra offline after mitra_stale_after_seconds (45 s) without a heartbeat",
        "# (the app sends one every 30 s): going online again is the surest way back",
        f"curl -sf -o /dev/null -X POST $API/api/mitra/status/online {auth['M']}",
        "",
        "# 1. The customer asks to pay for a chat (the simulated gateway makes the invoice)",
        f"export PAYMENT_ID=$(curl -sf -X POST $API/api/client/payment-requests {auth['C']} {json_type} "
        f"-d '{payment_body}' | {_JSON_FIELD.format(field='id')})",
        "# 2. The payment is confirmed through the development hook (the real webhook code)",
        "curl -sf -w '\\n' -X POST $INTERNAL/internal/_test/payments/$PAYMENT_ID/confirm",
        "# 3. Pairing has started: the session the payment opened",
        f"export SESSION_ID=$(curl -sf $API/api/client/payment-requests/$PAYMENT_ID {auth['C']} "
        f"| {_JSON_FIELD.format(field='session_id')})",
        "# 4. The mitra accepts",
        f"curl -sf -w '\\n' -X POST $API/api/mitra/chat-requests/$SESSION_ID/accept {auth['M']}",
        "# 5. The customer joins the session on the WebSocket and sends a message",
        f".venv/bin/python -c '{_WS_CLIENT}'",
        "# 6. The mitra reads the transcript over REST",
        f"curl -sf -w '\\n' $API/api/shared/chat/$SESSION_ID/messages {auth['M']}",
    ]
    return "\n".join(lines)
