""""Why is STRATEGY not entering now?" — one answer for the CLI, the dashboard and the chat.

Read from what the engine recorded and what it would decide now:

* the strategy's enable switch and go-live stage (``go_live_state``: ``disabled`` blocks);
* the risk envelope: the global pause (``risk_envelope_state``) and the pause of the
  strategy's stage (``risk_envelope_stages``), while in force;
* slots: ``runtime_state.strategy_slots`` (its family's used/limit, written by the RiskActor);
* the event guard (:mod:`engine.events.guard`) on the stored events and calendar at ``now``
  with the strategy's settings and the near weekly expiry;
* the latest ``strategy_battle_log`` row: the strategy's eligibility and every reason the
  last scan cycle recorded for it.

``blocked`` is true when any of the first four blocks, or the last cycle recorded reasons and
selected nothing for this strategy.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from engine.events.guard import event_blocks, guard_params, knob_keys
from engine.events.store import read_events
from engine.market.calendar import NseCalendar
from engine.market.calendar_store import load_calendar
from engine.strategies import registry
from engine.timeutil import IST

__all__ = ["near_weekly_expiry", "why_blocked"]

LOOK_BACK = timedelta(days=7)
LOOK_AHEAD = timedelta(days=30)


def near_weekly_expiry(calendar: NseCalendar, today: date) -> date | None:
    """The near expiry a new position would use: the first weekly expiry after today (on an
    expiry day, the next one)."""
    try:
        return next(e for e in calendar.weekly_expiries(today, 2) if e > today)
    except (StopIteration, ValueError):
        return None


def _params(pool: Any, spec: Any) -> dict[str, Any]:
    from engine.settings.store import Settings

    keys = [k for k in spec.param_keys if not k.startswith("_")]
    try:
        return dict(Settings(pool).snapshot(keys))
    except Exception:  # an unreadable override: fall back to the defaults, say nothing more
        return {k.key: k.default for k in spec.knobs}


def _active(reason: Any, until: Any, now: datetime) -> bool:
    return bool(reason) and (until is None or until > now)


def why_blocked(pool: Any, strategy: str, now: datetime | None = None, *,
                calendar: NseCalendar | None = None) -> dict[str, Any]:
    """Everything that keeps ``strategy`` from entering at ``now`` (default: the wall clock).

    Raises:
        registry.UnknownStrategy: ``strategy`` is not registered (lists the valid ones).
    """
    spec = registry.get(strategy)
    now = (now or datetime.now(IST)).astimezone(IST)
    today = now.date()
    params = _params(pool, spec)
    reasons: list[str] = []
    with pool.connection() as conn:
        cal = calendar or load_calendar(conn)
        events = read_events(conn, today - LOOK_BACK, today + LOOK_AHEAD)
        stage_row = conn.execute("SELECT stage FROM go_live_state WHERE strategy = %s",
                                 (strategy,)).fetchone()
        glob = conn.execute("SELECT pause_reason, paused_until FROM risk_envelope_state"
                            " WHERE id = 1").fetchone()
        stages = conn.execute("SELECT stage, pause_reason, paused_until FROM"
                              " risk_envelope_stages").fetchall()
        slots_row = conn.execute("SELECT value, updated_at FROM runtime_state"
                                 " WHERE key = 'strategy_slots'").fetchone()
        log = conn.execute("SELECT created_at, trade_date, selected_strategy, eligibility,"
                           " rejections FROM strategy_battle_log ORDER BY created_at DESC"
                           " LIMIT 1").fetchone()
    enabled = bool(params.get(spec.enabled_key, True))
    if not enabled:
        reasons.append(f"disabled ({spec.enabled_key}=false)")
    stage = _get(stage_row, "stage", 0)
    if stage == "disabled":
        reasons.append("go-live stage is 'disabled'")
    risk: dict[str, Any] = {"global_pause": None, "stage_pause": None, "stage": stage}
    g_reason, g_until = _get(glob, "pause_reason", 0), _get(glob, "paused_until", 1)
    if _active(g_reason, g_until, now):
        risk["global_pause"] = {"reason": g_reason, "until": _iso(g_until)}
        reasons.append(f"risk paused: {g_reason}" + (f" (until {_iso(g_until)})" if g_until else ""))
    for row in stages or ():
        s_stage, s_reason, s_until = (_get(row, "stage", 0), _get(row, "pause_reason", 1),
                                      _get(row, "paused_until", 2))
        if s_stage == (stage or "paper") and _active(s_reason, s_until, now):
            risk["stage_pause"] = {"stage": s_stage, "reason": s_reason, "until": _iso(s_until)}
            reasons.append(f"{s_stage} stage paused: {s_reason}")
    family = registry.family_of(strategy)
    slot_value = _get(slots_row, "value", 0) or {}
    slot = slot_value.get(family) if isinstance(slot_value, dict) else None
    slots: dict[str, Any] = {"family": family, "used": None, "limit": None,
                             "updated_at": _iso(_get(slots_row, "updated_at", 1))}
    if isinstance(slot, dict):
        slots.update(used=int(slot.get("used", 0)), limit=int(slot.get("limit", 0)),
                     tags=list(slot.get("tags", [])))
        if slots["used"] >= slots["limit"]:
            reasons.append(f"{family} slots full ({slots['used']}/{slots['limit']})")
    near = near_weekly_expiry(cal, today)
    guard: list[str] = []
    if spec.needs == "options":
        guard = event_blocks(strategy, events, now, near, cal, params)
        reasons.extend(guard)
    g = guard_params(strategy, params)
    last: dict[str, Any] | None = None
    if log is not None:
        elig = _get(log, "eligibility", 3) or {}
        rej = _get(log, "rejections", 4) or {}
        last = {"created_at": _iso(_get(log, "created_at", 0)),
                "trade_date": _iso(_get(log, "trade_date", 1)),
                "selected_strategy": _get(log, "selected_strategy", 2),
                "eligible": elig.get(strategy) if isinstance(elig, dict) else None,
                "reasons": list(rej.get(strategy, [])) if isinstance(rej, dict) else []}
    blocked = bool(reasons) or bool(last and last["reasons"]
                                   and last["selected_strategy"] != strategy)
    upcoming = [e.to_json() for e in events
                if e.date >= today and e.impact in ("HIGH", "MEDIUM")][:10]
    before_k, after_k, medium_k, near_k = knob_keys(strategy)
    return {
        "strategy": strategy, "now": now.isoformat(timespec="seconds"), "blocked": blocked,
        "reasons": reasons, "enabled": enabled, "event_guard": guard,
        "guard_settings": {before_k: g.days_before, after_k: g.days_after,
                           medium_k: g.block_medium, near_k: g.near_expiry},
        "near_expiry": _iso(near), "risk": risk, "slots": slots, "last_cycle": last,
        "upcoming_events": upcoming,
    }


def _get(row: Any, key: str, index: int) -> Any:
    if row is None:
        return None
    if isinstance(row, dict):
        return row.get(key)
    return row[index]


def _iso(v: Any) -> str | None:
    if v is None:
        return None
    return v.isoformat() if hasattr(v, "isoformat") else str(v)
