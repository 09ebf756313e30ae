"""Paper broker: fills at the current touch (buy at ask, sell at bid) plus adverse slippage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from engine.execution.charges import Charges, order_charges
from engine.messages.legs import Leg, Side

TICK = Decimal("0.05")


@dataclass(frozen=True, slots=True)
class Quote:
    bid: Decimal
    ask: Decimal
    ltp: Decimal


class ExecutionRefused(Exception):
    """An entry or exit was not executed and nothing was left open (safe to retry later)."""


class UnhedgedExposure(Exception):
    """Positions may be left open at the broker outside the engine's books: entries must
    stop and a human must look (a flatten failed, or an order's state is unknown).

    Attributes:
        open_legs: ``(security_id, side, quantity)`` believed still open.
    """

    def __init__(self, message: str, *, open_legs: tuple[tuple[str, str, int], ...] = ()) -> None:
        super().__init__(message)
        self.open_legs = open_legs


class OrdersUnresolved(UnhedgedExposure):
    """An order's outcome is unknown (a timeout, a lost answer, failed lookups): it is
    *unresolved*, never "not filled". Nothing was reversed or re-sent on an assumption; the
    caller keeps the entry/exit pending and resumes it once the order is resolved.

    Attributes:
        open_legs: what the broker holds for certain from this entry/exit so far
            (``(security_id, side, quantity)``, side BUY = long).
        unresolved: ``(correlation_id, side, quantity, security_id)`` of each order in doubt.
    """

    def __init__(self, message: str, *, open_legs: tuple[tuple[str, str, int], ...] = (),
                 unresolved: tuple[tuple[str, str, int, str], ...] = ()) -> None:
        super().__init__(message, open_legs=open_legs)
        self.unresolved = unresolved


class ExitIncomplete(UnhedgedExposure):
    """An exit filled some of its quantity and could not fill the rest after bounded retries
    (filled exit legs are never reversed). ``open_legs`` is what the broker still holds for
    the trade; the trade must go on hold for an operator."""


class NoQuote(ExecutionRefused, LookupError):
    """The market has no usable two-sided quote for a security."""


@dataclass(frozen=True, slots=True)
class Fill:
    leg: Leg
    price: Decimal
    charges: Charges
    order_id: str
    correlation_id: str


def fill_price(side: Side, quote: Quote, slippage_ticks: int) -> Decimal:
    """Buy at the ask plus slippage, sell at the bid minus slippage (never below one tick)."""
    if quote.bid <= 0 or quote.ask <= 0 or quote.bid > quote.ask:
        raise NoQuote(f"no two-sided quote (bid {quote.bid}, ask {quote.ask})")
    slip = TICK * slippage_ticks
    if side is Side.BUY:
        return quote.ask + slip
    return max(quote.bid - slip, TICK)


class PaperBroker:
    """Fills legs immediately at the quote source's touch, with Indian charges."""

    mode = "paper"

    def __init__(self, quotes: Callable[[str], Quote], slippage_ticks: Callable[[], int]) -> None:
        self._quotes = quotes
        self._slippage = slippage_ticks

    def quote(self, security_id: str) -> Quote:
        """The current quote the broker would fill against."""
        return self._quotes(security_id)

    def execute(self, legs: tuple[Leg, ...], *, correlation_base: str, trade_date: date,
                **_live: object) -> list[Fill]:
        """Fill every leg or none (quotes are checked before any fill is made). Keyword
        arguments of the live broker (``purpose``, ``tag``, ``context``) are accepted and
        not needed: paper fills are immediate and certain."""
        quotes = [self._quotes(leg.security_id) for leg in legs]
        slippage = self._slippage()
        prices = [fill_price(leg.side, q, slippage) for leg, q in zip(legs, quotes, strict=True)]
        fills = []
        for index, (leg, price) in enumerate(zip(legs, prices, strict=True)):
            charges = order_charges(kind=leg.kind.value, side=leg.side.value, price=price,
                                    quantity=leg.quantity, on=trade_date)
            cid = f"{correlation_base}-{index}"
            fills.append(Fill(leg=leg, price=price, charges=charges, order_id=f"PAPER-{cid}",
                              correlation_id=cid))
        return fills
