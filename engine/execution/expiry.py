"""Expiry settlement of legs the engine still holds once their contract has expired.

NSE settles a NIFTY option at its intrinsic value against the index close of the expiry day
and a future at that close. Nothing is sent to any broker for it. A long option that
settles in the money is *exercised*: the buyer pays STT on the settlement value (0.125 %,
0.15 % from 2026-04-01; ``charges.exercise_charges``). A short one, or one that expires out
of the money, costs nothing more.

The strategies close every structure before its near expiry by default, so this is the
fallback for a structure that was still open at the expiry's close (an expiry-day exit
configured late, the engine down that afternoon): on paper and shadow the executor books
the expired legs here and fills the rest at the touch; a live trade's settlement is the
broker's and is booked from its positions (``broker_closes``), with the same charges.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

from engine.execution.charges import ZERO_CHARGES, Charges, exercise_charges
from engine.execution.paper import Fill
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side

__all__ = ["expired", "settlement_charges", "settlement_fill", "settlement_value"]


def settlement_value(leg: Leg, spot: Decimal) -> Decimal:
    """What one unit of ``leg``'s contract settles at against the final settlement ``spot``:
    a future at the spot, a call at max(0, spot − strike), a put at max(0, strike − spot).

    Raises:
        ValueError: an option leg without its strike or option type.
    """
    if leg.kind is InstrumentKind.FUT:
        return spot
    if leg.strike is None or leg.option_type is None:
        raise ValueError(f"option leg {leg.security_id} has no strike/option type: its "
                         "settlement value is unknown")
    value = spot - leg.strike if leg.option_type is OptionType.CE else leg.strike - spot
    return max(Decimal(0), value).quantize(Decimal("0.01"))


def expired(leg: Leg, now: datetime, session_close: Callable[[date], datetime]) -> bool:
    """Has ``leg``'s contract expired (its expiry session has closed) by ``now``?"""
    return leg.expiry is not None and now >= session_close(leg.expiry)


def settlement_charges(held: Leg, price: Decimal, quantity: int) -> Charges:
    """The charges of settling ``quantity`` of the held leg at ``price`` per unit: STT on the
    exercise of a long option in the money, nothing otherwise."""
    if held.kind is InstrumentKind.OPT and held.side is Side.BUY and price > 0:
        if held.expiry is None:
            raise ValueError(f"option leg {held.security_id} has no expiry")
        return exercise_charges(intrinsic=price, quantity=quantity, on=held.expiry)
    return ZERO_CHARGES


def settlement_fill(held: Leg, spot: Decimal, *, order_id: str = "SETTLEMENT") -> Fill:
    """The exit fill of a held leg settled against the index close ``spot``: the closing
    side, at the settlement value, with the exercise charges."""
    price = settlement_value(held, spot)
    closing = Leg(security_id=held.security_id,
                  side=Side.SELL if held.side is Side.BUY else Side.BUY, quantity=held.quantity,
                  kind=held.kind, option_type=held.option_type, expiry=held.expiry,
                  strike=held.strike)
    return Fill(leg=closing, price=price, charges=settlement_charges(held, price, held.quantity),
                order_id=order_id, correlation_id=None)  # type: ignore[arg-type]  # no order
