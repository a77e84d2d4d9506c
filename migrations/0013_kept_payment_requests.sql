-- Every change to a payment request is announced on `payment_requests_changed` (the row's id),
-- whoever makes it: the per-process cache behind GET /api/client/payment-requests/{id}, which the
-- waiting screen polls (lib/payments/requests.py, kept_requests), drops that entry (lib/kept.py).
-- A row is only kept once it exists, so an INSERT has nothing to announce.
--
-- A read kept by the row's own id needs nothing but the channel's name, so one function serves
-- every such table (the trigger's argument); the customers trigger of 0012 moves onto it.
-- chat_sessions keeps its own: it announces the session's customer, not the session.
CREATE FUNCTION notify_row_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER payment_requests_changed AFTER UPDATE OR DELETE ON payment_requests
    FOR EACH ROW EXECUTE FUNCTION notify_row_id('payment_requests_changed');

DROP TRIGGER customers_changed ON customers;
CREATE TRIGGER customers_changed AFTER UPDATE OR DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION notify_row_id('customers_changed');
DROP FUNCTION customers_changed();
