-- 001_initial_schema.sql — every table named in the seeds (Persistence Files, Backtesting,
-- Infrastructure). Money and prices NUMERIC, instants timestamptz, trading days date,
-- payloads JSONB, identities BIGSERIAL. Rules of the seeds are enforced here, in the database.
-- schema_migrations itself is created by the migration runner before any file is applied.

-- ---------------------------------------------------------------- helpers
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- ---------------------------------------------------------------- trading state
-- Active positions (paper, shadow and live) — replaced transactionally on every save.
CREATE TABLE open_trades (
    id            BIGSERIAL PRIMARY KEY,
    tag           text        NOT NULL UNIQUE,
    strategy      text        NOT NULL,
    mode          text        NOT NULL CHECK (mode IN ('paper', 'shadow', 'live')),
    trade_date    date        NOT NULL,
    opened_at     timestamptz NOT NULL,
    entry_price   NUMERIC(18, 4),
    quantity      integer     NOT NULL DEFAULT 0,
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX open_trades_strategy_idx ON open_trades (strategy);

-- Daily performance snapshot: funnel counts and session stats as JSON.
CREATE TABLE metrics_days (
    trade_date     date        PRIMARY KEY,
    realized_pnl   NUMERIC(18, 2) NOT NULL DEFAULT 0,
    charges        NUMERIC(18, 2) NOT NULL DEFAULT 0,
    trades_opened  integer     NOT NULL DEFAULT 0,
    trades_closed  integer     NOT NULL DEFAULT 0,
    wins           integer     NOT NULL DEFAULT 0,
    losses         integer     NOT NULL DEFAULT 0,
    funnel         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    session_stats  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Every fill (one row per leg fill), normalised out of metrics_days.
CREATE TABLE executions (
    id             BIGSERIAL PRIMARY KEY,
    trade_date     date        NOT NULL,
    executed_at    timestamptz NOT NULL,
    tag            text        NOT NULL,
    strategy       text        NOT NULL,
    mode           text        NOT NULL CHECK (mode IN ('paper', 'shadow', 'live')),
    action         text        NOT NULL CHECK (action IN ('OPEN', 'CLOSE')),
    security_id    text        NOT NULL,
    side           text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity       integer     NOT NULL CHECK (quantity > 0),
    price          NUMERIC(18, 4) NOT NULL CHECK (price >= 0),
    charges        NUMERIC(18, 4) NOT NULL DEFAULT 0,
    order_id       text,
    correlation_id text,
    payload        jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX executions_day_idx ON executions (trade_date);
CREATE INDEX executions_tag_idx ON executions (tag);
CREATE UNIQUE INDEX executions_correlation_uq ON executions (correlation_id, security_id)
    WHERE correlation_id IS NOT NULL;

-- Closed trades: one per (trading day, tag) — record_close ignores a tag already closed that day.
CREATE TABLE closed_trades (
    id             BIGSERIAL PRIMARY KEY,
    trade_date     date        NOT NULL,
    tag            text        NOT NULL,
    strategy       text        NOT NULL,
    mode           text        NOT NULL CHECK (mode IN ('paper', 'shadow', 'live')),
    opened_at      timestamptz NOT NULL,
    closed_at      timestamptz NOT NULL,
    entry_price    NUMERIC(18, 4),
    exit_price     NUMERIC(18, 4),
    quantity       integer     NOT NULL DEFAULT 0,
    gross_pnl      NUMERIC(18, 2) NOT NULL,
    charges        NUMERIC(18, 2) NOT NULL DEFAULT 0,
    realized_pnl   NUMERIC(18, 2) NOT NULL,
    exit_reason    text        NOT NULL,
    payload        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT closed_trades_day_tag_uq UNIQUE (trade_date, tag)
);
CREATE INDEX closed_trades_closed_at_idx ON closed_trades (closed_at);
CREATE INDEX closed_trades_strategy_idx ON closed_trades (strategy, trade_date);

-- Paper -> shadow -> live state per strategy; seeded from *_DRY_RUN once, owned by the DB after.
CREATE TABLE go_live_state (
    strategy     text        PRIMARY KEY,
    stage        text        NOT NULL CHECK (stage IN ('paper', 'shadow', 'live', 'disabled')),
    seeded_from  text,
    updated_by   text        NOT NULL DEFAULT 'seed',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    history      jsonb       NOT NULL DEFAULT '[]'::jsonb
);

-- Key/value runtime state: dhan_token (expiry, refresh source, update time), strategy_slots, ...
CREATE TABLE runtime_state (
    key         text        PRIMARY KEY,
    value       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Singleton risk envelope.
CREATE TABLE risk_envelope_state (
    id               smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    daily_pnl        NUMERIC(18, 2) NOT NULL DEFAULT 0,
    weekly_pnl       NUMERIC(18, 2) NOT NULL DEFAULT 0,
    monthly_pnl      NUMERIC(18, 2) NOT NULL DEFAULT 0,
    lifetime_pnl     NUMERIC(18, 2) NOT NULL DEFAULT 0,
    loss_streak      integer     NOT NULL DEFAULT 0 CHECK (loss_streak >= 0),
    pause_reason     text,
    paused_until     timestamptz,
    last_close_date  date,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO risk_envelope_state (id) VALUES (1);

-- ---------------------------------------------------------------- AI flows
CREATE TABLE ai_market_analysis (
    id                BIGSERIAL PRIMARY KEY,
    trade_date        date        NOT NULL,
    called_at         timestamptz NOT NULL DEFAULT now(),
    raw_response      text,
    parsed            jsonb,
    verdict           text,
    confidence_pct    NUMERIC(5, 2) CHECK (confidence_pct BETWEEN 0 AND 100),
    input_tokens      integer,
    output_tokens     integer,
    error_text        text,
    execution_status  text
);
CREATE INDEX ai_market_analysis_day_idx ON ai_market_analysis (trade_date);

CREATE TABLE ai_market_trades (
    id            BIGSERIAL PRIMARY KEY,
    analysis_id   bigint      REFERENCES ai_market_analysis (id) ON DELETE SET NULL,
    trade_date    date        NOT NULL,
    open_tag      text        NOT NULL,
    strike        NUMERIC(12, 2),
    option_type   text        CHECK (option_type IN ('CE', 'PE')),
    entry_price   NUMERIC(18, 4),
    exit_price    NUMERIC(18, 4),
    target        NUMERIC(18, 4),
    stop          NUMERIC(18, 4),
    realized_pnl  NUMERIC(18, 2),
    created_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz
);
CREATE INDEX ai_market_trades_day_idx ON ai_market_trades (trade_date);

CREATE TABLE ai_predictions (
    id              BIGSERIAL PRIMARY KEY,
    trade_date      date        NOT NULL,
    task            text        NOT NULL CHECK (task IN ('market_view', 'breakout_risk')),
    payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    verdict         text,
    confidence_pct  NUMERIC(5, 2) CHECK (confidence_pct BETWEEN 0 AND 100),
    input_tokens    integer,
    output_tokens   integer,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_predictions_day_idx ON ai_predictions (trade_date, task);

CREATE TABLE ai_exit_advisories (
    id              BIGSERIAL PRIMARY KEY,
    trade_date      date        NOT NULL,
    trade_tag       text        NOT NULL,
    strategy        text        NOT NULL,
    reason          text        NOT NULL,
    confidence_pct  NUMERIC(5, 2) CHECK (confidence_pct BETWEEN 0 AND 100),
    action_taken    text        NOT NULL CHECK (action_taken IN ('AUTO_CLOSE', 'ADVISORY_ONLY')),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_exit_advisories_created_idx ON ai_exit_advisories (created_at);

CREATE TABLE ai_market_sentiment (
    id            BIGSERIAL PRIMARY KEY,
    trade_date    date        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    score         NUMERIC(6, 2) NOT NULL CHECK (score BETWEEN -100 AND 100),
    label         text        NOT NULL CHECK (label IN ('STRONGLY_BEARISH', 'BEARISH', 'NEUTRAL',
                                                        'BULLISH', 'STRONGLY_BULLISH')),
    strength_pct  NUMERIC(5, 2),
    coverage_pct  NUMERIC(5, 2),
    spot          NUMERIC(12, 2),
    prev_close    NUMERIC(12, 2),
    pcr           NUMERIC(8, 4),
    iv            NUMERIC(8, 4),
    components    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    note          text
);
CREATE INDEX ai_market_sentiment_created_idx ON ai_market_sentiment (created_at);

-- ---------------------------------------------------------------- calendar and events
CREATE TABLE nse_holidays (
    holiday_date  date PRIMARY KEY,
    description   text NOT NULL DEFAULT '',
    segment       text NOT NULL DEFAULT 'FO',
    source        text NOT NULL DEFAULT 'seed'
);

CREATE TABLE market_events (
    id           BIGSERIAL PRIMARY KEY,
    event_date   date        NOT NULL,
    event_time   time,
    name         text        NOT NULL,
    category     text        NOT NULL,
    risk_level   text        NOT NULL DEFAULT 'medium' CHECK (risk_level IN ('low', 'medium', 'high')),
    source       text        NOT NULL DEFAULT 'seed',
    payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT market_events_uq UNIQUE (event_date, name, source)
);
CREATE INDEX market_events_date_idx ON market_events (event_date);

-- Append-only audit of reconciliation auto-heal actions.
CREATE TABLE reconciliation_audit (
    id           BIGSERIAL PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    action       text        NOT NULL CHECK (action IN ('CONFIRMED_FLAT_REMOVAL', 'ORPHAN_ADOPTION',
                                                        'PENDING_QTY_MISMATCH',
                                                        'CONFIRMED_QTY_MISMATCH', 'ORPHAN_ALERT')),
    trade_tag    text,
    security_id  text,
    details      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX reconciliation_audit_created_idx ON reconciliation_audit (created_at);
CREATE TRIGGER reconciliation_audit_append_only
    BEFORE UPDATE OR DELETE ON reconciliation_audit
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER reconciliation_audit_no_truncate
    BEFORE TRUNCATE ON reconciliation_audit
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- ---------------------------------------------------------------- scanner records
-- One row per scan cycle; pruned after 60 days.
CREATE TABLE strategy_battle_log (
    id                 BIGSERIAL PRIMARY KEY,
    created_at         timestamptz NOT NULL,
    trade_date         date        NOT NULL,
    spot               NUMERIC(12, 2),
    iv                 NUMERIC(8, 4),
    realized_range     NUMERIC(12, 2),
    near_straddle      NUMERIC(12, 2),
    selected_strategy  text,
    eligibility        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    rejections         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    payload            jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX strategy_battle_log_created_idx ON strategy_battle_log (created_at);

-- One row per successful IV sample; pruned after 180 days.
CREATE TABLE iv_snapshots (
    id              BIGSERIAL PRIMARY KEY,
    created_at      timestamptz NOT NULL,
    trade_date      date        NOT NULL,
    spot            NUMERIC(12, 2) NOT NULL,
    near_expiry     date,
    far_expiry      date,
    near_dte        integer,
    far_dte         integer,
    near_atm_iv     NUMERIC(8, 4),
    far_atm_iv      NUMERIC(8, 4),
    atm_call_iv     NUMERIC(8, 4),
    atm_put_iv      NUMERIC(8, 4),
    skew            NUMERIC(8, 4),
    near_straddle   NUMERIC(12, 2),
    far_straddle    NUMERIC(12, 2),
    realized_range  NUMERIC(12, 2),
    payload         jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX iv_snapshots_created_idx ON iv_snapshots (created_at);

-- One row per closed trade, keyed by tag.
CREATE TABLE trade_journal (
    tag                 text        PRIMARY KEY,
    trade_date          date        NOT NULL,
    strategy            text        NOT NULL,
    trade_payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    realized_pnl        NUMERIC(18, 2),
    exit_reason         text,
    entry_spot          NUMERIC(12, 2),
    exit_spot           NUMERIC(12, 2),
    entry_iv            NUMERIC(8, 4),
    exit_iv             NUMERIC(8, 4),
    skew                NUMERIC(8, 4),
    mfe                 NUMERIC(18, 2),
    mae                 NUMERIC(18, 2),
    slippage            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    selection_context   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    rejected_strategies jsonb       NOT NULL DEFAULT '[]'::jsonb,
    ai_verdict          text,
    operator_notes      text,
    ai_debrief          text,
    ai_debrief_json     jsonb,
    rejected_strategy_delta jsonb,
    ai_verdict_outcome  text,
    event_risk_label    text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trade_journal_day_idx ON trade_journal (trade_date);

-- Rolling z-score history of the near/far futures spread (last 100 samples; cleared on roll).
CREATE TABLE calendar_spread_history (
    id            BIGSERIAL PRIMARY KEY,
    sampled_at    timestamptz NOT NULL,
    near_expiry   date        NOT NULL,
    far_expiry    date        NOT NULL,
    near_price    NUMERIC(12, 2) NOT NULL,
    far_price     NUMERIC(12, 2) NOT NULL,
    spread        NUMERIC(12, 2) NOT NULL
);
CREATE INDEX calendar_spread_history_sampled_idx ON calendar_spread_history (sampled_at);

-- Cached NIFTY near/far futures security ids; refreshed when the near contract expires.
CREATE TABLE futures_id_cache (
    leg           text        PRIMARY KEY CHECK (leg IN ('near', 'far')),
    security_id   text        NOT NULL,
    symbol        text        NOT NULL,
    expiry        date        NOT NULL,
    lot_size      integer     NOT NULL CHECK (lot_size > 0),
    refreshed_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- runtime settings
-- Only keys of engine/settings/registry.py are stored (checked in code); absent row = default.
CREATE TABLE bot_settings (
    key         text        PRIMARY KEY CHECK (key ~ '^[A-Z][A-Z0-9_]*$'),
    value       text        NOT NULL,
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE settings_audit (
    id          BIGSERIAL PRIMARY KEY,
    key         text        NOT NULL,
    old_value   text,
    new_value   text,
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settings_audit_key_idx ON settings_audit (key, updated_at);
CREATE TRIGGER settings_audit_append_only
    BEFORE UPDATE OR DELETE ON settings_audit
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER settings_audit_no_truncate
    BEFORE TRUNCATE ON settings_audit
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- ---------------------------------------------------------------- backtesting
CREATE TABLE bhavcopy_ohlc (
    trade_date     date        NOT NULL,
    symbol         text        NOT NULL CHECK (symbol IN ('NIFTY', 'BANKNIFTY')),
    expiry         date        NOT NULL,
    option_type    text        NOT NULL CHECK (option_type IN ('CE', 'PE', 'FUT')),
    strike         NUMERIC(12, 2) NOT NULL,
    open           NUMERIC(12, 2),
    high           NUMERIC(12, 2),
    low            NUMERIC(12, 2),
    close          NUMERIC(12, 2),
    settle         NUMERIC(12, 2),
    underlying     NUMERIC(12, 2),
    open_interest  bigint,
    oi_change      bigint,
    volume         bigint,
    lot_size       integer,
    source_file    text,
    PRIMARY KEY (trade_date, symbol, expiry, option_type, strike)
);
CREATE INDEX bhavcopy_ohlc_symbol_day_idx ON bhavcopy_ohlc (symbol, trade_date, expiry);

CREATE TABLE backtest_runs (
    run_id           BIGSERIAL PRIMARY KEY,
    strategy         text        NOT NULL,
    start_date       date        NOT NULL,
    end_date         date        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'running', 'complete', 'error')),
    config_snapshot  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    trades_json      jsonb       NOT NULL DEFAULT '[]'::jsonb,
    metrics_json     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    progress_pct     NUMERIC(5, 2) NOT NULL DEFAULT 0,
    error_text       text,
    grid_job_id      bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CHECK (end_date >= start_date)
);
CREATE INDEX backtest_runs_created_idx ON backtest_runs (created_at);

CREATE TABLE backtest_grid_jobs (
    job_id        BIGSERIAL PRIMARY KEY,
    strategy      text        NOT NULL,
    start_date    date        NOT NULL,
    end_date      date        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'running', 'complete', 'error')),
    param_space   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    results_json  jsonb       NOT NULL DEFAULT '[]'::jsonb,
    progress_pct  NUMERIC(5, 2) NOT NULL DEFAULT 0,
    error_text    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    CHECK (end_date >= start_date)
);
CREATE INDEX backtest_grid_jobs_created_idx ON backtest_grid_jobs (created_at);
ALTER TABLE backtest_runs
    ADD CONSTRAINT backtest_runs_grid_fk FOREIGN KEY (grid_job_id)
    REFERENCES backtest_grid_jobs (job_id) ON DELETE SET NULL;
