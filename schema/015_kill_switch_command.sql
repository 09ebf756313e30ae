-- The operator's kill switch (dashboard, chat /killswitch): pause entries, then Dhan's kill
-- switch once the account is flat. An engine command like any other.
ALTER TABLE engine_commands DROP CONSTRAINT IF EXISTS engine_commands_kind_check;
ALTER TABLE engine_commands ADD CONSTRAINT engine_commands_kind_check
    CHECK (kind IN ('close_trade', 'pause_entries', 'resume_entries', 'set_go_live_stage',
                    'run_backtest', 'run_grid', 'rerun_task', 'resolve_order', 'kill_switch'));
