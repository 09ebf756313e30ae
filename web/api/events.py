"""Market events for the dashboard: the calendar (events, NSE holidays, NIFTY expiries) and
"why is STRATEGY not entering now?" (engine.events.why, the same answer as the CLI)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import jsonify

from engine.events.why import why_blocked
from engine.market.calendar_store import load_calendar
from engine.strategies import registry
from engine.timeutil import now_ist
from web.api import bp, error, rows, services
from web.validate import Date, Int, Str, date_range, query

MAX_DAYS = 400


@bp.get("/events")
def market_events() -> Any:
    """Market events (default: a week back to two months ahead), NSE holidays and the NIFTY
    weekly/monthly expiries in the range (from the stored calendar)."""
    values = query({"from": Date(optional=True), "to": Date(optional=True),
                    "limit": Int(optional=True, default=200, minimum=1, maximum=5000)})
    date_range(values)
    today = now_ist().date()
    start = values["from"] or today - timedelta(days=7)
    end = values["to"] or (today + timedelta(days=60) if values["from"] is None
                           else start + timedelta(days=67))
    if (end - start).days > MAX_DAYS:
        return error(400, f"to: at most {MAX_DAYS} days after 'from'", field="to")
    events = rows("SELECT * FROM market_events WHERE event_date BETWEEN %s AND %s"
                  " ORDER BY event_date, event_time NULLS FIRST LIMIT %s",
                  (start, end, values["limit"]))
    holidays = rows("SELECT * FROM nse_holidays WHERE holiday_date BETWEEN %s AND %s"
                    " ORDER BY holiday_date", (start, end))
    with services().pool.connection() as conn:
        cal = load_calendar(conn)
    expiries = []
    for e in cal.weekly_expiries(start, 80):
        if e > end:
            break
        expiries.append({"date": e, "monthly": e == cal.monthly_expiry(e.year, e.month)})
    return jsonify({"from": start, "to": end, "events": events, "holidays": holidays,
                    "expiries": expiries})


@bp.get("/events/why-blocked")
def events_why_blocked() -> Any:
    """Why ``strategy`` is not entering now: event guard, risk pauses, slots, last cycle."""
    values = query({"strategy": Str(max_len=40, choices=registry.names())})
    return jsonify(why_blocked(services().pool, values["strategy"]))
