"""BacktestActor: owns backtest_runs and backtest_grid_jobs and their lifecycle
(pending → running → complete / error).

Runs execute in a worker process (ProcessPoolExecutor), so a long backtest never blocks the
actor's mailbox and temporary parameter overrides can never leak into the live engine. The
actor learns of completion through a future callback that *tells* it a message — it never
blocks on the future.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.messages.commands import EndOfDayTick, RunBacktest, RunGrid
from engine.messages.events import BacktestFinished
from engine.store.tx import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _JobDone:
    """A worker-process job finished (told to the actor by the future's callback)."""

    kind: str                 # "run" | "grid" | "parity"
    row_id: int
    result: Any               # run: {"trades", "metrics"}; grid: ranked rows; None on error
    error: str | None


# kind -> (table, key column)
_TABLES = {"run": ("backtest_runs", "run_id"), "grid": ("backtest_grid_jobs", "job_id")}


def _run_job(strategy: str, start: date, end: date, params: dict[str, Any],
             dsn: str | None = None, run_id: int | None = None) -> dict[str, Any]:
    """One run in the worker: ``params["BT_DATA"]`` picks the data (bhavcopy by default: the
    end-of-day replay reads ``bhavcopy_ohlc`` through its own pool on ``dsn``; sim: the
    simulated market), ``params["BT_FILL_MODEL"]`` the fill model (engine.backtest.runs).
    With ``run_id`` the progress (done/total steps) is written to its row as the run goes."""
    from engine.backtest import runs

    if dsn is None or run_id is None:
        return runs.run_result(strategy, start, end, params, dsn=dsn)
    with runs.ProgressWriter(run_id, dsn=dsn) as progress:
        return runs.run_result(strategy, start, end, params, dsn=dsn, progress=progress)


def _grid_job(strategy: str, start: date, end: date, grid: list[dict[str, Any]],
              options: dict[str, Any], dsn: str | None, job_id: int) -> dict[str, Any]:
    """A grid search in the worker (``engine.backtest.grid``: its own worker processes, the
    ranking, the walk-forward split, progress in backtest_grid_jobs)."""
    from engine.backtest.grid import grid_job

    return grid_job(strategy, start, end, grid, options, dsn, job_id)


def _parity_job(day: date, strategies: list[str], dsn: str) -> dict[str, Any]:
    """The day's parity report in the worker (``engine.backtest.parity``): replayed with the
    engine's stored parameters, stored (replacing an earlier one of the day) and, unless
    nothing was recorded, its summary queued to chat (de-duplicated: a rerun after a restart
    sends nothing new)."""
    from engine.backtest import parity
    from engine.settings import Settings
    from engine.store.pool import open_pool

    pool = open_pool(dsn, min_size=1, max_size=2, name="parity")
    try:
        report = parity.run(pool, day, strategies=strategies,
                            params=parity.engine_params(Settings(pool)))
        report_id = parity.store(pool, report, notify=report["status"] != "no_data")
        return {"id": report_id, "status": report["status"],
                "text": parity.summary_text(report)}
    finally:
        pool.close()


class BacktestActor(SupervisedActor):
    def setup(self) -> None:
        self._pool = self.ctx.services["pool"]
        # spawn, not fork: forking a process full of threads (actors, pool workers) can inherit
        # a held lock and hang the child
        self._executor: Executor = self.ctx.services.get("backtest_executor") or \
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
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
            case EndOfDayTick(trading_day=day):
                self._start_parity(day)
            case _JobDone():
                self._finish(message)
            case _:
                return super().handle(message)
        return None

    def _start_run(self, msg: RunBacktest) -> None:
        params = dict(msg.params)
        run_id = self._claim("run", msg.run_id, (
            "INSERT INTO backtest_runs (strategy, start_date, end_date, config_snapshot)"
            " VALUES (%s, %s, %s, %s) RETURNING run_id",
            (msg.strategy, msg.start, msg.end, Jsonb(params))))
        if run_id is not None:
            dsn = getattr(self._pool, "conninfo", None)
            self._submit("run", run_id, _run_job, msg.strategy, msg.start, msg.end, params, dsn,
                         run_id)

    def _start_grid(self, msg: RunGrid) -> None:
        grid = [dict(g) for g in msg.grid]
        job_id = self._claim("grid", msg.job_id, (
            "INSERT INTO backtest_grid_jobs (strategy, start_date, end_date, param_space)"
            " VALUES (%s, %s, %s, %s) RETURNING job_id",
            (msg.strategy, msg.start, msg.end, Jsonb({"grid": grid}))))
        if job_id is not None:
            self._submit("grid", job_id, _grid_job, msg.strategy, msg.start, msg.end, grid,
                         dict(msg.options), getattr(self._pool, "conninfo", None), job_id)

    def _start_parity(self, day: date) -> None:
        """After the close, when ``PARITY_DAILY``: the day's parity report in the worker."""
        settings = self.ctx.services["settings"]
        if not bool(settings.get("PARITY_DAILY")):
            return
        strategies = [s.strip().upper() for s in str(settings.get("PARITY_STRATEGIES")).split(",")
                      if s.strip()]
        dsn = getattr(self._pool, "conninfo", None)
        if not strategies or dsn is None:
            logger.warning("daily parity report of %s not run: %s", day,
                           "PARITY_STRATEGIES names no strategy" if not strategies
                           else "no database address for the worker")
            return
        logger.info("daily parity report of %s (%s) started", day, ", ".join(strategies))
        self._submit("parity", 0, _parity_job, day, strategies, dsn)

    def _claim(self, kind: str, row_id: int | None, insert: tuple[str, tuple]) -> int | None:
        """Create the row if the request has none, then move it pending -> running (once)."""
        table, key = _TABLES[kind]
        with transaction(self._pool) as conn:
            if row_id is None:
                row_id = conn.execute(*insert).fetchone()[key]
            claimed = conn.execute(
                f"UPDATE {table} SET status = 'running', started_at = now() WHERE {key} = %s"
                " AND status = 'pending' RETURNING 1", (row_id,)).fetchone()
        if claimed is None:
            logger.warning("backtest %s %s is not pending; not started again", kind, row_id)
            return None
        return row_id

    def _submit(self, kind: str, row_id: int, job, *args: Any) -> None:
        future = self._executor.submit(job, *args)
        future.add_done_callback(lambda f: self._tell_done(f, kind, row_id))

    def _tell_done(self, future: Future, kind: str, row_id: int) -> None:
        try:
            message = _JobDone(kind, row_id, future.result(), None)
        except Exception as exc:
            message = _JobDone(kind, row_id, None, f"{type(exc).__name__}: {exc}")
        try:
            self.actor_ref.tell(message)
        except Exception:
            logger.error("backtest finished after its actor stopped")

    def _finish(self, done: _JobDone) -> None:
        if done.kind == "parity":  # the job stored its own report (parity_reports)
            if done.error:
                logger.error("daily parity report failed: %s", done.error)
            else:
                logger.info("daily parity report %s: %s", done.result["id"], done.result["text"])
            return
        table, key = _TABLES[done.kind]
        status = "error" if done.error else "complete"
        if done.kind == "run":
            result = done.result or {}
            columns = {"trades_json": Jsonb(result.get("trades", [])),
                       "metrics_json": Jsonb(result.get("metrics", {}))}
            summary = result.get("metrics", {"error": done.error})
        else:
            payload = done.result or {}
            summary = {k: v for k, v in payload.items() if k != "rows"}
            columns = {"results_json": Jsonb(payload.get("rows", [])),
                       "param_space": Jsonb({"summary": summary})}
            summary = {"results": len(payload.get("rows", [])), **summary}
        sets = "".join(f" {c} = {c} || %({c})s," if c == "param_space" else f" {c} = %({c})s,"
                       for c in columns)
        with transaction(self._pool) as conn:
            row = conn.execute(
                f"UPDATE {table} SET status = %(status)s,{sets} error_text = %(error)s,"
                # a failed job keeps the progress it reached: the dashboard shows where it
                # stopped, not a full bar
                " progress_pct = CASE WHEN %(error)s::text IS NULL THEN 100 ELSE progress_pct END,"
                " progress_done = CASE WHEN %(error)s::text IS NULL THEN progress_total"
                " ELSE progress_done END,"
                f" finished_at = now() WHERE {key} = %(id)s"
                " RETURNING strategy, start_date, end_date",
                {"status": status, "error": done.error, "id": done.row_id, **columns}).fetchone()
        self.publish(self.new(BacktestFinished, status=status, **{key: done.row_id},
                              strategy=row["strategy"], start=row["start_date"], end=row["end_date"],
                              summary=summary))
