"""Flow 1 — from a validated AI_MARKET verdict to the simulated option trade (pure).

:func:`plan_trade` picks the option of the idea — the near expiry (first with DTE ≥ 1), the
listed strike ``strike_offset`` strikes from its ATM — and returns the BUY leg at the ask for
``AI_MARKET_LOTS`` lots, or the reason nothing is traded (no idea, low confidence, no quote).
The trade goes through the normal entry path (risk → executor) as strategy ``AI_MARKET`` in
its go-live stage (paper unless promoted). :func:`exit_due` says when the bought option is
sold: the premium at ``target`` or ``stop`` (from the fill and the idea's percentages), or
``AI_MARKET_EXIT_TIME``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from engine.ai.verdict import MarketVerdict
from engine.execution.paper import TICK  # NSE option tick
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.timeutil import IST

__all__ = ["STRATEGY", "TradePlan", "exit_due", "levels", "plan_trade"]

STRATEGY = "AI_MARKET"


@dataclass(frozen=True, slots=True)
class TradePlan:
    tag: str
    leg: Leg
    strike: Decimal
    option_type: str
    expiry: date
    ask: Decimal
    target_pct: Decimal
    stop_pct: Decimal
    spot: Decimal


def plan_trade(verdict: MarketVerdict, view, *, min_confidence: int, lots: int,
               now: datetime, analysis_id: int) -> TradePlan | str:
    """The trade of ``verdict`` on ``view`` (tag ``AI-<yyyymmdd>-<hhmmss>-<analysis id>``), or
    why there is none."""
    idea = verdict.idea
    if idea is None:
        return f"no trade idea (verdict {verdict.verdict})"
    if verdict.confidence_pct < min_confidence:
        return (f"confidence {verdict.confidence_pct} % below AI_MARKET_MIN_CONFIDENCE "
                f"{min_confidence} %")
    near = None if view is None else view.near
    if near is None:
        return "no near expiry in the market view"
    strikes = list(near.strikes)
    if near.atm_strike not in strikes:
        return f"ATM strike {near.atm_strike} not listed in {near.expiry}"
    i = strikes.index(near.atm_strike) + idea.strike_offset
    if not 0 <= i < len(strikes):
        return f"strike offset {idea.strike_offset} leaves the listed strikes of {near.expiry}"
    strike = strikes[i]
    option = near.option(strike, idea.option_type)
    if option is None or not option.quoted:
        return f"{near.expiry} {strike} {idea.option_type} has no two-sided quote"
    local = now.astimezone(IST)
    leg = Leg(security_id=option.security_id, side=Side.BUY, quantity=lots * option.lot_size,
              kind=InstrumentKind.OPT, option_type=OptionType(idea.option_type),
              expiry=near.expiry, strike=strike, price=option.ask)
    return TradePlan(tag=f"AI-{local:%Y%m%d-%H%M%S}-{analysis_id}", leg=leg, strike=strike,
                     option_type=idea.option_type, expiry=near.expiry, ask=option.ask,
                     target_pct=idea.target_pct, stop_pct=idea.stop_pct,
                     spot=Decimal(view.spot))


def levels(entry: Decimal, target_pct: Decimal, stop_pct: Decimal) -> tuple[Decimal, Decimal]:
    """(target, stop) premiums of a bought option filled at ``entry``, on the 0.05 tick
    (target rounded up, stop down: never tighter than asked)."""
    target = (entry * (1 + target_pct / 100) / TICK).to_integral_value(ROUND_UP) * TICK
    stop = (entry * (1 - stop_pct / 100) / TICK).to_integral_value(ROUND_DOWN) * TICK
    return target, max(stop, TICK)


def exit_due(*, bid: Decimal | None, target: Decimal, stop: Decimal, now: datetime,
             exit_time: time) -> str | None:
    """Why the bought option is sold now (it sells at the bid), or None."""
    if now.astimezone(IST).time() >= exit_time:
        return f"AI_MARKET time exit at {exit_time:%H:%M}"
    if bid is None:
        return None
    if bid >= target:
        return f"AI_MARKET target: bid {bid} >= {target}"
    if bid <= stop:
        return f"AI_MARKET stop: bid {bid} <= {stop}"
    return None
