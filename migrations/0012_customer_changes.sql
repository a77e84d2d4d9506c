-- Every change to a customer row is announced on the `customers_changed` channel (the row's id),
-- whoever makes it: the per-process profile cache (lib/customers.py, Profiles) drops that entry.
-- NOTIFY is delivered at commit and only then, so a listener never hears of a rolled-back change.
CREATE FUNCTION customers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('customers_changed', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER customers_changed AFTER UPDATE OR DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION customers_changed();
