"""One backtest run, whichever the data, and its ``backtest_runs`` row (CLI, API, actor alike).

``BT_DATA`` picks the market: ``bhavcopy`` (the end-of-day replay on ``bhavcopy_ohlc``,
:mod:`engine.backtest.eod_replay`), ``sim`` (the seeded simulated market,
:mod:`engine.backtest.sim_replay`) or ``snapshots`` (the intraday replay on the engine's recorded
``iv_snapshots``, :mod:`engine.backtest.snapshot_replay`). The row goes pending → running → complete / error;
``config_snapshot`` holds the overrides with ``BT_DATA`` and ``BT_FILL_MODEL`` (setting keys,
so the dashboard's ``run_backtest`` command carries them unchanged); ``metrics_json`` holds
the metrics, the daily equity curve and the data coverage; ``trades_json`` the trades with
each leg's price source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from engine.settings import knob
from engine.store.tx import transaction

__all__ = ["DATA_SOURCES", "create_run", "execute", "finish_run", "run_config", "run_result",
           "start_run"]

DATA_SOURCES = ("bhavcopy", "snapshots", "sim")


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
    """running → complete (with trades and metrics) or error (with its text)."""
    result = result or {}
    with transaction(pool) as conn:
        conn.execute(
            "UPDATE backtest_runs SET status = %s, trades_json = %s, metrics_json = %s,"
            " error_text = %s, progress_pct = 100, finished_at = now() WHERE run_id = %s",
            ("error" if error else "complete", Jsonb(list(result.get("trades", []))),
             Jsonb(dict(result.get("metrics", {}))), error, run_id))


def execute(pool: Any, strategy: str, start: date, end: date, config: Mapping[str, Any], *,
            seed: int = 7, progress: Callable[[float], None] | None = None
            ) -> tuple[int, dict[str, Any] | None, str | None]:
    """Create, run and store one backtest: (run_id, result or None, error text or None)."""
    run_id = create_run(pool, strategy, start, end, config)
    start_run(pool, run_id)
    try:
        result = run_result(strategy, start, end, config, pool=pool, seed=seed, progress=progress)
    except ValueError as exc:  # DataRefused, SettingError, UnknownStrategy
        finish_run(pool, run_id, None, f"{type(exc).__name__}: {exc}")
        return run_id, None, str(exc)
    finish_run(pool, run_id, result, None)
    return run_id, result, None
