"""The final settlement price of a NIFTY expiry: the index's closing value that day.

NSE settles index futures at the closing value of the index on the expiry day and index
options at their intrinsic value against it (``engine.execution.broker_closes``). Where the
engine reads it from depends on the market data port:

* the simulated market (``MARKET_SOURCE=sim``): its spot at the expiry's session close
  (``snapshot_at``; the path depends only on the seed and the time, so this is the close the
  simulated exchange settled at);
* Dhan market data (``MARKET_SOURCE=dhan``): the day's candle of the NIFTY index
  (``POST /charts/historical``, security 13 on ``IDX_I``) when the client has it, once the
  expiry session has closed;
* anything else: ``None`` — the caller holds the trade and asks for a settlement by hand.

A price found is cached (it never changes); a failure is not (the next check asks again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from engine.timeutil import IST

logger = logging.getLogger(__name__)

NIFTY_INDEX_ID = "13"
SESSION_CLOSE = time(15, 30)


class SettlementPrices:
    """``prices(expiry) -> Decimal | None``: the NIFTY close of an expiry date.

    Args:
        spot_at: ``spot_at(datetime) -> float`` (a simulated market), or ``None``.
        daily_close: ``daily_close(date) -> float | None`` (a broker's daily candle), or
            ``None``.
        session_close: the session close of a date (default 15:30 IST).
        now: the engine clock (a close is not asked for before it happened).
    """

    def __init__(self, *, spot_at: Callable[[datetime], float] | None = None,
                 daily_close: Callable[[date], float | None] | None = None,
                 session_close: Callable[[date], datetime] | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self._spot_at, self._daily_close = spot_at, daily_close
        self._close = session_close or (lambda d: datetime.combine(d, SESSION_CLOSE, IST))
        self._now = now
        self._cache: dict[date, Decimal] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """False when there is no source at all (every answer is ``None``)."""
        return self._spot_at is not None or self._daily_close is not None

    def __call__(self, expiry: date) -> Decimal | None:
        with self._lock:
            if expiry in self._cache:
                return self._cache[expiry]
        close = self._close(expiry)
        if self._now is not None and self._now() < close:
            return None
        value: float | None = None
        try:
            if self._spot_at is not None:
                value = float(self._spot_at(close))
            elif self._daily_close is not None:
                value = self._daily_close(expiry)
        except Exception as exc:
            logger.warning("settlement price of %s unavailable (%s: %s)", expiry,
                           type(exc).__name__, exc)
            return None
        if value is None or not value > 0:
            return None
        price = Decimal(repr(float(value))).quantize(Decimal("0.01"))
        with self._lock:
            self._cache[expiry] = price
        return price


def session_close_of(calendar: Any, d: date) -> datetime:
    """The session close of ``d`` in ``calendar`` (15:30 IST when there is no calendar or it
    has no session that day)."""
    if calendar is not None:
        try:
            return calendar.session_close(d)
        except Exception:
            logger.debug("no session on %s in the calendar; 15:30 assumed", d)
    return datetime.combine(d, SESSION_CLOSE, IST)


def settlement_source(market: Any, *, calendar: Any = None,
                      now: Callable[[], datetime] | None = None) -> SettlementPrices:
    """The settlement-price source for the engine's market data port (module docstring)."""
    def session_close(d: date) -> datetime:
        return session_close_of(calendar, d)

    simulated = getattr(market, "_market", None)  # SimMarketData's SimulatedMarket
    if simulated is not None and hasattr(simulated, "snapshot_at"):
        return SettlementPrices(spot_at=lambda t: simulated.snapshot_at(t).spot,
                                session_close=session_close, now=now)
    client = getattr(market, "_client", None)  # DhanMarketData's DhanClient
    if client is not None and hasattr(client, "historical"):
        def daily_close(d: date) -> float | None:
            candles = client.historical(NIFTY_INDEX_ID, "IDX_I", "INDEX", d, d + timedelta(days=1))
            for ts, close in zip(candles.timestamp, candles.close, strict=False):
                if datetime.fromtimestamp(int(ts), IST).date() == d:
                    return float(close)
            return None

        return SettlementPrices(daily_close=daily_close, session_close=session_close, now=now)
    return SettlementPrices(session_close=session_close, now=now)


__all__ = ["SettlementPrices", "session_close_of", "settlement_source"]
