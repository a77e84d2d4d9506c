-- Every change to a payment request is announced on `payment_requests_changed` (the row's id),
-- whoever makes it: the per-process cache behind GET /api/client/payment-requests/{id}, which the
-- waiting screen polls (lib/payments/requests.py, kept_requests), drops that entry (lib/kept.py).
-- A row is only kept once it exists, so an INSERT has nothing to announce.
CREATE FUNCTION payment_requests_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payment_requests_changed', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER payment_requests_changed AFTER UPDATE OR DELETE ON payment_requests
    FOR EACH ROW EXECUTE FUNCTION payment_requests_changed();
