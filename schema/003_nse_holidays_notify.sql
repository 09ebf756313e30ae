-- 003_nse_holidays_notify.sql — every change to nse_holidays NOTIFYs 'nse_holidays', so each
-- engine process re-reads its trading calendar at once (engine/market/calendar_store.py).
-- Statement-level: one NOTIFY per INSERT/UPDATE/DELETE/TRUNCATE statement, however many
-- rows it touched (PostgreSQL also folds identical NOTIFYs of one transaction into one).

CREATE OR REPLACE FUNCTION nse_holidays_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nse_holidays', json_build_object('op', TG_OP)::text);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS nse_holidays_notify ON nse_holidays;
CREATE TRIGGER nse_holidays_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON nse_holidays
    FOR EACH STATEMENT EXECUTE FUNCTION nse_holidays_notify();
