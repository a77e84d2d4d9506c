"""Worker-side payment upkeep: invoice recovery, expiry, reconciliation, re-emit."""

from __future__ import annotations

from lib.payments.sweeps import expire_overdue, reconcile, recover_invoices, reemit_unpaired
from tests.payflow import create_payment, paid_body, payment_status, send_callback, tier_of


def test_recovery_expires_a_request_xendit_never_created(app, pay, xendit, online_mitra, customer) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    # As if the process had died after the insert and before its create call reached Xendit.
    pay.db.execute("UPDATE payment_requests SET invoice_url = NULL, xendit_invoice_id = NULL")
    xendit.invoices.clear()
    pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '30 seconds'")
    assert recover_invoices(pay.db, pay.payment_gateway) == {doc["id"]: "not_found_yet"}
    assert expire_overdue(pay.db) == []  # an invoice-less request is not expired by age alone
    pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '3 minutes', last_reconciled_at = NULL")
    assert recover_invoices(pay.db, pay.payment_gateway) == {doc["id"]: "expired"}
    assert create_payment(app, customer, tier_of(pay)).status_code == 201  # the customer is free to pay again


def test_expiry_job(app, pay, online_mitra, customer) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    assert expire_overdue(pay.db) == []
    pay.db.execute("UPDATE payment_requests SET expires_at = now() - interval '1 second'")
    assert expire_overdue(pay.db) == [doc["id"]]
    assert payment_status(pay, doc["id"]) == "expired"
    # A payment that arrives after our expiry is still money received: it confirms.
    assert send_callback(app, paid_body(doc)).json == {"ok": True, "confirmed": True}


def test_reconcile_job_asks_xendit(app, pay, xendit, online_mitra, customer, confirmed_events, anonymous) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    other = anonymous()
    doc2 = create_payment(app, other, tier_of(pay)).json["data"]
    assert reconcile(pay.db, pay.payment_gateway, pay.payment_events) == {}  # too young to bother Xendit
    pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '4 minutes'")
    invoice1 = pay.db.fetch_one("SELECT xendit_invoice_id FROM payment_requests WHERE id = %(id)s", {"id": doc["id"]})
    invoice2 = pay.db.fetch_one("SELECT xendit_invoice_id FROM payment_requests WHERE id = %(id)s", {"id": doc2["id"]})
    assert invoice1
    assert invoice2
    xendit.set_status(invoice1["xendit_invoice_id"], "PAID", paid_amount=doc["amount"], payment_channel="QRIS")
    xendit.set_status(invoice2["xendit_invoice_id"], "EXPIRED")
    assert reconcile(pay.db, pay.payment_gateway, pay.payment_events) == {doc["id"]: "confirmed", doc2["id"]: "expired"}
    assert confirmed_events == [doc["id"]]
    assert reconcile(pay.db, pay.payment_gateway, pay.payment_events) == {}  # nothing pending any more


def test_reemit_job(app, pay, online_mitra, customer, confirmed_events) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    send_callback(app, paid_body(doc))
    pay.db.execute("UPDATE payment_requests SET confirmed_at = now() - interval '1 minute'")
    assert reemit_unpaired(pay.db, pay.payment_events) == []  # its search started: nothing to re-emit
    # As if the confirming process had died before the search started.
    pay.db.execute("DELETE FROM chat_request_notifications")
    pay.db.execute("UPDATE payment_requests SET session_id = NULL, confirmed_at = now() - interval '10 seconds'")
    pay.db.execute("DELETE FROM chat_sessions")
    assert reemit_unpaired(pay.db, pay.payment_events) == []  # too recent
    pay.db.execute("UPDATE payment_requests SET confirmed_at = now() - interval '1 minute'")
    assert reemit_unpaired(pay.db, pay.payment_events) == [doc["id"]]
    assert reemit_unpaired(pay.db, pay.payment_events) == []  # not again right away
    assert confirmed_events == [doc["id"], doc["id"]]
