"""/api/backtest/*: start runs and grid searches (rows + engine commands), read results.

A run or grid row read here carries ``progress``: done/total in the job's own steps
(sessions, snapshots or combinations, written by the worker as it goes), the percentage,
the seconds elapsed and an ETA from the rate so far (None until the first step is done).
"""

from __future__ import annotations

import difflib
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import jsonify
from psycopg.types.json import Jsonb

from engine.bus.commands import enqueue_command
from engine.settings import SettingError, all_knobs, knob
from engine.store.tx import transaction
from engine.timeutil import now_ist
from web.api import bp, error, one, rows, services
from web.validate import (
    BadRequest,
    Bool,
    Date,
    Int,
    Obj,
    Str,
    check,
    clean_text,
    query,
    request_json,
)

STRATEGY = Str(max_len=40, pattern=r"[A-Z][A-Z0-9_]*")
#: Most parameter combinations one grid search may ask for (each is a full backtest).
MAX_GRID = 1000
MAX_DAYS = 3 * 366


def backtest_strategies() -> tuple[str, ...]:
    """The strategies the backtester can run: every registered one (engine.strategies)."""
    from engine.strategies.registry import names

    return names()


def _strategy(data: dict[str, Any]) -> None:
    known = backtest_strategies()
    if data["strategy"] not in known:
        raise BadRequest("strategy", f"no backtest for strategy {data['strategy']!r}; the "
                                     f"backtester runs {', '.join(known)}")


def _dates(data: dict[str, Any]) -> None:
    if data["end"] < data["start"]:
        raise BadRequest("end", "must not be before start")
    if (data["end"] - data["start"]).days > MAX_DAYS:
        raise BadRequest("end", f"a backtest spans at most {MAX_DAYS} days")
    from engine.market.calendar import NseCalendar  # the calendar the backtester uses

    cal, day = NseCalendar(), data["start"]
    while day <= data["end"] and not cal.is_trading_day(day):
        day += timedelta(days=1)
    if day > data["end"]:
        raise BadRequest("end", f"no trading day between {data['start']} and {data['end']}")


def _knob(field: str, key: str):
    """The registry's knob for a parameter ``key``, or BadRequest naming ``field``."""
    try:
        return knob(key)
    except SettingError as exc:
        close = difflib.get_close_matches(key.upper(), [k.key for k in all_knobs()], n=3,
                                          cutoff=0.75)
        message = (f"unknown setting {key!r}; did you mean {', '.join(close)}?" if close
                   else str(exc))
        raise BadRequest(field, message) from None


def _coerce(field: str, key: str, value: Any) -> Any:
    """``value`` checked and typed by the knob ``key`` (what the backtester itself will do)."""
    if not isinstance(value, (str, int, float, bool)):
        raise BadRequest(field, "expected a string, number or boolean")
    if isinstance(value, str):
        clean_text(field, value)
    try:
        return _knob(field, key).coerce(str(value))
    except SettingError as exc:
        raise BadRequest(field, str(exc)) from None


def _params(name: str, params: dict[str, Any]) -> None:
    for key, value in params.items():
        _coerce(f"{name}.{key}", key, value)


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 1) if a is not None and b is not None else None


def progress_of(row: dict[str, Any], unit: str, now: datetime | None = None) -> dict[str, Any]:
    """``{done, total, pct, unit, elapsed_s, eta_s}`` of a run or grid row: the ETA is the
    time per finished step so far times the steps left, less the time since the last write."""
    now = now or now_ist()
    done, total = row.get("progress_done"), row.get("progress_total")
    started, at = row.get("started_at"), row.get("progress_at")
    status = row.get("status")
    elapsed = _seconds(started, row.get("finished_at") or (now if status == "running" else None))
    eta = None
    if status == "running" and done and total and started and at and done < total:
        per_step = (at - started).total_seconds() / done
        eta = round(max(0.0, per_step * (total - done) - (now - at).total_seconds()), 1)
    elif status == "complete":
        eta = 0.0
    pct = row.get("progress_pct")
    return {"done": done, "total": total, "unit": unit, "elapsed_s": elapsed, "eta_s": eta,
            "pct": float(pct) if isinstance(pct, Decimal | int | float) else None}


def _run_unit(row: dict[str, Any]) -> str:
    config = row.get("config_snapshot") or {}
    return "snapshots" if config.get("BT_DATA") == "snapshots" else "sessions"


def _knob_json(k: Any) -> dict[str, Any]:
    return {"key": k.key, "type": {bool: "bool", int: "int", Decimal: "decimal"}.get(k.type, "str"),
            "default": k.render(k.default), "minimum": k.minimum, "maximum": k.maximum,
            "choices": list(k.choices), "description": k.description}


#: run-wide settings a backtest accepts next to the strategy's own parameters
RUN_KNOBS = ("BT_CAPITAL", "PAPER_SLIPPAGE_TICKS", "RISK_MAX_MARGIN_PCT",
             "RISK_MAX_TOTAL_MARGIN_PCT", "RISK_MAX_OPEN_POSITIONS")


@bp.get("/backtest/strategies")
def backtest_strategy_list() -> Any:
    """What the backtest form offers: each strategy with its parameters (type, default,
    bounds, choices: the registry's knobs, so the form checks what the API will), whether it
    runs on end-of-day data, its declared grid space; the run-wide settings and the limits."""
    from engine.backtest.grid import RANK_KEYS
    from engine.strategies.registry import specs

    out = []
    for spec in specs():
        keys = [k for k in spec.param_keys if not k.endswith("_ENABLED")]
        out.append({"name": spec.name, "needs": spec.needs, "eod_backtest": spec.eod_backtest,
                    "params": [_knob_json(knob(k)) for k in keys],
                    "grid_space": {k: [knob(k).render(v) for v in vs]
                                   for k, vs in spec.grid_space.items()}})
    return jsonify({"strategies": out, "run_settings": [_knob_json(knob(k)) for k in RUN_KNOBS],
                    "data": ["bhavcopy", "sim", "snapshots"], "fill_models": ["close", "next_close"],
                    "rank_keys": list(RANK_KEYS), "max_days": MAX_DAYS, "max_grid": MAX_GRID})


@bp.post("/backtest/run")
def backtest_run() -> Any:
    """Queue one backtest: a backtest_runs row (pending) and a run_backtest command.

    ``data``: bhavcopy (default: the end-of-day replay on bhavcopy_ohlc), sim or snapshots;
    ``fill_model``: close (default) or next_close. Both are stored in config_snapshot as the
    settings BT_DATA / BT_FILL_MODEL, with the parameter overrides."""
    data = check(request_json(), {"strategy": STRATEGY, "start": Date(), "end": Date(),
                                  "params": Obj(optional=True, default={}),
                                  "data": Str(optional=True, default=None,
                                              choices=("bhavcopy", "snapshots", "sim")),
                                  "fill_model": Str(optional=True, default=None,
                                                    choices=("close", "next_close"))})
    _strategy(data)
    _dates(data)
    _params("params", data["params"])
    config = {**data["params"]}
    config["BT_DATA"] = data["data"] or str(config.get("BT_DATA", "bhavcopy"))
    config["BT_FILL_MODEL"] = data["fill_model"] or str(config.get("BT_FILL_MODEL", "close"))
    if config["BT_DATA"] == "bhavcopy":
        from engine.strategies.registry import get

        if not get(data["strategy"]).eod_backtest:
            raise BadRequest("data", f"{data['strategy']} cannot be backtested on end-of-day "
                                     "bhavcopy data (its z-score needs intraday samples): use "
                                     "data=sim")
    if config["BT_DATA"] == "snapshots":
        from engine.strategies.registry import get

        if get(data["strategy"]).needs != "options":
            raise BadRequest("data", f"{data['strategy']} cannot be replayed on iv_snapshots (no "
                                     "futures quotes are recorded in them): use data=sim")
        if config["BT_FILL_MODEL"] != "close":
            raise BadRequest("fill_model", "data=snapshots fills at the deciding snapshot's "
                                           "modelled touch only: use fill_model=close")
    with transaction(services().pool) as conn:
        run = conn.execute(
            "INSERT INTO backtest_runs (strategy, start_date, end_date, config_snapshot)"
            " VALUES (%s, %s, %s, %s) RETURNING run_id",
            (data["strategy"], data["start"], data["end"], Jsonb(config))).fetchone()
        command_id = enqueue_command(conn, "run_backtest", {"run_id": run["run_id"]},
                                     requested_by="dashboard")
    return jsonify({"run_id": run["run_id"], "command_id": command_id}), 202


@bp.get("/backtest/runs")
def backtest_runs() -> Any:
    """Past runs with summary metrics (no trade lists), newest first."""
    values = query({"limit": Int(optional=True, default=100, minimum=1, maximum=1000),
                    "strategy": Str(optional=True, max_len=40)})
    found = rows(
        "SELECT run_id, strategy, start_date, end_date, status, config_snapshot,"
        " metrics_json - 'equity_curve' - 'decisions' - 'decision_log' AS metrics_json,"
        " progress_pct, progress_done, progress_total, progress_at, error_text, grid_job_id,"
        " created_at, started_at, finished_at,"
        " jsonb_array_length(trades_json) AS trade_count FROM backtest_runs"
        " WHERE %(s)s::text IS NULL OR strategy = %(s)s ORDER BY run_id DESC LIMIT %(n)s",
        {"s": values["strategy"], "n": values["limit"]})
    now = now_ist()
    return jsonify({"runs": [{**r, "progress": progress_of(r, _run_unit(r), now)} for r in found]})


@bp.get("/backtest/runs/<int:run_id>")
def backtest_run_get(run_id: int) -> Any:
    row = one("SELECT * FROM backtest_runs WHERE run_id = %s", (run_id,))
    if row is None:
        return error(404, f"no backtest run {run_id}")
    return jsonify({**row, "progress": progress_of(row, _run_unit(row))})


@bp.post("/backtest/grid-search")
def backtest_grid() -> Any:
    """Queue a grid search: ``param_space`` maps each parameter to a non-empty list of values
    (or ``use_defaults: true`` for the strategy's declared space); ``data`` bhavcopy (default)
    or sim, ``fill_model``, ``rank_by`` (default sharpe), ``min_trades`` (5), ``oos_fraction``
    (a walk-forward split) and ``workers`` as on the command line."""
    from engine.backtest.grid import RANK_KEYS
    from engine.strategies.registry import get

    data = check(request_json(), {
        "strategy": STRATEGY, "start": Date(), "end": Date(),
        "param_space": Obj(optional=True, default={}, max_keys=12),
        "use_defaults": Bool(optional=True, default=False),
        "data": Str(optional=True, default="bhavcopy", choices=("bhavcopy", "sim")),
        "fill_model": Str(optional=True, default="close", choices=("close", "next_close")),
        "rank_by": Str(optional=True, default="sharpe", choices=RANK_KEYS),
        "min_trades": Int(optional=True, default=5, minimum=0, maximum=100_000),
        "oos_fraction": Str(optional=True, default=None, max_len=5, pattern=r"0?\.\d{1,3}"),
        "workers": Int(optional=True, default=None, minimum=1, maximum=64)})
    _strategy(data)
    _dates(data)
    if data["data"] == "bhavcopy" and not get(data["strategy"]).eod_backtest:
        raise BadRequest("data", f"{data['strategy']} cannot be backtested on end-of-day "
                                 "bhavcopy data (its z-score needs intraday samples): use data=sim")
    oos = data["oos_fraction"]
    if oos is not None and not 0.05 <= float(oos) <= 0.8:
        raise BadRequest("oos_fraction", "expected a fraction between 0.05 and 0.8")
    space = dict(data["param_space"])
    if data["use_defaults"]:
        declared = {k: [knob(k).render(v) for v in vs] for k, vs in
                    get(data["strategy"]).grid_space.items()}
        space = {**declared, **space}
    if not space:
        raise BadRequest("param_space", "needs at least one parameter (or use_defaults: true)")
    for key, values in space.items():
        field = f"param_space.{key}"
        _knob(field, key)
        if not isinstance(values, list) or not values or len(values) > 100:
            raise BadRequest(field, "expected a list of 1 to 100 values")
        seen: dict[Any, Any] = {}
        for value in values:
            typed = _coerce(field, key, value)
            if typed in seen:
                raise BadRequest(field, f"{value!r} given twice (same as {seen[typed]!r})")
            seen[typed] = value
    combos = math.prod(len(v) for v in space.values())
    if combos > MAX_GRID:
        raise BadRequest("param_space", f"{combos} combinations; a grid search runs at most "
                                        f"{MAX_GRID}: use fewer values")
    options = {"data": data["data"], "fill_model": data["fill_model"],
               "rank_by": data["rank_by"], "min_trades": data["min_trades"],
               "oos_fraction": float(oos) if oos is not None else None,
               "workers": data["workers"], "source": "dashboard"}
    with transaction(services().pool) as conn:
        job = conn.execute(
            "INSERT INTO backtest_grid_jobs (strategy, start_date, end_date, param_space)"
            " VALUES (%s, %s, %s, %s) RETURNING job_id",
            (data["strategy"], data["start"], data["end"],
             Jsonb({**space, "_options": options}))).fetchone()
        command_id = enqueue_command(conn, "run_grid", {"job_id": job["job_id"]},
                                     requested_by="dashboard")
    return jsonify({"job_id": job["job_id"], "command_id": command_id,
                    "combinations": combos}), 202


@bp.get("/backtest/grid-search")
def backtest_grid_list() -> Any:
    values = query({"limit": Int(optional=True, default=50, minimum=1, maximum=500)})
    found = rows(
        "SELECT job_id, strategy, start_date, end_date, status, param_space, progress_pct,"
        " progress_done, progress_total, progress_at, error_text, created_at, started_at,"
        " finished_at, jsonb_array_length(results_json) AS result_count"
        " FROM backtest_grid_jobs ORDER BY job_id DESC LIMIT %s", (values["limit"],))
    now = now_ist()
    return jsonify({"jobs": [{**r, "progress": progress_of(r, "combinations", now)}
                             for r in found]})


@bp.get("/backtest/grid-search/<int:job_id>")
def backtest_grid_get(job_id: int) -> Any:
    row = one("SELECT * FROM backtest_grid_jobs WHERE job_id = %s", (job_id,))
    if row is None:
        return error(404, f"no grid-search job {job_id}")
    return jsonify({**row, "progress": progress_of(row, "combinations")})
