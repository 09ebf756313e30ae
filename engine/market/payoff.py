"""Greeks and payoff of a multi-leg NIFTY position on the current surface (pure).

A position is a tuple of :class:`PositionLeg` (signed quantity, entry price, and the leg's
current forward and IV). Everything is priced with the engine's own Black-76
(:mod:`engine.market.pricing`); nothing here re-derives a formula.

Conventions:
    * ``qty`` is signed: +75 bought, -75 sold (units, not lots).
    * Greeks of the position are in rupees per unit move, summed over legs:
      ``delta`` ₹ per 1 point of the underlying (each leg's own future), ``gamma`` change of
      delta per point, ``theta`` ₹ per calendar day passing, ``vega`` ₹ per 1 vol point.
    * The payoff curve is on a grid of index levels ``S``: each expiry's forward keeps its
      current carry over spot (``F_e(S) = S · F_e/spot``, shrinking to ``S`` at expiry), IVs
      stay where they are (sticky strike). "At expiry" is at the nearest leg's expiry: the
      legs expiring then are worth their intrinsic value, later legs their Black-76 value with
      the time they have left. P&L is gross of charges (what the diagram is for: shape,
      breakevens); the engine's MTM is net of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from engine.market.pricing import black76_greeks, black76_price, year_fraction
from engine.timeutil import IST, MARKET_CLOSE

__all__ = ["Payoff", "PositionGreeks", "PositionLeg", "breakevens", "payoff", "position_greeks"]

#: the discount rate the surface's IVs were implied with (engine.market.surface)
RATE = 0.065


@dataclass(frozen=True, slots=True)
class PositionLeg:
    """One leg as the payoff sees it. ``right`` is "CE", "PE" or "FUT"."""

    right: str
    strike: float | None
    expiry: date
    qty: int
    entry: float
    forward: float   # the leg expiry's forward now
    iv: float | None  # annualized fraction (0.13); None for a future

    def __post_init__(self) -> None:
        if self.right not in ("CE", "PE", "FUT"):
            raise ValueError(f"right={self.right!r}: expected CE, PE or FUT")
        if self.right != "FUT" and (self.strike is None or self.iv is None):
            raise ValueError(f"{self.right} leg {self.strike} {self.expiry}: an option needs a "
                             "strike and an IV")
        if not (self.forward > 0 and math.isfinite(self.forward)):
            raise ValueError(f"forward={self.forward!r}: expected a positive number")


@dataclass(frozen=True, slots=True)
class PositionGreeks:
    delta: float
    gamma: float
    theta: float
    vega: float
    legs: tuple[dict[str, float], ...]  # per leg, same units (already × signed qty)


@dataclass(frozen=True, slots=True)
class Payoff:
    spots: tuple[float, ...]
    at_expiry: tuple[float, ...]
    today: tuple[float, ...]
    expiry: date                    # the date "at expiry" refers to
    breakevens: tuple[float, ...]   # where the at-expiry curve crosses zero
    spot: float
    max_profit: float | None        # on the grid; None when unbounded at its edge
    max_loss: float | None


def _value(leg: PositionLeg, s: np.ndarray, spot: float, now: datetime, at: datetime) -> np.ndarray:
    """Per-unit value of ``leg`` at instant ``at`` for index levels ``s``."""
    t_now = year_fraction(now, leg.expiry)
    t_at = year_fraction(at, leg.expiry)
    # carry over spot, per year, implied by the current forward
    carry = math.log(leg.forward / spot) / t_now if t_now > 0 else 0.0
    f = s * math.exp(carry * t_at)
    if leg.right == "FUT":
        return f
    return black76_price(f, leg.strike, t_at, leg.iv, leg.right == "CE", RATE)


def position_greeks(legs: Sequence[PositionLeg], now: datetime) -> PositionGreeks:
    """The position's Δ Γ Θ Vega (rupees; see the module docstring for units)."""
    per: list[dict[str, float]] = []
    for leg in legs:
        if leg.right == "FUT":
            g = {"delta": float(leg.qty), "gamma": 0.0, "theta": 0.0, "vega": 0.0,
                 "price": leg.forward}
        else:
            t = year_fraction(now, leg.expiry)
            gr = black76_greeks(leg.forward, leg.strike, t, leg.iv, leg.right == "CE", RATE)
            g = {"delta": float(gr.delta) * leg.qty, "gamma": float(gr.gamma) * leg.qty,
                 "theta": float(gr.theta) / 365.0 * leg.qty, "vega": float(gr.vega) / 100.0 * leg.qty,
                 "price": float(gr.price)}
        per.append(g)
    total = {k: sum(g[k] for g in per) for k in ("delta", "gamma", "theta", "vega")}
    return PositionGreeks(legs=tuple(per), **total)


def breakevens(spots: np.ndarray, pnl: np.ndarray) -> tuple[float, ...]:
    """Index levels where ``pnl`` crosses zero (linear between grid points)."""
    out: list[float] = []
    for i in range(len(spots) - 1):
        a, b = pnl[i], pnl[i + 1]
        if a == 0 and (not out or out[-1] != spots[i]):
            out.append(float(spots[i]))
        elif a * b < 0:
            out.append(float(spots[i] + (spots[i + 1] - spots[i]) * a / (a - b)))
    return tuple(round(x, 2) for x in out)


def _grid(legs: Sequence[PositionLeg], spot: float, points: int) -> np.ndarray:
    strikes = [leg.strike for leg in legs if leg.strike is not None]
    lo = min([spot * 0.94, *(k * 0.97 for k in strikes)])
    hi = max([spot * 1.06, *(k * 1.03 for k in strikes)])
    return np.linspace(math.floor(lo / 10) * 10, math.ceil(hi / 10) * 10, points)


def payoff(legs: Sequence[PositionLeg], spot: float, now: datetime, *,
           points: int = 161) -> Payoff:
    """P&L per index level at the nearest expiry and today (see the module docstring).

    Raises:
        ValueError: no legs, a naive ``now`` or a non-positive spot.
    """
    if not legs:
        raise ValueError("payoff of a position without legs")
    if not (spot > 0 and math.isfinite(spot)):
        raise ValueError(f"spot={spot!r}: expected a positive number")
    if now.tzinfo is None:
        raise ValueError(f"payoff needs an aware datetime, got naive {now!r}")
    first = min(leg.expiry for leg in legs)
    at_exp = datetime.combine(first, MARKET_CLOSE, tzinfo=IST)  # year_fraction's expiry instant
    s = _grid(legs, spot, points)
    expiry_pnl = np.zeros_like(s)
    today_pnl = np.zeros_like(s)
    for leg in legs:
        expiry_pnl += leg.qty * (_value(leg, s, spot, now, max(at_exp, now)) - leg.entry)
        today_pnl += leg.qty * (_value(leg, s, spot, now, now) - leg.entry)
    edge_up = expiry_pnl[-1] > expiry_pnl[-2] + 1e-9
    edge_dn = expiry_pnl[0] > expiry_pnl[1] + 1e-9
    max_profit = None if edge_up or edge_dn else float(expiry_pnl.max())
    loss_up = expiry_pnl[-1] < expiry_pnl[-2] - 1e-9
    loss_dn = expiry_pnl[0] < expiry_pnl[1] - 1e-9
    max_loss = None if loss_up or loss_dn else float(expiry_pnl.min())
    rnd = lambda a: tuple(round(float(x), 2) for x in a)  # noqa: E731
    return Payoff(spots=rnd(s), at_expiry=rnd(expiry_pnl), today=rnd(today_pnl), expiry=first,
                  breakevens=breakevens(s, expiry_pnl), spot=round(spot, 2),
                  max_profit=None if max_profit is None else round(max_profit, 2),
                  max_loss=None if max_loss is None else round(max_loss, 2))

