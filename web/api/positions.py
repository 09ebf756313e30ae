"""Open positions as a trader reads them: legs, LTP, greeks, exit levels, payoff, close-now.

Read-only over the engine's records: ``open_trades`` (legs with entry fills and the
engine's MTM in the payload), the latest ``iv_snapshots`` sample (spot, forwards, per-strike
LTP and IV), the runtime settings (exit parameters) and the heartbeat (the engine's clock).
Pricing is the engine's own Black-76 (``engine.market.payoff``); exit levels restate the
strategies' rules (``engine.execution.exit_plan``); charges are the engine's model
(``engine.execution.charges``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from flask import jsonify

from engine.execution.charges import order_charges
from engine.execution.exit_plan import exit_plan
from engine.execution.paper import TICK
from engine.execution.trades import Trade, sign
from engine.market.calendar import NseCalendar
from engine.market.payoff import PositionLeg, payoff, position_greeks
from engine.market.surface_marks import leg_mark
from engine.messages.legs import Side
from web.api import bp, one, rows
from web.api.system import engine_clock
from web.jsonutil import decimal_or_none

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@cache
def _calendar() -> NseCalendar:
    return NseCalendar()


@cache
def _exit_keys() -> list[str]:
    from engine.actors.monitor import EXIT_KEYS

    return [*EXIT_KEYS, "PAPER_SLIPPAGE_TICKS"]


def contract_name(leg: dict[str, Any]) -> str:
    """``NIFTY 06 FEB 23400 CE`` / ``NIFTY 27 FEB FUT`` from a payload leg."""
    exp = leg.get("expiry")
    when = f"{exp[8:10]} {MONTHS[int(exp[5:7]) - 1]}" if exp and len(exp) >= 10 else ""
    right = (leg.get("option_type") or "").upper()
    if leg.get("kind") == "FUT" or not right or leg.get("strike") is None:
        return " ".join(x for x in ("NIFTY", when, "FUT") if x)
    k = Decimal(str(leg["strike"]))
    strike = str(k.quantize(Decimal(1))) if k == k.to_integral_value() else str(k)
    return " ".join(x for x in ("NIFTY", when, strike, right) if x)


def _latest_snapshot() -> dict[str, Any] | None:
    return one("SELECT created_at, spot, payload FROM iv_snapshots ORDER BY created_at DESC LIMIT 1")


def _settings_snapshot() -> dict[str, Any]:
    from web.api import runtime_settings

    return runtime_settings().snapshot(_exit_keys())


def _leg_rows(trade: Trade, snap: dict[str, Any] | None, at: datetime) -> list[dict[str, Any]]:
    spot = float(snap["spot"]) if snap else None
    out = []
    for ol in trade.legs:
        leg = ol.leg
        raw = ol.to_json()
        right = "FUT" if leg.kind.value == "FUT" else (leg.option_type.value if leg.option_type else "FUT")
        row: dict[str, Any] = {
            "security_id": leg.security_id, "contract": contract_name(raw), "side": leg.side.value,
            "qty": leg.quantity, "right": right, "strike": raw["strike"], "expiry": raw["expiry"],
            "entry_price": ol.entry_price,
            # no sign flip: a buy paid the premium, a sell received it
            "entry_kind": "paid" if leg.side is Side.BUY else "received",
            "entry_charges": ol.entry_charges, "ltp": None, "iv": None, "forward": None,
            "mark_source": "none", "pnl": None}
        if snap and leg.expiry is not None and spot:
            m = leg_mark(snap["payload"], spot, snap["created_at"], expiry=leg.expiry,
                         strike=float(leg.strike) if leg.strike is not None else None, right=right)
            row.update(forward=round(m.forward, 2), mark_source=m.source,
                       iv=round(m.iv * 100, 2) if m.iv is not None else None)
            if m.ltp is not None:
                ltp = Decimal(repr(round(m.ltp, 2))).quantize(CENT)
                row["ltp"] = ltp
                row["pnl"] = ((ltp - ol.entry_price) * leg.quantity * sign(leg.side)).quantize(CENT)
        out.append(row)
    return out


def _greeks_and_payoff(trade: Trade, legs: list[dict[str, Any]], snap: dict[str, Any] | None,
                       at: datetime) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    if snap is None:
        return None, None, "no IV snapshot stored yet: no LTP, greeks or payoff"
    pl: list[PositionLeg] = []
    for ol, row in zip(trade.legs, legs, strict=True):
        if ol.leg.expiry is None or row["forward"] is None or (row["right"] != "FUT" and row["iv"] is None):
            return None, None, f"no mark for {row['contract']} in the latest snapshot"
        pl.append(PositionLeg(right=row["right"],
                              strike=float(ol.leg.strike) if ol.leg.strike is not None else None,
                              expiry=ol.leg.expiry, qty=ol.leg.quantity * sign(ol.leg.side),
                              entry=float(ol.entry_price), forward=float(row["forward"]),
                              iv=row["iv"] / 100 if row["iv"] is not None else None))
    spot = float(snap["spot"])
    now = max(at, snap["created_at"])
    g = position_greeks(pl, now)
    for row, per in zip(legs, g.legs, strict=True):
        row.update({k: round(per[k], 4) for k in ("delta", "gamma", "theta", "vega")})
    p = payoff(pl, spot, now)
    greeks = {"delta": round(g.delta, 2), "gamma": round(g.gamma, 4), "theta": round(g.theta, 2),
              "vega": round(g.vega, 2),
              "units": "₹ per point (Δ), per point² (Γ), per day (Θ), per vol point (Vega)"}
    pay = {"spots": p.spots, "at_expiry": p.at_expiry, "today": p.today,
           "expiry": p.expiry.isoformat(), "breakevens": p.breakevens, "spot": p.spot,
           "max_profit": p.max_profit, "max_loss": p.max_loss,
           "note": "gross of charges; IVs held at the latest snapshot (sticky strike)"}
    return greeks, pay, None


def close_now(trade: Trade, legs: list[dict[str, Any]], mtm: Decimal | None, on: Any,
              slippage_ticks: int) -> dict[str, Any]:
    """What closing now would book, from the engine's MTM (already at the touch: a long
    sells at the bid, a short buys at the ask, after entry charges) less the exit charges of
    the closing orders and, on the paper broker, its adverse slippage."""
    exit_charges = Decimal(0)
    slippage = Decimal(0)
    orders = []
    paper = trade.mode in ("paper", "shadow")
    for ol, row in zip(trade.legs, legs, strict=True):
        leg = ol.leg
        closing = "SELL" if leg.side is Side.BUY else "BUY"
        price = row["ltp"] if row["ltp"] is not None else ol.entry_price
        exit_charges += order_charges(kind=leg.kind.value, side=closing, price=price,
                                      quantity=leg.quantity, on=on).total
        if paper:
            slippage += TICK * slippage_ticks * leg.quantity
        orders.append({"contract": row["contract"], "action": closing, "qty": leg.quantity,
                       "at": "bid" if closing == "SELL" else "ask"})
    pnl_at_ltp = None
    if all(r["pnl"] is not None for r in legs):
        pnl_at_ltp = (sum((r["pnl"] for r in legs), Decimal(0)) - trade.entry_charges).quantize(CENT)
    out: dict[str, Any] = {"orders": orders, "exit_charges": exit_charges.quantize(CENT),
                           "slippage": slippage.quantize(CENT), "pnl_at_ltp": pnl_at_ltp,
                           "mtm": mtm, "pnl": None}
    if mtm is None:
        out["explain"] = "no MTM from the engine yet: the close price is not known"
        return out
    out["pnl"] = (mtm - exit_charges - slippage).quantize(CENT)
    parts = [f"the MTM ₹{mtm} already marks each leg at the touch (longs sold at the bid, "
             "shorts bought at the ask) after entry charges"]
    if pnl_at_ltp is not None:
        parts.append(f"at LTP the legs show ₹{pnl_at_ltp}, so crossing the spread costs "
                     f"₹{(pnl_at_ltp - mtm).quantize(CENT)}")
    parts.append(f"a close now also pays ₹{out['exit_charges']} exit charges")
    if paper:
        parts.append(f"and ₹{out['slippage']} paper slippage ({slippage_ticks} tick(s) a leg)")
    out["explain"] = "; ".join(parts) + f": about ₹{out['pnl']} if the touch has not moved."
    return out


def describe(item: dict[str, Any], snap: dict[str, Any] | None, at: datetime,
             params: dict[str, Any]) -> dict[str, Any]:
    payload = item["payload"] if isinstance(item["payload"], dict) else {}
    mtm = decimal_or_none(payload.get("mtm"))
    base = {"tag": item["tag"], "strategy": item["strategy"], "mode": item["mode"],
            "trade_date": item["trade_date"], "opened_at": item["opened_at"],
            "entry_price": item["entry_price"], "quantity": item["quantity"],
            "updated_at": item.get("updated_at"), "mtm": mtm,
            "mfe": decimal_or_none(payload.get("mfe")), "mae": decimal_or_none(payload.get("mae")),
            "hold": payload.get("hold"), "closing": payload.get("closing"),
            "legs": [], "greeks": None, "payoff": None, "exits": None, "close_now": None,
            "spot": snap["spot"] if snap else None,
            "marked_at": snap["created_at"] if snap else None, "problems": []}
    try:
        trade = Trade.from_row(item)
    except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
        base["problems"].append(f"the stored legs cannot be read: {exc}")
        return base
    if not trade.legs:
        base["problems"].append("no legs stored with this trade")
        return base
    legs = _leg_rows(trade, snap, at)
    net = sum((ol.entry_price * ol.leg.quantity * sign(ol.leg.side) for ol in trade.legs), Decimal(0))
    base["net_entry"] = {"kind": "debit" if net > 0 else "credit" if net < 0 else "even",
                         "rupees": abs(net).quantize(CENT), "per_unit": abs(trade.entry_price),
                         "charges": trade.entry_charges.quantize(CENT)}
    base["legs"] = legs
    try:
        greeks, pay, problem = _greeks_and_payoff(trade, legs, snap, at)
    except ValueError as exc:
        greeks, pay, problem = None, None, f"cannot price {trade.tag}: {exc}"
    base.update(greeks=greeks, payoff=pay)
    if problem:
        base["problems"].append(problem)
    close = close_now(trade, legs, mtm, at.date(), int(params.get("PAPER_SLIPPAGE_TICKS", 1)))
    base["close_now"] = close
    pnl_net = mtm - close["exit_charges"] if mtm is not None else None
    base["exits"] = exit_plan(trade, mtm=mtm, pnl_net=pnl_net,
                              spot=Decimal(str(snap["spot"])) if snap else None, now=at,
                              params=params, calendar=_calendar())
    return base


@bp.get("/positions")
def positions() -> Any:
    """Open positions: legs (contract, side, qty, entry, LTP, P&L, greeks), trade greeks,
    exit rules with levels and distances, payoff at expiry and today, and the close-now
    P&L (the engine's MTM less exit charges and slippage), plus the engine's clock."""
    items = rows("SELECT tag, strategy, mode, trade_date, opened_at, entry_price, quantity,"
                 " payload, updated_at FROM open_trades ORDER BY opened_at")
    at, clock = engine_clock()
    snap = _latest_snapshot() if items else None
    params = _settings_snapshot() if items else {}
    out = [describe(item, snap, at, params) for item in items]
    total = sum((p["mtm"] or Decimal(0) for p in out), Decimal(0))
    return jsonify({"positions": out, "count": len(out), "unrealized": total,
                    "engine_time": at.isoformat(timespec="seconds"), "clock": clock})
