"""Per-leg LTP, IV and forward from a stored ``iv_snapshots`` sample (pure).

The sample (``engine.market.surface.compute_surface``) carries, for the near and the far
expiry, smile rows ``{strike, ce_ltp, pe_ltp, ce_iv, pe_iv}`` (IV in percent) and a term
structure ``{near, mid, far: {expiry, atm_iv, forward, atm_strike}}``. A leg on a strike of
a stored smile takes its LTP and IV from the row; a strike outside the stored window takes
the IV interpolated along that smile (flat beyond its ends) and a Black-76 price on it; an
expiry without a stored smile (the "mid" one) takes its term-structure ATM IV. ``source``
says which ("snapshot", "smile", "atm", "none").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np

from engine.market.payoff import RATE
from engine.market.pricing import black76_price, year_fraction

__all__ = ["LegMark", "leg_mark"]


@dataclass(frozen=True, slots=True)
class LegMark:
    ltp: float | None
    iv: float | None        # annualized fraction
    forward: float
    source: str


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _smiles(payload: dict[str, Any]) -> dict[date, list[dict[str, Any]]]:
    out: dict[date, list[dict[str, Any]]] = {}
    for key in ("smile", "far_smile"):
        sm = payload.get(key)
        if isinstance(sm, dict) and sm.get("expiry") and isinstance(sm.get("rows"), list):
            try:
                out[date.fromisoformat(str(sm["expiry"])[:10])] = sm["rows"]
            except ValueError:
                continue
    return out


def _terms(payload: dict[str, Any]) -> dict[date, dict[str, Any]]:
    out: dict[date, dict[str, Any]] = {}
    ts = payload.get("term_structure")
    for node in (ts.values() if isinstance(ts, dict) else ()):
        if isinstance(node, dict) and node.get("expiry"):
            try:
                out[date.fromisoformat(str(node["expiry"])[:10])] = node
            except ValueError:
                continue
    return out


def leg_mark(payload: dict[str, Any], spot: float, at: datetime, *, expiry: date,
             strike: float | None, right: str) -> LegMark:
    """The leg's mark in the sample taken at ``at`` with index ``spot``."""
    payload = payload if isinstance(payload, dict) else {}
    term = _terms(payload).get(expiry) or {}
    t = year_fraction(at, expiry)
    forward = _num(term.get("forward")) or spot * math.exp(RATE * t)
    if right == "FUT" or strike is None:
        return LegMark(ltp=forward, iv=None, forward=forward, source="snapshot" if term else "none")
    side = "ce" if right == "CE" else "pe"
    rows = _smiles(payload).get(expiry)
    if rows:
        for row in rows:
            if _num(row.get("strike")) == float(strike):
                iv = _num(row.get(f"{side}_iv"))
                ltp = _num(row.get(f"{side}_ltp"))
                if iv is not None or ltp is not None:
                    if ltp is None:
                        ltp = float(black76_price(forward, strike, t, iv / 100, right == "CE", RATE))
                    return LegMark(ltp=ltp, iv=iv / 100 if iv else None, forward=forward,
                                   source="snapshot")
        pts = sorted((_num(r.get("strike")), _num(r.get(f"{side}_iv"))) for r in rows
                     if _num(r.get("strike")) and _num(r.get(f"{side}_iv")))
        if pts:
            iv = float(np.interp(float(strike), [p[0] for p in pts], [p[1] for p in pts])) / 100
            return LegMark(ltp=float(black76_price(forward, strike, t, iv, right == "CE", RATE)),
                           iv=iv, forward=forward, source="smile")
    atm = _num(term.get("atm_iv"))
    if atm is None:
        near = [(abs((e - expiry).days), n) for e, n in _terms(payload).items() if _num(n.get("atm_iv"))]
        atm = _num(min(near, key=lambda x: x[0])[1]["atm_iv"]) if near else None
    if atm is None:
        return LegMark(ltp=None, iv=None, forward=forward, source="none")
    iv = atm / 100
    return LegMark(ltp=float(black76_price(forward, strike, t, iv, right == "CE", RATE)), iv=iv,
                   forward=forward, source="atm")
