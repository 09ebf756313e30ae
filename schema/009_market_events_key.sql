-- 009_market_events_key.sql — market_events gets its natural key (date + kind + title) and the
-- columns the event calendar needs (engine/events/store.py).
--
-- The seed file and every adapter upsert on (event_date, category, name): category holds the
-- kind (RBI_MPC, FOMC, IN_CPI, ...), name the title. Rows duplicated on that key before this
-- migration are folded first, keeping the most recently updated one. The old
-- UNIQUE (event_date, name, source) stays (the legacy importer keys on it).

ALTER TABLE market_events ADD COLUMN IF NOT EXISTS country    text    NOT NULL DEFAULT '';
ALTER TABLE market_events ADD COLUMN IF NOT EXISTS source_url text    NOT NULL DEFAULT '';
ALTER TABLE market_events ADD COLUMN IF NOT EXISTS confirmed  boolean NOT NULL DEFAULT true;

DELETE FROM market_events a USING market_events b
    WHERE a.event_date = b.event_date AND a.category = b.category AND a.name = b.name
      AND (a.updated_at, a.id) < (b.updated_at, b.id);

CREATE UNIQUE INDEX IF NOT EXISTS market_events_key
    ON market_events (event_date, category, name);
