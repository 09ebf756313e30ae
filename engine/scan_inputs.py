"""Build a strategy's input from a market snapshot — shared by the scanner and the backtester."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from engine.execution.trades import Trade
from engine.market.snapshot import MarketSnapshot, price_decimal
from engine.strategies.base import FuturesQuote, OpenTradeView, StrategyInput

HISTORY_KEEP = 100


def futures_quote(snap: MarketSnapshot, which: str) -> FuturesQuote | None:
    fut = snap.near_future if which == "near" else snap.far_future
    if fut is None:
        return None
    return FuturesQuote(security_id=str(fut.security_id), expiry=fut.expiry,
                        ltp=price_decimal(fut.ltp), bid=price_decimal(fut.bid),
                        ask=price_decimal(fut.ask), lot_size=snap.lot_size)


def next_spread_history(history: list[Decimal], pair: tuple[date, date] | None,
                        near: FuturesQuote, far: FuturesQuote
                        ) -> tuple[list[Decimal], tuple[date, date], bool]:
    """History after sampling the current spread; cleared when the contract pair rolls.

    Returns (history including the new sample, the pair, whether a roll cleared it).
    """
    current = (near.expiry, far.expiry)
    rolled = pair is not None and pair != current
    base = [] if rolled else list(history)
    base.append(far.ltp - near.ltp)
    return base[-HISTORY_KEEP:], current, rolled


def strategy_input(snap: MarketSnapshot, now: datetime, history: list[Decimal],
                   trades: Iterable[Trade], paused: str | None) -> StrategyInput:
    """The strategy's view: quotes, the spread history *before* this sample, own trades."""
    return StrategyInput(
        now=now, spot=price_decimal(snap.spot), near=futures_quote(snap, "near"),
        far=futures_quote(snap, "far"), spread_history=tuple(history),
        open_trades=tuple(OpenTradeView(tag=t.tag, strategy=t.strategy, opened_at=t.opened_at,
                                        direction=t.direction, legs=tuple(x.leg for x in t.legs))
                          for t in trades),
        entries_paused_reason=paused)
