"""Costs every edge and target includes: charges of each order, and the spread paid.

A structure's *round trip* is one order per leg to open and one to close. Charges come from
the dated Indian charges model (``engine.execution.charges``), the same one the paper broker
and the backtester book; the exit side is estimated at the entry prices (the exit price is
not known yet; charges are nearly linear in premium, so this is close for a target check).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from engine.execution.charges import order_charges

__all__ = ["PricedLeg", "order_count", "round_trip_charges", "round_trip_spread", "side_charges"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PricedLeg:
    """One leg of a planned structure: what it trades at on entry and on exit."""

    kind: str            # OPT or FUT
    side: str            # BUY or SELL (the entry side)
    units: int
    entry_price: Decimal  # the touch it opens at (a buy at the ask, a sell at the bid)
    exit_price: Decimal   # the touch it would close at now (a long at the bid, a short at the ask)


def _opposite(side: str) -> str:
    return "SELL" if side == "BUY" else "BUY"


def side_charges(legs: Iterable[PricedLeg], on: date, *, exit: bool = False) -> Decimal:
    """Charges of opening (or, ``exit=True``, closing) every leg once."""
    total = Decimal(0)
    for leg in legs:
        side = _opposite(leg.side) if exit else leg.side
        price = leg.exit_price if exit else leg.entry_price
        total += order_charges(kind=leg.kind, side=side, price=price, quantity=leg.units,
                               on=on).total
    return total


def round_trip_charges(legs: Iterable[PricedLeg], on: date) -> Decimal:
    """Charges to open and close every leg (one order each way)."""
    legs = tuple(legs)
    return side_charges(legs, on) + side_charges(legs, on, exit=True)


def round_trip_spread(legs: Iterable[PricedLeg]) -> Decimal:
    """Rupees lost to the bid-ask if the structure were opened and closed right now."""
    return sum(((leg.entry_price - leg.exit_price) * leg.units if leg.side == "BUY"
                else (leg.exit_price - leg.entry_price) * leg.units for leg in legs), Decimal(0))


def order_count(legs: Iterable[PricedLeg]) -> int:
    """Orders for a round trip (ignores freeze-quantity slicing)."""
    return 2 * len(tuple(legs))
