"""Market data port: the snapshot at the clock's now, and a quote by security id.

``SimMarketData`` adapts the seeded SimulatedMarket; the Dhan adapter (live or the local
simulator) lives in ``engine.broker.dhan.marketdata``. Both are safe to call from any actor
thread: snapshots are immutable and the cache is guarded by a lock.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol

from engine.clock import Clock
from engine.execution.paper import NoQuote, Quote
from engine.market.snapshot import MarketSnapshot, price_decimal


class MarketData(Protocol):
    def snapshot(self) -> MarketSnapshot: ...

    def quote(self, security_id: str) -> Quote: ...


def quote_from_snapshot(snap: MarketSnapshot, security_id: str) -> Quote:
    """Bid/ask/LTP of a future or option in ``snap`` as Decimals."""
    for fut in (snap.near_future, snap.far_future):
        if fut is not None and str(fut.security_id) == str(security_id):
            return Quote(price_decimal(fut.bid), price_decimal(fut.ask), price_decimal(fut.ltp))
    try:
        q = snap.quote(int(security_id))
    except (KeyError, ValueError):
        raise NoQuote(f"security {security_id} is not in the market snapshot at {snap.time}") from None
    return Quote(q.bid_decimal(), q.ask_decimal(), q.ltp_decimal())


class SimMarketData:
    """The simulated market sampled at the engine clock's current time."""

    def __init__(self, market, clock: Clock) -> None:
        self._market = market
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[datetime, MarketSnapshot] | None = None

    def snapshot(self) -> MarketSnapshot:
        now = self._clock.now().replace(microsecond=0)
        with self._lock:
            if self._cached is not None and self._cached[0] == now:
                return self._cached[1]
            snap = self._market.snapshot_at(now)
            self._cached = (now, snap)
            return snap

    def quote(self, security_id: str) -> Quote:
        return quote_from_snapshot(self.snapshot(), security_id)

    def daily_closes(self, count: int) -> tuple[float, ...]:
        """NIFTY closes of the ``count`` sessions before today (the clock's), oldest first."""
        return self._market.daily_closes(self._clock.now().date(), count)
