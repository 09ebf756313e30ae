-- 006_cycle_idempotency.sql — a scan cycle is applied exactly once.
--
-- The scanner writes one strategy_battle_log row per scan cycle (the cycle's commit record,
-- also for cycles without market data), at most one iv_snapshots sample and at most one
-- calendar_spread_history sample, all stamped with the cycle time, in one transaction. A
-- restart that replays a cycle (the process died after the cycle committed but before the
-- simulated clock was saved) must not record it twice: the battle-log insert uses
-- ON CONFLICT (created_at) DO NOTHING and the rest of the cycle runs only when it won.
--
-- Rows duplicated by such replays before this migration are removed first, keeping the
-- first row written for each instant.

DELETE FROM strategy_battle_log a USING strategy_battle_log b
    WHERE a.created_at = b.created_at AND a.id > b.id;
DELETE FROM iv_snapshots a USING iv_snapshots b
    WHERE a.created_at = b.created_at AND a.id > b.id;
DELETE FROM calendar_spread_history a USING calendar_spread_history b
    WHERE a.sampled_at = b.sampled_at AND a.id > b.id;

CREATE UNIQUE INDEX IF NOT EXISTS strategy_battle_log_created_key
    ON strategy_battle_log (created_at);
CREATE UNIQUE INDEX IF NOT EXISTS iv_snapshots_created_key ON iv_snapshots (created_at);
CREATE UNIQUE INDEX IF NOT EXISTS calendar_spread_history_sampled_key
    ON calendar_spread_history (sampled_at);

-- the unique indexes serve every lookup the plain ones did
DROP INDEX IF EXISTS strategy_battle_log_created_idx;
DROP INDEX IF EXISTS iv_snapshots_created_idx;
DROP INDEX IF EXISTS calendar_spread_history_sampled_idx;
