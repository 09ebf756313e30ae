-- Risk envelope per go-live stage, derived from closed_trades.
--
-- Paper losses must not pause live trading, and live losses must not be hidden by paper
-- gains: each stage (paper / shadow / live) has its own P&L counters, loss streak and cap
-- pause. The counters are a cache of sums over closed_trades (mode = stage), recomputed by
-- the RiskActor on every start and after every close, so a lost event, a crash or a
-- database restart can delay an update but never lose one. closes_seen is the number of
-- closes the row was derived from (a cap pause is evaluated when it grows).
--
-- risk_envelope_state (the singleton) keeps the pause that applies to every stage
-- (operator, supervisor, trades on hold, token) and, for display, the counters summed over
-- all stages.
CREATE TABLE risk_envelope_stages (
    stage            text        PRIMARY KEY CHECK (stage IN ('paper', 'shadow', 'live')),
    daily_pnl        NUMERIC(18, 2) NOT NULL DEFAULT 0,
    weekly_pnl       NUMERIC(18, 2) NOT NULL DEFAULT 0,
    monthly_pnl      NUMERIC(18, 2) NOT NULL DEFAULT 0,
    lifetime_pnl     NUMERIC(18, 2) NOT NULL DEFAULT 0,
    loss_streak      integer     NOT NULL DEFAULT 0 CHECK (loss_streak >= 0),
    pause_reason     text,
    paused_until     timestamptz,
    last_close_date  date,
    closes_seen      bigint      NOT NULL DEFAULT 0 CHECK (closes_seen >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO risk_envelope_stages (stage) VALUES ('paper'), ('shadow'), ('live');
CREATE INDEX closed_trades_mode_idx ON closed_trades (mode, trade_date);
