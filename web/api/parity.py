"""Daily backtest-vs-live parity reports (``parity_reports``, engine/backtest/parity.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import jsonify

from web.api import bp, error, one, rows
from web.validate import Int, query


@bp.get("/parity")
def parity_list() -> Any:
    """The stored reports' summaries, newest day first."""
    values = query({"limit": Int(optional=True, default=30, minimum=1, maximum=365)})
    return jsonify({"reports": rows(
        "SELECT id, trade_date, strategies, status, summary, created_at FROM parity_reports"
        " ORDER BY trade_date DESC, id DESC LIMIT %s", (values["limit"],))})


@bp.get("/parity/<day>")
def parity_day(day: str) -> Any:
    """Every stored report of one trading day (YYYY-MM-DD), in full."""
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return error(400, f"day {day[:20]!r} is not a date (YYYY-MM-DD)")
    found = rows("SELECT * FROM parity_reports WHERE trade_date = %s ORDER BY id", (d,))
    if not found:
        return error(404, f"no parity report for {d.isoformat()}")
    latest = one("SELECT max(trade_date) AS d FROM parity_reports")
    return jsonify({"trade_date": d.isoformat(), "reports": found,
                    "latest_day": latest["d"] if latest else None})
