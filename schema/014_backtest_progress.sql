-- Progress of a running backtest or grid search in its own units (sessions or snapshots of a
-- run, combinations of a grid), written by the worker while it runs: the dashboard shows
-- done/total and an ETA from the rate so far (engine/backtest/runs.py ProgressWriter,
-- engine/backtest/grid.py). progress_pct stays for older readers; a run that fails keeps the
-- progress it had reached (no longer set to 100).
ALTER TABLE backtest_runs
    ADD COLUMN progress_done  integer CHECK (progress_done >= 0),
    ADD COLUMN progress_total integer CHECK (progress_total > 0),
    ADD COLUMN progress_at    timestamptz,
    ADD CONSTRAINT backtest_runs_progress_check CHECK (progress_done <= progress_total);
ALTER TABLE backtest_grid_jobs
    ADD COLUMN progress_done  integer CHECK (progress_done >= 0),
    ADD COLUMN progress_total integer CHECK (progress_total > 0),
    ADD COLUMN progress_at    timestamptz,
    ADD CONSTRAINT backtest_grid_jobs_progress_check CHECK (progress_done <= progress_total);
