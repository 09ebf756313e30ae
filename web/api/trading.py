"""Read endpoints over the engine's trading records (the web never writes them, except notes)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import jsonify

from web.api import bp, error, one, rows, services
from web.jsonutil import decimal_or_none
from web.validate import Date, Int, Str, check, clean_text, date_range, query, request_json

LIMIT = Int(optional=True, default=200, minimum=1, maximum=5000)
RANGE = {"from": Date(optional=True), "to": Date(optional=True), "limit": LIMIT}


def _range(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    values = query({**RANGE, **(extra or {})})
    date_range(values)
    return values


@bp.get("/pnl/today")
def pnl_today() -> Any:
    """Today's realized P&L from closed trades plus unrealized MTM of open positions.

    "Today" is the engine's trading day (its clock may be simulated), else the IST date: the
    date part of a heartbeat's engine_time younger than 5 minutes (web.api.system.BEAT_FRESH).
    One statement: the day, the closed trades' sums and every open trade's payload.mtm."""
    closed = one(PNL_TODAY_SQL)
    mtms = closed["mtms"] if isinstance(closed["mtms"], list) else []
    unrealized = sum((decimal_or_none(m) or Decimal(0) for m in mtms), Decimal(0))
    realized = closed["realized"]
    return jsonify({"date": closed["day"], "realized": realized, "unrealized": unrealized,
                    "total": realized + unrealized, "trades_closed": closed["closed"],
                    "wins": closed["wins"], "losses": closed["losses"],
                    "charges": closed["charges"], "open_positions": len(mtms)})


PNL_TODAY_SQL = (
    "WITH today AS (SELECT coalesce("
    "  (SELECT substr(value->>'engine_time', 1, 10)::date FROM runtime_state"
    "    WHERE key = 'engine_heartbeat' AND value->>'engine_time' <> ''"
    "    AND updated_at > now() - interval '5 minutes'),"
    "  (now() AT TIME ZONE 'Asia/Kolkata')::date) AS day)"
    " SELECT today.day, coalesce(sum(c.realized_pnl), 0) AS realized, count(c.id) AS closed,"
    " count(*) FILTER (WHERE c.realized_pnl > 0) AS wins,"
    " count(*) FILTER (WHERE c.realized_pnl < 0) AS losses,"
    " coalesce(sum(c.charges), 0) AS charges,"
    " (SELECT coalesce(jsonb_agg(o.payload->'mtm'), '[]'::jsonb) FROM open_trades o) AS mtms"
    " FROM today LEFT JOIN closed_trades c ON c.trade_date = today.day GROUP BY today.day")


@bp.get("/pnl/equity")
def pnl_equity() -> Any:
    """Cumulative realized P&L per trading day (the equity curve), oldest first."""
    values = _range()
    items = rows("SELECT trade_date, sum(realized_pnl) AS pnl, count(*) AS trades"
                 " FROM closed_trades WHERE (%(f)s::date IS NULL OR trade_date >= %(f)s)"
                 " AND (%(t)s::date IS NULL OR trade_date <= %(t)s)"
                 " GROUP BY trade_date ORDER BY trade_date",
                 {"f": values["from"], "t": values["to"]})
    running = Decimal(0)
    for item in items:
        running += item["pnl"]
        item["equity"] = running
    return jsonify({"points": items[-values["limit"]:]})


@bp.get("/trades")
def trades() -> Any:
    """Open or closed trades, newest first."""
    values = _range({"status": Str(optional=True, default="closed", choices=("open", "closed")),
                     "strategy": Str(optional=True, max_len=40)})
    params = {"f": values["from"], "t": values["to"], "s": values["strategy"],
              "n": values["limit"]}
    where = (" WHERE (%(f)s::date IS NULL OR trade_date >= %(f)s)"
             " AND (%(t)s::date IS NULL OR trade_date <= %(t)s)"
             " AND (%(s)s::text IS NULL OR strategy = %(s)s)")
    if values["status"] == "open":
        items = rows("SELECT tag, strategy, mode, trade_date, opened_at, entry_price, quantity,"
                     " payload FROM open_trades" + where + " ORDER BY opened_at DESC LIMIT %(n)s",
                     params)
    else:
        items = rows("SELECT id, tag, strategy, mode, trade_date, opened_at, closed_at,"
                     " entry_price, exit_price, quantity, gross_pnl, charges, realized_pnl,"
                     " exit_reason FROM closed_trades" + where
                     + " ORDER BY closed_at DESC LIMIT %(n)s", params)
    return jsonify({"status": values["status"], "trades": items, "count": len(items)})


@bp.get("/metrics/days")
def metrics_days() -> Any:
    values = _range()
    items = rows("SELECT * FROM metrics_days WHERE (%(f)s::date IS NULL OR trade_date >= %(f)s)"
                 " AND (%(t)s::date IS NULL OR trade_date <= %(t)s)"
                 " ORDER BY trade_date DESC LIMIT %(n)s",
                 {"f": values["from"], "t": values["to"], "n": values["limit"]})
    return jsonify({"days": items})


@bp.get("/journal")
def journal() -> Any:
    values = _range({"strategy": Str(optional=True, max_len=40)})
    items = rows("SELECT * FROM trade_journal WHERE (%(f)s::date IS NULL OR trade_date >= %(f)s)"
                 " AND (%(t)s::date IS NULL OR trade_date <= %(t)s)"
                 " AND (%(s)s::text IS NULL OR strategy = %(s)s)"
                 " ORDER BY trade_date DESC, created_at DESC LIMIT %(n)s",
                 {"f": values["from"], "t": values["to"], "s": values["strategy"],
                  "n": values["limit"]})
    return jsonify({"entries": items})


@bp.patch("/journal/<tag>")
def journal_notes(tag: str) -> Any:
    """Set the operator notes of one journal entry (the only trading record the web writes)."""
    clean_text("tag", tag)
    data = check(request_json(), {"notes": Str(max_len=5000, min_len=0)})
    with services().pool.connection() as conn:
        row = conn.execute("UPDATE trade_journal SET operator_notes = %s, updated_at = now()"
                           " WHERE tag = %s RETURNING tag, operator_notes, updated_at",
                           (data["notes"], tag)).fetchone()
    if row is None:
        return error(404, f"no journal entry for tag {tag!r}")
    return jsonify(row)


@bp.get("/battle-log")
def battle_log() -> Any:
    values = query({"limit": Int(optional=True, default=50, minimum=1, maximum=1000)})
    return jsonify({"rows": rows("SELECT * FROM strategy_battle_log ORDER BY created_at DESC"
                                 " LIMIT %s", (values["limit"],))})


@bp.get("/iv-snapshots")
def iv_snapshots() -> Any:
    """IV samples, newest first; payload carries term_structure and smile."""
    values = _range()
    return jsonify({"snapshots": rows(
        "SELECT * FROM iv_snapshots WHERE (%(f)s::date IS NULL OR trade_date >= %(f)s)"
        " AND (%(t)s::date IS NULL OR trade_date <= %(t)s) ORDER BY created_at DESC"
        " LIMIT %(n)s", {"f": values["from"], "t": values["to"], "n": values["limit"]})})


@bp.get("/reconciliation/log")
def reconciliation_log() -> Any:
    values = _range()
    return jsonify({"rows": rows(
        "SELECT * FROM reconciliation_audit WHERE (%(f)s::date IS NULL OR created_at >= %(f)s)"
        " AND (%(t)s::date IS NULL OR created_at < %(t)s::date + 1)"
        " ORDER BY id DESC LIMIT %(n)s",
        {"f": values["from"], "t": values["to"], "n": values["limit"]})})


@bp.get("/ai/exit-advisories")
def ai_exit_advisories() -> Any:
    values = _range()
    return jsonify({"rows": rows(
        "SELECT * FROM ai_exit_advisories WHERE (%(f)s::date IS NULL OR trade_date >= %(f)s)"
        " AND (%(t)s::date IS NULL OR trade_date <= %(t)s) ORDER BY created_at DESC"
        " LIMIT %(n)s", {"f": values["from"], "t": values["to"], "n": values["limit"]})})
