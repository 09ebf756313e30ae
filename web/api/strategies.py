"""/api/strategies: one row per registered strategy for the Strategies page.

Each row has the go-live stage, today's P&L and trades (the engine's trading day: its clock
may be simulated), the answer of the one "why is STRATEGY not entering?" function
(:func:`engine.events.why.why_blocked`, as the CLI and the chat give it, at the engine's
clock), the latest battle-log row that mentions the strategy, and one status badge derived
from that answer so every page says the same thing: ``disabled`` > ``paused`` (a risk pause,
global or of the strategy's stage) > ``blocked`` > ``eligible`` (the last cycle found it
eligible and nothing blocks it now) > ``waiting`` (no cycle has judged it yet).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from flask import jsonify

from engine.events.why import why_blocked
from engine.market.calendar_store import load_calendar
from engine.strategies import registry
from web.api import bp, services
from web.api.system import engine_clock

#: a heartbeat older than this no longer tells the engine's clock (as /api/pnl/today)
FRESH = timedelta(minutes=5)
STATUSES = ("disabled", "paused", "blocked", "eligible", "waiting")

_MTM = ("CASE WHEN payload->>'mtm' ~ '^-?[0-9]+(\\.[0-9]+)?$' THEN (payload->>'mtm')::numeric"
        " END")


def status_of(why: dict[str, Any]) -> str:
    """The one badge of a why_blocked answer (see the module docstring)."""
    risk = why.get("risk") or {}
    if not why.get("enabled", True) or risk.get("stage") == "disabled":
        return "disabled"
    if risk.get("global_pause") or risk.get("stage_pause"):
        return "paused"
    if why.get("blocked"):
        return "blocked"
    last = why.get("last_cycle")
    eligible = last.get("eligible") if last else None
    if isinstance(eligible, dict):
        eligible = eligible.get("eligible")
    if eligible:
        return "eligible"
    return "blocked" if last is not None and eligible is False else "waiting"


def _battle(conn: Any, name: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, created_at, trade_date, spot, iv, realized_range, near_straddle,"
        " selected_strategy, eligibility -> %(s)s AS eligible, rejections -> %(s)s AS reasons,"
        " payload -> 'metrics' -> %(s)s AS metrics"
        " FROM strategy_battle_log WHERE eligibility ? %(s)s OR rejections ? %(s)s"
        " OR selected_strategy = %(s)s ORDER BY created_at DESC LIMIT 1", {"s": name}).fetchone()
    return row


@bp.get("/strategies")
def strategies_overview() -> Any:
    """Every registered strategy: stage, today's P&L and trades, why it is (not) entering,
    its latest battle-log row and its status badge."""
    pool = services().pool
    with pool.connection() as conn:
        now = engine_clock()[0]
        today = now.date()
        cal = load_calendar(conn)
        stages = {r["strategy"]: r for r in conn.execute(
            "SELECT strategy, stage, updated_by, updated_at FROM go_live_state").fetchall()}
        closed = {r["strategy"]: r for r in conn.execute(
            "SELECT strategy, count(*) AS closed, coalesce(sum(realized_pnl), 0) AS realized,"
            " count(*) FILTER (WHERE realized_pnl > 0) AS wins,"
            " count(*) FILTER (WHERE realized_pnl < 0) AS losses"
            " FROM closed_trades WHERE trade_date = %s GROUP BY strategy", (today,)).fetchall()}
        opened = {r["strategy"]: r for r in conn.execute(
            f"SELECT strategy, count(*) AS open, coalesce(sum({_MTM}), 0) AS unrealized,"
            " count(*) FILTER (WHERE trade_date = %s) AS opened_today,"
            " array_agg(tag ORDER BY opened_at) AS tags FROM open_trades GROUP BY strategy",
            (today,)).fetchall()}
        battles = {name: _battle(conn, name) for name in registry.names()}
    out = []
    for spec in registry.specs():
        name = spec.name
        why = why_blocked(pool, name, now, calendar=cal)
        c, o = closed.get(name) or {}, opened.get(name) or {}
        realized, unrealized = c.get("realized", Decimal(0)), o.get("unrealized", Decimal(0))
        stage = stages.get(name) or {}
        out.append({
            "strategy": name, "family": registry.family_of(name), "needs": spec.needs,
            "stage": stage.get("stage"), "stage_updated_by": stage.get("updated_by"),
            "stage_updated_at": stage.get("updated_at"),
            "status": status_of(why),
            "today": {"date": today, "realized": realized, "unrealized": unrealized,
                      "total": realized + unrealized, "closed": c.get("closed", 0),
                      "wins": c.get("wins", 0), "losses": c.get("losses", 0),
                      "open": o.get("open", 0), "opened_today": o.get("opened_today", 0),
                      "open_tags": o.get("tags") or []},
            "why": why, "battle": battles.get(name)})
    return jsonify({"now": now.isoformat(timespec="seconds"), "date": today,
                    "statuses": list(STATUSES), "strategies": out})
