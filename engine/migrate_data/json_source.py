"""Read the old bot's JSON records (the inputs of its ``migrate_json_to_sqlite.py``).

Files looked for under ``root`` (all optional; absent files are reported, not errors)::

    open_trades.json          [ {tag, strategy, mode, opened_at|entry_time, entry_price,
                                 quantity, ...rest -> payload} ]
                              or {"trades": [...]} or {"<tag>": {...}}
    metrics.json              {"days": {"2026-06-01": {realized_pnl, charges, trades_opened,
                                 trades_closed, wins, losses, funnel: {...},
                                 session_stats: {...}, executions: [ {...} ],
                                 closed_trades: [ {...} ]}}}
                              ("days" may also be a list of objects carrying "date"; rows in
                              executions/closed_trades inherit the day when they lack one)
    go_live_state.json        {"DC": "paper", "MDC": {"stage": "live", "updated_by": ...}}
                              (optionally wrapped as {"strategies": {...}})
    runtime_state.json        {"dhan_token": {...}, "strategy_slots": {...}}
    risk_envelope_state.json  {daily_pnl, weekly_pnl, monthly_pnl, lifetime_pnl, loss_streak,
                               pause_reason, paused_until, last_close_date}
    bot_settings.json         {"KEY": "value"} or {"KEY": {"value", "updated_by", "updated_at"}}
    <table>.json              any other table of the schema: a list of row objects, or
                              {"rows": [...]} — same column names/aliases as the SQLite import.

Values are mapped exactly like SQLite rows (see :mod:`engine.migrate_data.tables`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.migrate_data.convert import LegacyDataError
from engine.migrate_data.tables import SPECS

SPECIAL_FILES = ("open_trades", "metrics", "go_live_state", "runtime_state",
                 "risk_envelope_state", "bot_settings")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LegacyDataError(f"{path}: not valid JSON ({exc})") from exc


def _rows(path: Path, data: Any, wrapper: str = "rows") -> list[dict[str, Any]]:
    if isinstance(data, dict) and isinstance(data.get(wrapper), list):
        data = data[wrapper]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise LegacyDataError(f"{path}: expected a list of objects (or {{\"{wrapper}\": [...]}})")
    return data


def _open_trades(path: Path, data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict) and "trades" not in data:
        return [{"tag": tag, **trade} for tag, trade in data.items()]
    return _rows(path, data, "trades")


def _metrics(path: Path, data: Any) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    if not isinstance(data, dict) or "days" not in data:
        raise LegacyDataError(f"{path}: expected {{\"days\": {{date: day}}}} or a list of days")
    days = data["days"]
    items = days.items() if isinstance(days, dict) else (
        (d.get("date") or d.get("trade_date"), d) for d in days)
    day_rows, executions, closes = [], [], []
    for day, body in items:
        if not isinstance(body, dict) or not day:
            raise LegacyDataError(f"{path}: day {day!r} must be an object with a date")
        body = dict(body)
        for key, bucket in (("executions", executions), ("closed_trades", closes)):
            for row in body.pop(key, None) or []:
                if "trade_date" not in row and "date" not in row:
                    row = {**row, "trade_date": day}
                bucket.append(row)
        body.pop("date", None)
        day_rows.append({**body, "trade_date": day})
    yield "metrics_days", day_rows
    yield "executions", executions
    yield "closed_trades", closes


def _go_live(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict) and isinstance(data.get("strategies"), dict):
        data = data["strategies"]
    if isinstance(data, list):
        return data
    rows = []
    for strategy, state in data.items():
        row = dict(state) if isinstance(state, dict) else {"stage": state}
        row.setdefault("updated_by", "legacy-import")
        rows.append({"strategy": strategy, **row})
    return rows


def _bot_settings(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return data
    rows = []
    for key, value in data.items():
        row = dict(value) if isinstance(value, dict) else {"value": value}
        row.setdefault("updated_by", "legacy-import")
        rows.append({"key": key, **row})
    return rows


def read_json_tree(root: str | Path) -> tuple[list[tuple[str, list[dict[str, Any]]]], list[str]]:
    """Return ``[(table, rows), ...]`` in import order plus notes on what was not found."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"legacy JSON root {base} is not a directory")
    found: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []

    def add(table: str, rows: list[dict[str, Any]]) -> None:
        found.setdefault(table, []).extend(rows)

    for name in SPECIAL_FILES:
        path = base / f"{name}.json"
        if not path.is_file():
            notes.append(f"{path.name} not found (skipped)")
            continue
        data = _load(path)
        if name == "open_trades":
            add("open_trades", _open_trades(path, data))
        elif name == "metrics":
            for table, rows in _metrics(path, data):
                add(table, rows)
        elif name == "go_live_state":
            add("go_live_state", _go_live(data))
        elif name == "runtime_state":
            add("runtime_state", [{"key": k, "value": v} for k, v in data.items()])
        elif name == "risk_envelope_state":
            add("risk_envelope_state", [{"id": 1, **data}] if isinstance(data, dict)
                else _rows(path, data))
        else:
            add("bot_settings", _bot_settings(data))
    for spec in SPECS:
        path = base / f"{spec.name}.json"
        if spec.name in SPECIAL_FILES or not path.is_file():
            continue
        add(spec.name, _rows(path, _load(path)))
    order = [spec.name for spec in SPECS]
    return [(t, found[t]) for t in order if t in found], notes
