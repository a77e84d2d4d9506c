-- Every change to a customer row is announced on the `customers_changed` channel (the row's id),
-- whoever makes it: the per-process profile cache (lib/customers.py, kept_profiles) drops that
-- entry (lib/kept.py).
-- NOTIFY is delivered at commit and only then, so a listener never hears of a rolled-back change.
CREATE FUNCTION customers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('customers_changed', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER customers_changed AFTER UPDATE OR DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION customers_changed();

-- Likewise the customer of every session row inserted or changed: the per-process cache of an
-- idle customer's GET /api/client/chat/active (lib/chat/views.py, kept_active) drops its entry.
CREATE FUNCTION chat_sessions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_sessions_changed', COALESCE(NEW.customer_id, OLD.customer_id)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER chat_sessions_changed AFTER INSERT OR UPDATE OR DELETE ON chat_sessions
    FOR EACH ROW EXECUTE FUNCTION chat_sessions_changed();
