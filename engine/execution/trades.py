"""Trades as data: legs with entry fills, P&L of a close, MFE/MAE marks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.messages.legs import InstrumentKind, Leg, OptionType, Side


@dataclass(frozen=True, slots=True)
class OpenLeg:
    leg: Leg
    entry_price: Decimal
    entry_charges: Decimal

    def to_json(self) -> dict[str, Any]:
        leg = self.leg
        return {"security_id": leg.security_id, "side": leg.side.value, "quantity": leg.quantity,
                "kind": leg.kind.value,
                "option_type": leg.option_type.value if leg.option_type else None,
                "expiry": leg.expiry.isoformat() if leg.expiry else None,
                "strike": str(leg.strike) if leg.strike is not None else None,
                "entry_price": str(self.entry_price), "entry_charges": str(self.entry_charges)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OpenLeg:
        leg = Leg(security_id=d["security_id"], side=Side(d["side"]), quantity=int(d["quantity"]),
                  kind=InstrumentKind(d["kind"]),
                  option_type=OptionType(d["option_type"]) if d.get("option_type") else None,
                  expiry=date.fromisoformat(d["expiry"]) if d.get("expiry") else None,
                  strike=Decimal(d["strike"]) if d.get("strike") is not None else None)
        return cls(leg, Decimal(d["entry_price"]), Decimal(d["entry_charges"]))


def sign(side: Side) -> int:
    return 1 if side is Side.BUY else -1


@dataclass(frozen=True, slots=True)
class Trade:
    tag: str
    strategy: str
    mode: str
    trade_date: date
    opened_at: datetime
    legs: tuple[OpenLeg, ...]
    direction: str = ""
    mfe: Decimal = Decimal("0")
    mae: Decimal = Decimal("0")
    mtm: Decimal | None = None
    closing: str | None = None     # live close in flight since (ISO time): orders may be out
    hold: str | None = None        # why automatic closes are suspended (needs an operator)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def entry_charges(self) -> Decimal:
        return sum((leg.entry_charges for leg in self.legs), Decimal("0"))

    @property
    def quantity(self) -> int:
        return sum(leg.leg.quantity for leg in self.legs)

    @property
    def entry_price(self) -> Decimal:
        """Net entry premium/price: sum of signed entry price (credit negative)."""
        return sum((leg.entry_price * sign(leg.leg.side) for leg in self.legs), Decimal("0"))

    def gross_pnl(self, exit_prices: dict[str, Decimal]) -> Decimal:
        """Gross P&L if each leg is closed at ``exit_prices[security_id]``."""
        total = Decimal("0")
        for leg in self.legs:
            diff = exit_prices[leg.leg.security_id] - leg.entry_price
            total += diff * leg.leg.quantity * sign(leg.leg.side)
        return total

    def marked(self, mtm: Decimal) -> Trade:
        return replace(self, mfe=max(self.mfe, mtm), mae=min(self.mae, mtm), mtm=mtm)

    def payload(self) -> dict[str, Any]:
        return {"legs": [leg.to_json() for leg in self.legs], "direction": self.direction,
                "mfe": str(self.mfe), "mae": str(self.mae),
                "mtm": str(self.mtm) if self.mtm is not None else None,
                "closing": self.closing, "hold": self.hold, "context": self.context}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Trade:
        p = row["payload"]
        return cls(tag=row["tag"], strategy=row["strategy"], mode=row["mode"],
                   trade_date=row["trade_date"], opened_at=row["opened_at"],
                   legs=tuple(OpenLeg.from_json(x) for x in p.get("legs", [])),
                   direction=p.get("direction", ""), mfe=Decimal(str(p.get("mfe", "0"))),
                   mae=Decimal(str(p.get("mae", "0"))),
                   mtm=Decimal(str(p["mtm"])) if p.get("mtm") is not None else None,
                   closing=p.get("closing"), hold=p.get("hold"),
                   context=p.get("context", {}))
