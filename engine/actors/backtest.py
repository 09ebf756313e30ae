"""BacktestActor: owns backtest_runs and backtest_grid_jobs and their lifecycle
(pending → running → complete / error).

Runs execute in a worker process (ProcessPoolExecutor), so a long backtest never blocks the
actor's mailbox and temporary parameter overrides can never leak into the live engine. The
actor learns of completion through a future callback that *tells* it a message — it never
blocks on the future.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.backtest import sim_replay
from engine.messages.commands import RunBacktest, RunGrid
from engine.messages.events import BacktestFinished
from engine.store.tx import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _RunDone:
    run_id: int
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class _GridDone:
    job_id: int
    results: list[dict[str, Any]] | None
    error: str | None


def _run_job(strategy: str, start: date, end: date, params: dict[str, Any]) -> dict[str, Any]:
    result = sim_replay.run(strategy, start, end, params)
    return {"trades": result.trades, "metrics": result.metrics}


def _grid_job(strategy: str, start: date, end: date, grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for params in grid:
        result = sim_replay.run(strategy, start, end, params)
        rows.append({"params": params, "metrics": result.metrics})
    rows.sort(key=lambda r: float(r["metrics"]["net_pnl"]), reverse=True)
    return [{"rank": i + 1, **row} for i, row in enumerate(rows)]


class BacktestActor(SupervisedActor):
    def setup(self) -> None:
        self._pool = self.ctx.services["pool"]
        self._executor: Executor = self.ctx.services.get("backtest_executor") or ProcessPoolExecutor(1)
        with transaction(self._pool) as conn:
            # runs that were running when the engine stopped cannot be resumed: say so
            conn.execute("UPDATE backtest_runs SET status = 'error', error_text = 'engine restarted"
                         " while the run was in progress', finished_at = now()"
                         " WHERE status = 'running'")
            conn.execute("UPDATE backtest_grid_jobs SET status = 'error', error_text = 'engine"
                         " restarted while the job was in progress', finished_at = now()"
                         " WHERE status = 'running'")

    def on_stop(self) -> None:
        if "backtest_executor" not in self.ctx.services:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def handle(self, message: Any) -> Any:
        match message:
            case RunBacktest():
                self._start_run(message)
            case RunGrid():
                self._start_grid(message)
            case _RunDone():
                self._finish_run(message)
            case _GridDone():
                self._finish_grid(message)
            case _:
                return super().handle(message)
        return None

    def _start_run(self, msg: RunBacktest) -> None:
        params = dict(msg.params)
        with transaction(self._pool) as conn:
            if msg.run_id is None:
                run_id = conn.execute(
                    "INSERT INTO backtest_runs (strategy, start_date, end_date, config_snapshot)"
                    " VALUES (%s, %s, %s, %s) RETURNING run_id",
                    (msg.strategy, msg.start, msg.end, Jsonb(params))).fetchone()["run_id"]
            else:
                run_id = msg.run_id
            claimed = conn.execute(
                "UPDATE backtest_runs SET status = 'running', started_at = now() WHERE run_id = %s"
                " AND status = 'pending' RETURNING run_id", (run_id,)).fetchone()
        if claimed is None:
            logger.warning("backtest run %s is not pending; not started again", run_id)
            return
        future = self._executor.submit(_run_job, msg.strategy, msg.start, msg.end, params)
        future.add_done_callback(lambda f: self._tell_done(f, lambda r, e: _RunDone(run_id, r, e)))

    def _start_grid(self, msg: RunGrid) -> None:
        grid = [dict(g) for g in msg.grid]
        with transaction(self._pool) as conn:
            if msg.job_id is None:
                job_id = conn.execute(
                    "INSERT INTO backtest_grid_jobs (strategy, start_date, end_date, param_space)"
                    " VALUES (%s, %s, %s, %s) RETURNING job_id",
                    (msg.strategy, msg.start, msg.end, Jsonb({"grid": grid}))).fetchone()["job_id"]
            else:
                job_id = msg.job_id
            claimed = conn.execute(
                "UPDATE backtest_grid_jobs SET status = 'running', started_at = now()"
                " WHERE job_id = %s AND status = 'pending' RETURNING job_id", (job_id,)).fetchone()
        if claimed is None:
            return
        future = self._executor.submit(_grid_job, msg.strategy, msg.start, msg.end, grid)
        future.add_done_callback(lambda f: self._tell_done(f, lambda r, e: _GridDone(job_id, r, e)))

    def _tell_done(self, future: Future, make) -> None:
        try:
            message = make(future.result(), None)
        except Exception as exc:
            message = make(None, f"{type(exc).__name__}: {exc}")
        try:
            self.actor_ref.tell(message)
        except Exception:
            logger.error("backtest finished after its actor stopped")

    def _finish_run(self, done: _RunDone) -> None:
        status = "error" if done.error else "complete"
        with transaction(self._pool) as conn:
            row = conn.execute(
                "UPDATE backtest_runs SET status = %s, trades_json = %s, metrics_json = %s,"
                " error_text = %s, progress_pct = 100, finished_at = now() WHERE run_id = %s"
                " RETURNING strategy, start_date, end_date",
                (status, Jsonb(done.result["trades"] if done.result else []),
                 Jsonb(done.result["metrics"] if done.result else {}), done.error,
                 done.run_id)).fetchone()
        self.publish(self.new(BacktestFinished, status=status, run_id=done.run_id,
                              strategy=row["strategy"], start=row["start_date"], end=row["end_date"],
                              summary=(done.result or {}).get("metrics", {"error": done.error})))

    def _finish_grid(self, done: _GridDone) -> None:
        status = "error" if done.error else "complete"
        with transaction(self._pool) as conn:
            row = conn.execute(
                "UPDATE backtest_grid_jobs SET status = %s, results_json = %s, error_text = %s,"
                " progress_pct = 100, finished_at = now() WHERE job_id = %s"
                " RETURNING strategy, start_date, end_date",
                (status, Jsonb(done.results or []), done.error, done.job_id)).fetchone()
        self.publish(self.new(BacktestFinished, status=status, job_id=done.job_id,
                              strategy=row["strategy"], start=row["start_date"], end=row["end_date"],
                              summary={"results": len(done.results or [])}))
