-- Reconciliation auto-heal (engine/execution/recon_heal.py) and the daily backtest-vs-live
-- parity report (engine/backtest/parity.py).

-- A quantity mismatch the broker's trade book explains (a partial exit by hand) is healed;
-- the start-up reconciliation records when live entries were let through.
ALTER TABLE reconciliation_audit DROP CONSTRAINT IF EXISTS reconciliation_audit_action_check;
ALTER TABLE reconciliation_audit ADD CONSTRAINT reconciliation_audit_action_check
    CHECK (action IN ('CONFIRMED_FLAT_REMOVAL', 'ORPHAN_ADOPTION', 'PENDING_QTY_MISMATCH',
                      'CONFIRMED_QTY_MISMATCH', 'ORPHAN_ALERT', 'QTY_MISMATCH_HEALED',
                      'STARTUP_RECONCILED'));
CREATE INDEX IF NOT EXISTS reconciliation_audit_tag_idx ON reconciliation_audit (trade_tag);

-- One parity report per trading day and strategy set: the day's recorded snapshots replayed
-- through the backtester with the engine's parameters, diffed against what the engine did.
CREATE TABLE parity_reports (
    id            BIGSERIAL PRIMARY KEY,
    trade_date    date        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    strategies    text[]      NOT NULL,
    status        text        NOT NULL CHECK (status IN ('match', 'differs', 'no_data',
                                                         'error')),
    summary       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    report        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (trade_date, strategies)
);
CREATE INDEX parity_reports_date_idx ON parity_reports (trade_date);
