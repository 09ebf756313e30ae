-- 007_order_intents.sql — every live order intent, written BEFORE the broker call.
--
-- `executions` is the record of fills; `order_intents` is the record of what was asked. The
-- live broker writes one row per leg of an entry, exit or unwind (flatten) in its own
-- committed transaction before the order leaves, plus one child row per freeze-quantity slice
-- (parent_id = the leg's row; only rows without children are orders sent to the broker), and
-- updates each row as the order moves through Dhan's statuses. `new` = written, maybe sent;
-- `unresolved` = the outcome is unknown (a timeout, a lost answer, every lookup failed): it is
-- looked up until it is terminal or an operator decides, and is never treated as "not filled".
-- A restarted executor rebuilds in-flight orders from the rows whose settled_at is NULL and
-- resumes tracking them; it never re-sends them.
--
-- settled_at: the executor has accounted for the row's outcome in its books (the trade was
-- recorded opened/closed, the entry refused with every fill unwound, or an operator decided).
-- While any row is `unresolved`, the RiskActor denies every new entry.
CREATE TABLE IF NOT EXISTS order_intents (
    id               BIGSERIAL PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    trade_date       date        NOT NULL,
    trade_tag        text        NOT NULL,
    purpose          text        NOT NULL CHECK (purpose IN ('entry', 'exit', 'flatten',
                                                             'operator')),
    leg_index        integer     NOT NULL CHECK (leg_index >= 0),
    attempt          integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    security_id      text        NOT NULL,
    exchange_segment text        NOT NULL DEFAULT 'NSE_FNO',
    side             text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity         integer     NOT NULL CHECK (quantity > 0),       -- units, not lots
    product          text        NOT NULL CHECK (product IN ('CNC', 'INTRADAY', 'MARGIN', 'MTF',
                                                             'CO', 'BO')),
    order_type       text        NOT NULL DEFAULT 'LIMIT'
                                 CHECK (order_type IN ('LIMIT', 'MARKET')),
    price            NUMERIC(18, 4),                                   -- limit price asked
    correlation_id   text        NOT NULL UNIQUE
                                 CHECK (correlation_id ~ '^[A-Za-z0-9_-]{1,25}$'),
    parent_id        bigint      REFERENCES order_intents (id),
    sliced           boolean     NOT NULL DEFAULT false,  -- a leg sent as child slices: never
                                                          -- an order itself
    order_id         text,
    state            text        NOT NULL DEFAULT 'new'
                                 CHECK (state IN ('new', 'TRANSIT', 'PENDING', 'PART_TRADED',
                                                  'TRADED', 'REJECTED', 'CANCELLED', 'EXPIRED',
                                                  'unresolved')),
    filled_qty       integer     NOT NULL DEFAULT 0 CHECK (filled_qty >= 0),
    avg_price        NUMERIC(18, 4) CHECK (avg_price IS NULL OR avg_price >= 0),
    reason           text,                 -- the broker's words (rejection, cancel, lookups)
    resolution       text,                 -- how an unresolved outcome was settled, and by whom
    settled_at       timestamptz,
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,       -- the leg, entry context
    CHECK (filled_qty <= quantity),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX IF NOT EXISTS order_intents_open_idx
    ON order_intents (trade_tag, purpose) WHERE settled_at IS NULL;
CREATE INDEX IF NOT EXISTS order_intents_unresolved_idx
    ON order_intents (id) WHERE state = 'unresolved' AND settled_at IS NULL;
CREATE INDEX IF NOT EXISTS order_intents_parent_idx ON order_intents (parent_id)
    WHERE parent_id IS NOT NULL;

-- The operator's decision on an unresolved order (mark filled at a price / mark not filled /
-- flatten a quantity) is an engine command like any other.
ALTER TABLE engine_commands DROP CONSTRAINT IF EXISTS engine_commands_kind_check;
ALTER TABLE engine_commands ADD CONSTRAINT engine_commands_kind_check
    CHECK (kind IN ('close_trade', 'pause_entries', 'resume_entries', 'set_go_live_stage',
                    'run_backtest', 'run_grid', 'rerun_task', 'resolve_order'));
