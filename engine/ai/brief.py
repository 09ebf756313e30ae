"""The compact market brief sent to the model, and the prompts (pure).

:func:`build_brief` reads a :class:`~engine.strategies.market_view.MarketView` and what the
engine knows of the day (previous close, the open, the sentiment sample) into a small JSON
object — numbers only, no account data, no positions, no keys:

* ``spot``, ``prev_close``, ``gap_pct`` (the open against the previous close), ``change_pct``
* ``futures_basis`` (near future − spot, points)
* ``atm_iv_pct`` and ``term_structure`` (ATM IV % per expiry, nearest first, at most 4)
* ``skew_pts`` (near expiry: IV of the ~25-delta put − IV of the ~25-delta call, points)
* ``pcr`` (near expiry, OI) and ``oi_near_atm`` (CE/PE OI at the 7 strikes around ATM)
* ``realized_range`` (the session's high − low so far, points)
* ``events`` (today's market events: title, kind, impact, time)
* ``sentiment`` (the latest SentimentService score and label)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["SYSTEM_PROMPTS", "build_brief", "messages_for"]

CENT = Decimal("0.01")
ATM_STRIKES = 3
MAX_TERMS = 4


def _pct(x: float | None) -> float | None:
    return None if x is None else round(float(x) * 100, 2)


def _skew(near: Any) -> float | None:
    puts = [o for o in near.puts.values() if o.delta is not None and o.iv is not None]
    calls = [o for o in near.calls.values() if o.delta is not None and o.iv is not None]
    if not puts or not calls:
        return None
    p = min(puts, key=lambda o: (abs(o.delta + 0.25), o.strike))
    c = min(calls, key=lambda o: (abs(o.delta - 0.25), o.strike))
    return round((p.iv - c.iv) * 100, 2)


def build_brief(view: Any, *, prev_close: Decimal | None, day_open: Decimal | None,
                sentiment: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The brief of ``view`` (see the module docstring); every value JSON-native."""
    spot = Decimal(view.spot)
    brief: dict[str, Any] = {"time": view.now.isoformat(timespec="minutes"),
                             "underlying": "NIFTY 50", "spot": float(spot)}
    if prev_close:
        brief["prev_close"] = float(prev_close)
        brief["change_pct"] = float(((spot - prev_close) / prev_close * 100).quantize(CENT))
        if day_open:
            brief["gap_pct"] = float(((day_open - prev_close) / prev_close * 100).quantize(CENT))
    for q in (view.futures or {}).values():
        if getattr(q, "ltp", None) is not None:
            brief["futures_basis"] = float((Decimal(q.ltp) - spot).quantize(CENT))
            break
    near = view.near
    if near is not None:
        brief["near_expiry"] = near.expiry.isoformat()
        brief["near_dte"] = near.dte
        brief["atm_strike"] = float(near.atm_strike)
        brief["atm_iv_pct"] = _pct(near.atm_iv)
        brief["skew_pts"] = _skew(near)
        ce = sum(o.oi for o in near.calls.values())
        pe = sum(o.oi for o in near.puts.values())
        brief["pcr"] = round(pe / ce, 3) if ce else None
        strikes = list(near.strikes)
        if near.atm_strike in strikes:
            i = strikes.index(near.atm_strike)
            brief["oi_near_atm"] = [
                {"strike": float(k), "ce_oi": near.calls[k].oi if k in near.calls else None,
                 "pe_oi": near.puts[k].oi if k in near.puts else None}
                for k in strikes[max(0, i - ATM_STRIKES): i + ATM_STRIKES + 1]]
    brief["term_structure"] = [{"expiry": e.expiry.isoformat(), "dte": e.dte,
                                "atm_iv_pct": _pct(e.atm_iv)}
                               for e in view.expiries[:MAX_TERMS]]
    if view.realized_range is not None:
        brief["realized_range"] = round(float(view.realized_range), 2)
    today = view.now.date()
    brief["events"] = [{"title": getattr(ev, "title", str(ev)), "kind": getattr(ev, "kind", ""),
                        "impact": getattr(ev, "impact", ""),
                        "time": ev.time.isoformat(timespec="minutes") if getattr(ev, "time", None)
                        else None}
                       for ev in view.events if getattr(ev, "date", today) == today]
    if sentiment:
        brief["sentiment"] = {k: sentiment.get(k) for k in ("score", "label", "coverage_pct")}
    return brief


_COMMON = ("You are a cautious NIFTY index options analyst. You get a JSON market brief. "
           "Answer with ONE JSON object and nothing else, exactly in the schema below. ")

SYSTEM_PROMPTS: Mapping[str, str] = {
    "ai_market": _COMMON + (
        "TASK: ai_market — the day's directional verdict and at most one option to BUY.\n"
        'Schema: {"verdict": "BULLISH|BEARISH|NEUTRAL", "confidence_pct": 0-100, '
        '"trade_idea": null or {"option_type": "CE|PE", "strike_offset": -5..5 (listed strikes '
        'from ATM of the near expiry), "target_pct": 5-90 (premium rise % to take profit), '
        '"stop_pct": 5-50 (premium fall % to stop), "reasoning": "short"}, '
        '"reasoning": "two sentences"}. BULLISH buys a CE, BEARISH a PE, NEUTRAL: trade_idea null.'),
    "market_view": _COMMON + (
        "TASK: market_view — where NIFTY goes over the next hours.\n"
        'Schema: {"verdict": "BULLISH|BEARISH|NEUTRAL", "confidence_pct": 0-100, '
        '"horizon_minutes": 15-390, "reasoning": "two sentences"}.'),
    "breakout_risk": _COMMON + (
        "TASK: breakout_risk — the risk that NIFTY breaks out of its range soon (bad for short "
        "gamma: calendars, iron condors).\n"
        'Schema: {"risk": "LOW|MEDIUM|HIGH", "direction": "UP|DOWN|EITHER", '
        '"confidence_pct": 0-100, "horizon_minutes": 15-390, "reasoning": "two sentences"}.'),
    "debrief": (
        "You are a trading coach. You get one closed NIFTY options trade as JSON. "
        "TASK: debrief — answer with ONE JSON object: "
        '{"narrative": "at most 3 sentences", "what_worked": "...", "what_failed": "...", '
        '"lesson": "one sentence", "grade": "A|B|C|D"}.'),
}


def messages_for(task: str, payload: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages of ``task`` for ``payload`` (a brief, or a trade for a debrief)."""
    if task not in SYSTEM_PROMPTS:
        raise ValueError(f"task {task!r}: expected one of {', '.join(SYSTEM_PROMPTS)}")
    return [{"role": "system", "content": SYSTEM_PROMPTS[task]},
            {"role": "user", "content": json.dumps(payload, sort_keys=True, default=_default,
                                                   separators=(",", ":"))}]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
