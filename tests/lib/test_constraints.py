"""Driver errors become domain errors at one boundary (lib.db + lib/constraints.py)."""

from __future__ import annotations

import pytest

from lib.constraints import UNIQUE, IdempotencyKeyTaken, PhoneTaken
from lib.errors import Conflict
from lib.services import Services

# Unique constraints a client cannot run into: each is settled by ON CONFLICT or a conditional UPDATE.
SETTLED_ELSEWHERE = {
    "customer_identities_provider_subject_key": "identity resolution inserts ON CONFLICT DO NOTHING",
    "customers_phone_key": "set only from a verified phone identity, which is unique itself",
    "auth_refresh_tokens_session_id_generation_key": "rotation is one conditional UPDATE per generation",
    "pairing_failures_payment_request_id_key": "written ON CONFLICT DO NOTHING",
    "chat_sessions_one_open_per_payment": "pairing starts with the payment row locked and checked",
    "chat_request_notifications_session_id_mitra_id_key": "each search asks each mitra once, in one insert",
    "chat_messages_session_id_sender_id_client_message_id_key": "a send inserts ON CONFLICT DO NOTHING",
    "payment_requests_one_per_extension": "invoicing locks the extension and checks it has no request",
    "chat_data_keys_master_key_id_key": "a master key's data key is made ON CONFLICT DO NOTHING",
    "refunds_payment_request_id_invoice_id_key": "one refund due per paid invoice, written ON CONFLICT DO NOTHING",
}


def test_every_unique_constraint_is_named_in_the_table(services: Services) -> None:
    rows = services.db.fetch_all(
        "SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_namespace n ON n.oid = i.relnamespace "
        "WHERE n.nspname = 'public' AND x.indisunique AND NOT x.indisprimary"
    )
    names = {r["name"] for r in rows}
    assert names - set(UNIQUE) - set(SETTLED_ELSEWHERE) == set()
    assert set(UNIQUE) <= names  # no stale rows in the table


def test_a_unique_violation_leaves_the_database_as_its_domain_error(services: Services, make_mitra) -> None:
    make_mitra("+6281200000077")
    with pytest.raises(PhoneTaken) as caught:
        make_mitra("+6281200000077")
    assert caught.value.status == 409
    assert caught.value.code == "PHONE_TAKEN"


def test_an_unlisted_unique_violation_is_a_plain_conflict(services: Services) -> None:
    services.db.execute("CREATE UNIQUE INDEX test_only_name_key ON mitras (display_name)")
    services.db.execute("INSERT INTO mitras (phone, display_name) VALUES ('+6281200000081', 'Same')")
    with pytest.raises(Conflict) as caught:
        services.db.execute("INSERT INTO mitras (phone, display_name) VALUES ('+6281200000082', 'Same')")
    assert type(caught.value) is Conflict
    assert caught.value.code == "CONFLICT"


def test_idempotency_key_taken_is_its_own_type() -> None:
    assert issubclass(IdempotencyKeyTaken, Conflict)
    assert IdempotencyKeyTaken().code == "IDEMPOTENCY_IN_PROGRESS"
