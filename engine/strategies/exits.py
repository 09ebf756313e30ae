"""Position exit rules used by the monitor (pure): profit target, stop loss, time, expiry day.

Mark-to-market closes each leg at the touch it would trade at (a long sells at the bid, a
short buys back at the ask) and subtracts the entry charges already paid. Targets are
fractions of the trade's margin proxy, defined as |net entry price| × quantity of one leg
side (for the calendar spread: the entry spread's rupee value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from engine.execution.paper import Quote
from engine.execution.trades import Trade
from engine.messages.legs import Side
from engine.timeutil import IST


def exit_prices(trade: Trade, quotes: Callable[[str], Quote]) -> dict[str, Decimal]:
    """The price each leg would close at now."""
    out = {}
    for leg in trade.legs:
        q = quotes(leg.leg.security_id)
        out[leg.leg.security_id] = q.bid if leg.leg.side is Side.BUY else q.ask
    return out


def mark_to_market(trade: Trade, quotes: Callable[[str], Quote]) -> Decimal:
    """Net P&L if closed now at the touch, after entry charges."""
    return (trade.gross_pnl(exit_prices(trade, quotes)) - trade.entry_charges).quantize(Decimal("0.01"))


def margin_proxy(trade: Trade) -> Decimal:
    per_unit = abs(trade.entry_price)
    qty = min((leg.leg.quantity for leg in trade.legs), default=0)
    return per_unit * qty


def exit_reason(trade: Trade, mtm: Decimal, now: datetime, params: Mapping[str, Any]) -> str | None:
    """Why the trade must close now, or None. Checked in order: expiry, stop, target, time."""
    prefix = trade.strategy
    local = now.astimezone(IST)
    cutoff = time.fromisoformat(str(params["EXPIRY_DAY_EXIT_TIME"]))
    expiries = [leg.leg.expiry for leg in trade.legs if leg.leg.expiry is not None]
    if any(e < local.date() for e in expiries):
        return "past expiry: a leg expired while the engine was not watching"
    if any(e == local.date() for e in expiries) and local.time() >= cutoff:
        return f"expiry-day exit at {cutoff:%H:%M}"
    proxy = margin_proxy(trade)
    if proxy > 0:
        stop = Decimal(params.get(f"{prefix}_STOP_LOSS_PCT", "0.5")) * proxy
        target = Decimal(params.get(f"{prefix}_PROFIT_TARGET_PCT", "0.3")) * proxy
        if mtm <= -stop:
            return f"stop loss: MTM {mtm} <= -{stop.quantize(Decimal('0.01'))}"
        if mtm >= target:
            return f"profit target: MTM {mtm} >= {target.quantize(Decimal('0.01'))}"
    max_hold = params.get(f"{prefix}_MAX_HOLD_MINUTES")
    if max_hold is not None and now - trade.opened_at >= timedelta(minutes=int(max_hold)):
        return f"time exit after {max_hold} minutes"
    return None
