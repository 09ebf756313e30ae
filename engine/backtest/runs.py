"""One backtest run, whichever the data, and its ``backtest_runs`` row (CLI, API, actor alike).

``BT_DATA`` picks the market: ``bhavcopy`` (the end-of-day replay on ``bhavcopy_ohlc``,
:mod:`engine.backtest.eod_replay`), ``sim`` (the seeded simulated market,
:mod:`engine.backtest.sim_replay`) or ``snapshots`` (the intraday replay on the engine's recorded
``iv_snapshots``, :mod:`engine.backtest.snapshot_replay`). The row goes pending → running → complete / error;
``config_snapshot`` holds the overrides with ``BT_DATA`` and ``BT_FILL_MODEL`` (setting keys,
so the dashboard's ``run_backtest`` command carries them unchanged); ``metrics_json`` holds
the metrics, the daily equity curve and the data coverage; ``trades_json`` the trades with
each leg's price source. While a run goes, :class:`ProgressWriter` keeps ``progress_done`` /
``progress_total`` (the replay's steps: sessions, or snapshots of a snapshot replay),
``progress_pct`` and ``progress_at`` current, so the dashboard shows done/total and an ETA;
a run that fails keeps the progress it had reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from engine.settings import knob
from engine.store.tx import transaction

__all__ = ["DATA_SOURCES", "ProgressWriter", "create_run", "execute", "finish_run", "run_config",
           "run_result", "start_run"]

DATA_SOURCES = ("bhavcopy", "snapshots", "sim")
#: where progress may be written: table -> key column
_PROGRESS_TABLES = {"backtest_runs": "run_id", "backtest_grid_jobs": "job_id"}

logger = logging.getLogger(__name__)


class ProgressWriter:
    """Progress of a running backtest (or grid search) written to its row while it runs.

    Call it as a replay's ``progress(fraction)`` callback or with :meth:`steps` (``done``,
    ``total``). The replays call ``progress((n + 1) / N)`` after each of their N steps, so the
    first call tells N (the total). Writes ``progress_done``, ``progress_total``,
    ``progress_pct`` and ``progress_at`` at most every ``every`` seconds, always the last step,
    and only while the row is ``running`` (a finished row is never touched). Through ``pool``
    (the caller's pool) or ``dsn`` (one connection of its own, for a worker process: call
    :meth:`close`). A write that fails is logged and skipped: progress is a courtesy, the
    result is what counts.
    """

    def __init__(self, row_id: int, *, pool: Any = None, dsn: str | None = None,
                 table: str = "backtest_runs", every: float = 0.25,
                 echo: Callable[[float], None] | None = None) -> None:
        if table not in _PROGRESS_TABLES:
            raise ValueError(f"no progress in table {table!r}")
        if (pool is None) == (dsn is None):
            raise ValueError("ProgressWriter needs a pool or a dsn")
        self.row_id, self.table, self.every, self.echo = row_id, table, every, echo
        self._pool, self._dsn = pool, dsn
        self._conn: psycopg.Connection | None = None
        self._total: int | None = None
        self._last = float("-inf")
        self.written: list[tuple[int, int]] = []  # (done, total) as written, for the caller

    def __call__(self, fraction: float) -> None:
        if self.echo is not None:
            self.echo(fraction)
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self._total is None:
            self._total = max(1, round(1 / fraction)) if fraction > 0 else None
        if self._total is not None:
            self.steps(min(self._total, round(fraction * self._total)), self._total)

    def steps(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps finished."""
        now = time.monotonic()
        if total <= 0 or (done < total and now - self._last < self.every):
            return
        self._last = now
        done = min(max(done, 0), total)
        sql = (f"UPDATE {self.table} SET progress_done = %s, progress_total = %s,"
               f" progress_pct = %s, progress_at = now()"
               f" WHERE {_PROGRESS_TABLES[self.table]} = %s AND status = 'running'")
        args = (done, total, round(100 * done / total, 2), self.row_id)
        try:
            if self._pool is not None:
                with self._pool.connection() as conn:
                    conn.execute(sql, args)
            else:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._dsn, connect_timeout=5, autocommit=True)
                self._conn.execute(sql, args)
            self.written.append((done, total))
        except psycopg.Error as exc:
            logger.debug("progress of %s %s not written: %s", self.table, self.row_id, exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ProgressWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_config(params: Mapping[str, Any], *, data: str | None = None,
               fill_model: str | None = None) -> dict[str, Any]:
    """The overrides as stored: every value as text, with ``BT_DATA`` / ``BT_FILL_MODEL``
    (checked by their knobs).

    Raises:
        SettingError: an unknown key or a bad value (a ValueError).
    """
    out = {k: knob(k).render(knob(k).coerce(str(v))) for k, v in params.items()}
    if data is not None:
        out["BT_DATA"] = knob("BT_DATA").coerce(data)
    if fill_model is not None:
        out["BT_FILL_MODEL"] = knob("BT_FILL_MODEL").coerce(fill_model)
    out.setdefault("BT_DATA", knob("BT_DATA").default)
    out.setdefault("BT_FILL_MODEL", knob("BT_FILL_MODEL").default)
    return out


def run_result(strategy: str, start: date, end: date, config: Mapping[str, Any], *,
               pool: Any = None, dsn: str | None = None, seed: int = 7,
               progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Run the backtest ``config`` asks for: ``{"trades", "metrics"}``.

    Raises:
        ValueError: a bad strategy or parameter; DataRefused: data that cannot support it.
    """
    data = str(config.get("BT_DATA", "bhavcopy"))
    params = {k: v for k, v in config.items() if k not in ("BT_DATA",)}
    if data == "sim":
        from engine.backtest import sim_replay

        result = sim_replay.run(strategy, start, end, params, seed=seed, progress=progress)
        return {"trades": result.trades, "metrics": {**result.metrics, "data": "sim"}}
    if data not in ("bhavcopy", "snapshots"):
        raise ValueError(f"unknown data {data!r}: expected one of {', '.join(DATA_SOURCES)}")
    from engine.backtest import eod_replay, snapshot_replay

    own = None
    if pool is None:
        from engine.store.pool import get_pool, open_pool

        pool = own = open_pool(dsn, min_size=1, max_size=2, name="eod-replay") if dsn else get_pool()
    try:
        replay = snapshot_replay if data == "snapshots" else eod_replay
        result = replay.run(strategy, start, end, params, pool=pool, progress=progress)
    finally:
        if own is not None:
            own.close()
    return {"trades": result.trades, "metrics": result.metrics}


def create_run(pool: Any, strategy: str, start: date, end: date, config: Mapping[str, Any]) -> int:
    """A pending backtest_runs row."""
    with transaction(pool) as conn:
        return int(conn.execute(
            "INSERT INTO backtest_runs (strategy, start_date, end_date, config_snapshot)"
            " VALUES (%s, %s, %s, %s) RETURNING run_id",
            (strategy, start, end, Jsonb(dict(config)))).fetchone()["run_id"])


def start_run(pool: Any, run_id: int) -> bool:
    """pending → running (False when it was not pending)."""
    with transaction(pool) as conn:
        return conn.execute("UPDATE backtest_runs SET status = 'running', started_at = now()"
                            " WHERE run_id = %s AND status = 'pending' RETURNING 1",
                            (run_id,)).fetchone() is not None


def finish_run(pool: Any, run_id: int, result: Mapping[str, Any] | None, error: str | None) -> None:
    """running → complete (with trades and metrics, progress at 100 %) or error (with its
    text; the progress stays where the run stopped)."""
    result = result or {}
    with transaction(pool) as conn:
        conn.execute(
            "UPDATE backtest_runs SET status = %(status)s, trades_json = %(trades)s,"
            " metrics_json = %(metrics)s, error_text = %(error)s,"
            " progress_pct = CASE WHEN %(ok)s THEN 100 ELSE progress_pct END,"
            " progress_done = CASE WHEN %(ok)s THEN progress_total ELSE progress_done END,"
            " finished_at = now() WHERE run_id = %(id)s",
            {"status": "error" if error else "complete", "ok": not error,
             "trades": Jsonb(list(result.get("trades", []))),
             "metrics": Jsonb(dict(result.get("metrics", {}))), "error": error, "id": run_id})


def execute(pool: Any, strategy: str, start: date, end: date, config: Mapping[str, Any], *,
            seed: int = 7, progress: Callable[[float], None] | None = None
            ) -> tuple[int, dict[str, Any] | None, str | None]:
    """Create, run and store one backtest: (run_id, result or None, error text or None);
    its progress is written to the row as it goes (and passed on to ``progress``)."""
    run_id = create_run(pool, strategy, start, end, config)
    start_run(pool, run_id)
    writer = ProgressWriter(run_id, pool=pool, echo=progress)
    try:
        result = run_result(strategy, start, end, config, pool=pool, seed=seed, progress=writer)
    except ValueError as exc:  # DataRefused, SettingError, UnknownStrategy
        finish_run(pool, run_id, None, f"{type(exc).__name__}: {exc}")
        return run_id, None, str(exc)
    finish_run(pool, run_id, result, None)
    return run_id, result, None
