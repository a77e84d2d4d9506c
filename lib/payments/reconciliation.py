"""The proof that every rupiah is accounted for (docs/payments.md): every invoice Xendit reported paid
in the window (recorded in `paid_invoices` by the callbacks, the reconciliation's polls and the
closure job, plus any authenticated PAID callback in `webhook_logs` that never got that far) must be
in exactly one place: a consumed session, a consumed extension, a refund due or a refund done. A
confirmed payment still on its way to a chat (a search, a fallback choice, its delivery) is in
flight for up to IN_FLIGHT_SECONDS. Anything in no place or in two is a problem, and so is a consumed
request with no paid invoice behind it. Served by the payment_money_check job (metrics and the
alerts on them), `GET /internal/payments/reconciliation` and `python -m runtime money-check`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lib.db import Database
from lib.metrics import m
from lib.payments.refunds import due_summary
from lib.payments.sweeps import reconcile
from lib.services import Services

WINDOW_DAYS = 30
IN_FLIGHT_SECONDS = 3600  # the longest a search, a fallback window and a delivery take together, with room
CALLBACK_GRACE_SECONDS = 120  # a paid callback logged this recently may still be being acted on
PROBLEMS = ("none", "doubled", "unpaid_service")
PLACES = ("session", "extension", "refund_due", "refund_done")

# Every paid invoice seen in the window, with what became of it. The second branch: authenticated
# PAID/SETTLED callbacks for a request of ours whose invoice was never recorded (its handling failed).
_SEEN = """
WITH seen AS (
    SELECT i.payment_request_id, i.invoice_id, i.amount, i.currency, i.created_at AS seen_at, i.source
    FROM paid_invoices i WHERE i.created_at >= %(since)s
    UNION ALL
    SELECT * FROM (
        SELECT DISTINCT ON (p.id, w.invoice_id) p.id, w.invoice_id,
               CASE WHEN COALESCE(w.paid_amount, w.amount) BETWEEN -9e18 AND 9e18
                    THEN trunc(COALESCE(w.paid_amount, w.amount))::bigint ELSE -1 END,
               COALESCE(w.currency, '?'), w.received_at, 'callback'
        FROM webhook_logs w JOIN payment_requests p ON p.id::text = w.external_id
        WHERE w.received_at >= %(since)s AND w.received_at < now() - make_interval(secs => %(grace)s)
          AND upper(w.status) IN ('PAID', 'SETTLED') AND w.invoice_id IS NOT NULL
          AND w.outcome IS DISTINCT FROM 'unauthorized' AND w.outcome IS DISTINCT FROM 'malformed_body'
          AND NOT EXISTS (SELECT 1 FROM paid_invoices i
                          WHERE i.payment_request_id = p.id AND i.invoice_id = w.invoice_id)
        ORDER BY p.id, w.invoice_id, w.received_at
    ) unrecorded
)
SELECT s.payment_request_id, s.invoice_id, s.amount, s.currency, s.seen_at, s.source,
       p.kind, p.status, p.confirmed_at, p.paid_invoice_id = s.invoice_id AS took_it,
       r.id AS refund_id, r.refunded_at
FROM seen s JOIN payment_requests p ON p.id = s.payment_request_id
LEFT JOIN refunds r ON r.payment_request_id = s.payment_request_id AND r.invoice_id = s.invoice_id
ORDER BY s.seen_at, s.invoice_id
"""

# Chats given with no paid invoice recorded behind them.
_UNPAID_SERVICE = """
SELECT p.id AS payment_request_id, p.paid_invoice_id AS invoice_id, p.amount, p.currency, p.kind, p.status,
       p.confirmed_at, COALESCE(p.confirmed_at, p.created_at) AS seen_at
FROM payment_requests p
WHERE p.status = 'consumed' AND p.created_at >= %(since)s
  AND NOT EXISTS (SELECT 1 FROM paid_invoices i WHERE i.payment_request_id = p.id AND i.invoice_id = p.paid_invoice_id)
ORDER BY p.created_at
"""


@dataclass
class Report:
    generated_at: datetime
    since: datetime
    invoices: int = 0
    accounted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PLACES, 0))
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    days: dict[date, dict[str, dict[str, int]]] = field(default_factory=dict)
    refunds_due: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, problem: str) -> int:
        return sum(1 for p in self.problems if p["problem"] == problem)

    def doc(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "since": self.since,
            "ok": self.ok,
            "invoices": self.invoices,
            "accounted": self.accounted,
            "in_flight": self.in_flight,
            "problems": self.problems,
            "problem_counts": {p: self.count(p) for p in PROBLEMS},
            "days": [{"day": day, **totals} for day, totals in sorted(self.days.items(), reverse=True)],
            "refunds_due": self.refunds_due,
        }

    def _add(self, day: date, column: str, amount: int, currency: str) -> None:
        totals = self.days.setdefault(day, {c: {"count": 0, "amount": 0} for c in _COLUMNS})
        totals[column]["count"] += 1
        if currency == "IDR":  # a quarantined payment in another currency is counted, not summed
            totals[column]["amount"] += amount


_COLUMNS = ("paid", *PLACES, "in_flight", "unaccounted")


def report(db: Database, days: int = WINDOW_DAYS, *, now: Callable[[], datetime] | None = None) -> Report:
    generated = (now or (lambda: datetime.now(UTC)))()
    result = Report(generated_at=generated, since=generated - timedelta(days=days))
    stuck_before = generated - timedelta(seconds=IN_FLIGHT_SECONDS)
    for row in db.fetch_all(_SEEN, {"since": result.since, "grace": CALLBACK_GRACE_SECONDS}):
        result.invoices += 1
        day = row["seen_at"].astimezone(UTC).date()
        result._add(day, "paid", row["amount"], row["currency"])
        places = []
        if row["took_it"] and row["status"] == "consumed":
            places.append(str(row["kind"]))
        if row["refund_id"] is not None:
            places.append("refund_done" if row["refunded_at"] is not None else "refund_due")
        item = _item(row, places)
        if len(places) == 1:
            result.accounted[places[0]] += 1
            result._add(day, places[0], row["amount"], row["currency"])
        elif not places and row["took_it"] and row["status"] == "confirmed" and row["confirmed_at"] >= stuck_before:
            result.in_flight.append(item)
            result._add(day, "in_flight", row["amount"], row["currency"])
        else:
            result.problems.append({**item, "problem": "none" if not places else "doubled"})
            result._add(day, "unaccounted", row["amount"], row["currency"])
    for row in db.fetch_all(_UNPAID_SERVICE, {"since": result.since}):
        result.problems.append({**_item({**row, "source": None}, [str(row["kind"])]), "problem": "unpaid_service"})
    result.refunds_due = due_summary(db)
    return result


def _item(row: dict[str, Any], places: list[str]) -> dict[str, Any]:
    return {
        "payment_request_id": row["payment_request_id"],
        "invoice_id": row["invoice_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "seen_at": row["seen_at"],
        "source": row["source"],
        "request_status": row["status"],
        "kind": row["kind"],
        "found_in": places,
    }


def sample(db: Database) -> Report:
    """The report of the window, into the gauges the alerts read (every worker replica)."""
    result = report(db)
    metrics = m()
    for problem in PROBLEMS:
        metrics.payments_unaccounted.labels(problem).set(result.count(problem))
    due = result.refunds_due
    metrics.refunds_due.set(due["count"])
    oldest = due["oldest_created_at"]
    metrics.refunds_due_oldest.set((result.generated_at - oldest).total_seconds() if oldest else 0)
    return result


def main(services: Services, *, days: int = WINDOW_DAYS, poll: bool = True, out: Any = None) -> int:
    """`python -m runtime money-check`: poll Xendit once for the invoices that may still be paid
    (unless poll is False), then print the report; exit status 0 when every paid invoice is in
    exactly one place, 1 otherwise."""
    out = out or sys.stdout
    if poll:
        polled = reconcile(services.db, services.payment_gateway, services.payment_events, limit=1000)
        print(f"polled Xendit for {len(polled)} invoice(s) that may still be paid", file=out)
    result = report(services.db, days)
    in_flight, problems = len(result.in_flight), len(result.problems)
    print(
        f"money-check since {result.since:%Y-%m-%d %H:%M} UTC: {result.invoices} paid invoice(s), "
        f"{sum(result.accounted.values())} accounted for, {in_flight} in flight, {problems} problem(s)",
        file=out,
    )
    print("  ".join(f"{c:>20}" for c in ("day", *_COLUMNS)), file=out)
    for day, totals in sorted(result.days.items()):
        cells = [f"{totals[c]['count']} / {totals[c]['amount']}" for c in _COLUMNS]
        print("  ".join(f"{v:>20}" for v in (day.isoformat(), *cells)), file=out)
    for p in result.problems:
        print(
            f"PROBLEM {p['problem']}: invoice {p['invoice_id']} of request {p['payment_request_id']} "
            f"({p['kind']}, {p['request_status']}), {p['amount']} {p['currency']}, found in {p['found_in'] or 'nothing'}",
            file=out,
        )
    due = result.refunds_due
    print(
        f"refunds due: {due['count']} ({due['amount']} IDR), oldest since {due['oldest_created_at'] or '-'}", file=out
    )
    return 0 if result.ok else 1
