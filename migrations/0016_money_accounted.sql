-- Every rupiah accounted for (docs/payments.md): each invoice Xendit reports paid is recorded once
-- with what we did with it, the money we cannot serve is a refund due until a person sends it
-- back, and every invoice we give up on is closed at Xendit by a retried job.

-- The invoice whose money a request took (it served the request, or it is refunded), Xendit's own
-- expiry of the request's invoice, and when that invoice was known closed at Xendit (expired by us
-- or by Xendit): a closed or paid invoice is no longer polled.
ALTER TABLE payment_requests
    ADD COLUMN paid_invoice_id    text,
    ADD COLUMN invoice_expires_at timestamptz,
    ADD COLUMN invoice_closed_at  timestamptz;
-- The reconciliation polls these: invoices of requests not (yet) paid that may still be paid.
CREATE INDEX payment_requests_open_invoice_idx ON payment_requests (created_at)
    WHERE xendit_invoice_id IS NOT NULL AND paid_invoice_id IS NULL AND invoice_closed_at IS NULL
      AND status IN ('pending', 'abandoned', 'expired');

-- Every invoice Xendit reported paid, once: written in the transaction that acts on the money (a
-- callback, the reconciliation's poll, the closure job finding it paid). A second report of the
-- same invoice finds its row and changes nothing. Keyed by request and invoice: an invoice belongs
-- to one external_id, and a second invoice paid for the same request is a second payment.
CREATE TABLE paid_invoices (
    payment_request_id uuid NOT NULL REFERENCES payment_requests (id),
    invoice_id         text NOT NULL,
    amount             bigint NOT NULL,      -- what Xendit says was paid (paid_amount, else amount)
    currency           text NOT NULL,
    source             text NOT NULL CHECK (source IN ('callback', 'poll', 'close', 'migration')),
    outcome            text NOT NULL CHECK (outcome IN ('confirmed', 'refund_due', 'quarantined_amount_mismatch')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_request_id, invoice_id)
);
CREATE INDEX paid_invoices_created_idx ON paid_invoices (created_at);

-- Money received that bought nothing, exactly one row per such paid invoice, until a person has
-- sent it back (refunded_at, the transfer's reference and who recorded it; write-once).
CREATE TABLE refunds (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_request_id uuid NOT NULL REFERENCES payment_requests (id),
    customer_id        uuid NOT NULL REFERENCES customers (id),
    invoice_id         text NOT NULL,
    amount             bigint NOT NULL,
    currency           text NOT NULL,
    reason             text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    refunded_at        timestamptz,
    reference          text CHECK (char_length(reference) BETWEEN 1 AND 200),
    refunded_by        uuid REFERENCES cc_users (id),
    UNIQUE (payment_request_id, invoice_id),
    CHECK ((refunded_at IS NULL) = (reference IS NULL))
);
CREATE INDEX refunds_due_idx ON refunds (created_at DESC, id DESC) WHERE refunded_at IS NULL;
CREATE INDEX refunds_done_idx ON refunds (created_at DESC, id DESC) WHERE refunded_at IS NOT NULL;

-- A recorded refund is the audit of who sent the money back and how: it never changes again.
CREATE FUNCTION refunds_recorded_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.refunded_at IS NOT NULL AND NEW IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'refund % is recorded and cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refunds_recorded_once BEFORE UPDATE ON refunds
    FOR EACH ROW EXECUTE FUNCTION refunds_recorded_once();

-- Invoices to close at Xendit (POST /invoices/{id}/expire!): an outbox the payment_close job works
-- through with a growing backoff, so a Xendit outage delays a closure and never loses it.
CREATE TABLE invoice_closures (
    payment_request_id uuid PRIMARY KEY REFERENCES payment_requests (id),
    reason             text NOT NULL
                       CHECK (reason IN ('abandoned', 'expired', 'superseded', 'orphaned', 'extension_lapsed',
                                         'extension_cancelled')),
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz,
    outcome            text CHECK (outcome IN ('expired', 'already_expired', 'paid', 'no_invoice')),
    CHECK ((closed_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX invoice_closures_due_idx ON invoice_closures (next_attempt_at) WHERE closed_at IS NULL;

-- What was paid before this migration: requests that took money (their invoice is the one created
-- for them), quarantined callbacks, and the failed pairings, refunded by hand or still open.
UPDATE payment_requests SET paid_invoice_id = COALESCE(xendit_invoice_id, 'unknown:' || id::text)
    WHERE status IN ('confirmed', 'consumed', 'failed_pairing');
INSERT INTO paid_invoices (payment_request_id, invoice_id, amount, currency, source, outcome, created_at)
    SELECT id, paid_invoice_id, COALESCE(paid_amount, amount), currency, 'migration',
           CASE WHEN status = 'failed_pairing' THEN 'refund_due' ELSE 'confirmed' END, COALESCE(confirmed_at, updated_at)
    FROM payment_requests WHERE paid_invoice_id IS NOT NULL;
INSERT INTO refunds (payment_request_id, customer_id, invoice_id, amount, currency, reason, created_at,
                     refunded_at, reference, refunded_by)
    SELECT p.id, p.customer_id, p.paid_invoice_id, COALESCE(p.paid_amount, p.amount), p.currency, f.cause, f.created_at,
           CASE WHEN f.review_status = 'refunded' THEN COALESCE(f.reviewed_at, f.updated_at) END,
           CASE WHEN f.review_status = 'refunded' THEN 'failed pairing ' || f.id::text || ' marked refunded' END,
           CASE WHEN f.review_status = 'refunded' THEN f.reviewed_by END
    FROM pairing_failures f JOIN payment_requests p ON p.id = f.payment_request_id
    WHERE p.paid_invoice_id IS NOT NULL;
WITH quarantined AS (
    SELECT DISTINCT ON (w.payment_request_id, w.invoice_id) w.payment_request_id, w.invoice_id, w.received_at,
           CASE WHEN COALESCE(w.paid_amount, w.amount) BETWEEN -9e18 AND 9e18
                THEN trunc(COALESCE(w.paid_amount, w.amount))::bigint ELSE -1 END AS amount,
           COALESCE(w.currency, '?') AS currency
    FROM webhook_logs w
    WHERE w.outcome = 'quarantined_amount_mismatch' AND w.payment_request_id IS NOT NULL AND w.invoice_id IS NOT NULL
    ORDER BY w.payment_request_id, w.invoice_id, w.received_at
), ledger AS (
    INSERT INTO paid_invoices (payment_request_id, invoice_id, amount, currency, source, outcome, created_at)
        SELECT payment_request_id, invoice_id, COALESCE(amount, -1), currency, 'migration',
               'quarantined_amount_mismatch', received_at FROM quarantined
        ON CONFLICT DO NOTHING
        RETURNING payment_request_id, invoice_id, amount, currency, created_at
)
INSERT INTO refunds (payment_request_id, customer_id, invoice_id, amount, currency, reason, created_at)
    SELECT l.payment_request_id, p.customer_id, l.invoice_id, l.amount, l.currency, 'AMOUNT_MISMATCH', l.created_at
    FROM ledger l JOIN payment_requests p ON p.id = l.payment_request_id
    ON CONFLICT DO NOTHING;
