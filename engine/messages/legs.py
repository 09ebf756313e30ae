"""Order legs and the small enums they use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

__all__ = ["InstrumentKind", "Leg", "OptionType", "Side"]


class Side(StrEnum):
    """Direction of a leg."""

    BUY = "BUY"
    SELL = "SELL"


class InstrumentKind(StrEnum):
    """What a leg trades."""

    FUT = "FUT"
    OPT = "OPT"


class OptionType(StrEnum):
    """Call or put."""

    CE = "CE"
    PE = "PE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Leg:
    """One leg of an entry or exit.

    Attributes:
        security_id: the broker's security id (Dhan ``securityId``), as a string.
        side: BUY or SELL.
        quantity: contracts (a positive whole number of units, lots * lot size).
        kind: FUT or OPT.
        option_type: CE / PE for options, None for futures.
        expiry: contract expiry date.
        strike: option strike in rupees (Decimal), None for futures.
        price: reference / limit price in rupees (Decimal) if the sender has one.
    """

    security_id: str
    side: Side
    quantity: int
    kind: InstrumentKind = InstrumentKind.OPT
    option_type: OptionType | None = None
    expiry: date | None = None
    strike: Decimal | None = None
    price: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.security_id, str) or not self.security_id:
            raise ValueError(
                f"Leg.security_id must be a non-empty string, got {self.security_id!r}"
            )
        object.__setattr__(self, "side", Side(self.side))
        object.__setattr__(self, "kind", InstrumentKind(self.kind))
        if self.option_type is not None:
            object.__setattr__(self, "option_type", OptionType(self.option_type))
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise TypeError(f"Leg.quantity must be an int, got {self.quantity!r}")
        if self.quantity <= 0:
            raise ValueError(f"Leg.quantity must be positive, got {self.quantity}")
        for name in ("strike", "price"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                raise TypeError(f"Leg.{name} must be a Decimal (rupees), got {value!r}")
        if self.kind is InstrumentKind.FUT and (
            self.option_type is not None or self.strike is not None
        ):
            raise ValueError(f"futures leg {self.security_id} cannot have option_type/strike")
