"""Market source of the Dhan simulator: a protocol, a deterministic built-in market, and an
adapter over :class:`engine.market.snapshot.MarketSnapshot` producers.

Prices are floats here (the simulator's numeric world); they become JSON numbers on the wire.
"""

from __future__ import annotations

import calendar
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Protocol

import numpy as np

from engine.dhan_sim.contracts import ContractTerms
from engine.market.calendar import NseCalendar
from engine.market.pricing import bs_greeks, year_fraction
from engine.timeutil import IST

INDEX_ID = 13


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book of one instrument."""

    ltp: float
    bid: float
    ask: float
    prev_close: float = 0.0
    oi: int = 0
    volume: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainEntry:
    """One side of one strike of an option chain (``iv`` in percent, like Dhan)."""

    security_id: int
    ltp: float
    bid: float
    ask: float
    iv: float
    oi: int = 0
    volume: int = 0
    prev_close: float = 0.0
    greeks: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentRow:
    """One row of the simulated instrument master."""

    security_id: int
    instrument: str  # INDEX | FUTIDX | OPTIDX
    trading_symbol: str
    display_name: str
    expiry: date | None = None
    strike: float | None = None
    option_type: str | None = None  # CE | PE
    lot_size: int = 1
    expiry_flag: str | None = None  # W | M
    freeze_qty: int | None = None


class MarketSource(Protocol):
    """What the simulator needs from a market.

    Optional: ``now() -> datetime`` (the market clock, aware; default wall-clock IST) and
    ``tick() -> Hashable`` (changes whenever quotes may have changed; resting orders are
    re-priced once per tick, and on every request when a market has no ``tick``).
    """

    def spot(self) -> float:
        """NIFTY index value."""

    def today(self) -> date:
        """The simulated trading day."""

    def expiries(self) -> list[date]:
        """Option expiries, ascending."""

    def quote(self, security_id: str) -> Quote | None:
        """Top of book of any instrument (index, future, option); ``None`` if unknown."""

    def option_chain(self, expiry: date) -> dict[float, dict[str, ChainEntry]]:
        """``{strike: {"CE": entry, "PE": entry}}`` of ``expiry`` (empty if unknown)."""

    def instruments(self) -> list[InstrumentRow]:
        """Rows of the instrument master."""


def _monthlies(calendar: NseCalendar, today: date, count: int) -> list[date]:
    out: list[date] = []
    year, month = today.year, today.month
    while len(out) < count:
        exp = calendar.monthly_expiry(year, month)
        if exp >= today:
            out.append(exp)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _symbol(expiry: date, tail: str) -> str:
    return f"NIFTY-{calendar.month_abbr[expiry.month]}{expiry.year}-{tail}"


class BuiltinMarket:
    """Deterministic NIFTY market: flat-vol Black-Scholes options around a settable spot.

    Expiries, lot sizes and freeze quantities come from the exchange calendar
    (``NseCalendar()``): weekly and monthly expiries as listed, the lot of each contract as
    of ``today`` (two lots coexist during a revision), freeze per :mod:`contracts`.

    Args:
        today: trading day (default: today in IST, or the next trading day when the
            exchange is closed today).
        spot: initial NIFTY value.
        iv: flat implied volatility (fraction).
        step: strike step.
        width: strikes each side of the ATM strike.
        weeklies: number of weekly expiries (monthlies among them count).
        spread: bid/ask half-spread as a fraction of price (min 0.05).
        clock: aware "now" of the market (default: 10:00 IST on ``today``, in session).
        calendar: the exchange calendar (default ``NseCalendar()``).
    """

    def __init__(self, *, today: date | None = None, spot: float = 24000.0, iv: float = 0.12,
                 step: int = 50, width: int = 20, weeklies: int = 4, spread: float = 0.005,
                 clock: Callable[[], datetime] | None = None,
                 calendar: NseCalendar | None = None) -> None:
        self.calendar = calendar or NseCalendar()
        self.terms = ContractTerms(self.calendar)
        if today is None:
            today = datetime.now(IST).date()
            if not self.calendar.is_trading_day(today):
                today = self.calendar.next_trading_day(today)
        self._today = today
        self._spot = float(spot)
        self._version = 0
        self._iv, self._step, self._width = iv, step, width
        self._spread = spread
        self._clock = clock or (lambda: datetime.combine(self._today, time(10, 0), tzinfo=IST))
        self._lock = threading.Lock()
        self._futures = _monthlies(self.calendar, self._today, 2)
        self._expiries = sorted(set(self.calendar.weekly_expiries(self._today, weeklies))
                                | set(self._futures))
        center = round(spot / step) * step
        self._strikes = [float(center + i * step) for i in range(-width, width + 1)]
        self._rows = self._build_rows()
        self._by_id = {str(r.security_id): r for r in self._rows}
        self._prev = {sid: self._mid(r, self._spot)[0] for sid, r in self._by_id.items()}

    def _build_rows(self) -> list[InstrumentRow]:
        rows = [InstrumentRow(security_id=INDEX_ID, instrument="INDEX", trading_symbol="NIFTY",
                              display_name="Nifty 50")]
        day = self._today
        for i, exp in enumerate(self._futures):
            rows.append(InstrumentRow(
                security_id=35000 + i, instrument="FUTIDX", trading_symbol=_symbol(exp, "FUT"),
                display_name=f"NIFTY {exp:%b} FUT".upper(), expiry=exp,
                lot_size=self.terms.lot(day, exp), expiry_flag="M",
                freeze_qty=self.terms.freeze(day, exp)))
        sid = 40000
        for exp in self._expiries:
            flag = "M" if exp in self._futures else "W"
            lot, freeze = self.terms.lot(day, exp), self.terms.freeze(day, exp)
            for strike in self._strikes:
                for side in ("CE", "PE"):
                    rows.append(InstrumentRow(
                        security_id=sid, instrument="OPTIDX",
                        trading_symbol=_symbol(exp, f"{int(strike)}-{side}"),
                        display_name=f"NIFTY {exp:%d %b} {int(strike)} "
                                     f"{'CALL' if side == 'CE' else 'PUT'}".upper(),
                        expiry=exp, strike=strike, option_type=side, lot_size=lot,
                        expiry_flag=flag, freeze_qty=freeze))
                    sid += 1
        return rows

    def _mid(self, row: InstrumentRow, spot: float) -> tuple[float, dict[str, float]]:
        if row.instrument == "INDEX":
            return spot, {}
        t = year_fraction(self._clock(), row.expiry)  # type: ignore[arg-type]
        if row.instrument == "FUTIDX":
            return spot * float(np.exp(0.065 * t)), {}
        g = bs_greeks(spot, row.strike, t, self._iv, row.option_type == "CE", r=0.065)
        greeks = {"delta": float(g.delta), "gamma": float(g.gamma), "vega": float(g.vega) / 100,
                  "theta": float(g.theta) / 365}
        return max(0.05, float(g.price)), greeks

    def _book(self, mid: float) -> tuple[float, float, float]:
        ltp = round(round(mid / 0.05) * 0.05, 2)
        half = max(0.05, round(ltp * self._spread / 0.05) * 0.05)
        return ltp, round(max(0.05, ltp - half), 2), round(ltp + half, 2)

    def set_spot(self, spot: float) -> None:
        """Move the market."""
        with self._lock:
            self._spot = float(spot)
            self._version += 1

    def now(self) -> datetime:
        """The market clock."""
        return self._clock()

    def tick(self) -> tuple[int, datetime]:
        """Changes when the spot is moved or the clock enters a new second."""
        with self._lock:
            version = self._version
        return version, self._clock().replace(microsecond=0)

    def spot(self) -> float:
        with self._lock:
            return self._spot

    def today(self) -> date:
        return self._today

    def expiries(self) -> list[date]:
        return list(self._expiries)

    def quote(self, security_id: str) -> Quote | None:
        row = self._by_id.get(str(security_id))
        if row is None:
            return None
        mid, _ = self._mid(row, self.spot())
        prev = round(self._prev[str(row.security_id)], 2)
        if row.instrument == "INDEX":
            return Quote(ltp=round(mid, 2), bid=0.0, ask=0.0, prev_close=prev)
        ltp, bid, ask = self._book(mid)
        return Quote(ltp=ltp, bid=bid, ask=ask, prev_close=prev,
                     oi=100_000 + row.security_id % 997 * row.lot_size, volume=50_000)

    def option_chain(self, expiry: date) -> dict[float, dict[str, ChainEntry]]:
        spot = self.spot()
        chain: dict[float, dict[str, ChainEntry]] = {}
        for row in self._rows:
            if row.instrument != "OPTIDX" or row.expiry != expiry:
                continue
            mid, greeks = self._mid(row, spot)
            ltp, bid, ask = self._book(mid)
            chain.setdefault(row.strike, {})[row.option_type] = ChainEntry(  # type: ignore[index]
                security_id=row.security_id, ltp=ltp, bid=bid, ask=ask, iv=self._iv * 100,
                oi=100_000 + row.security_id % 997 * row.lot_size, volume=50_000,
                prev_close=round(self._prev[str(row.security_id)], 2), greeks=greeks)
        return chain

    def instruments(self) -> list[InstrumentRow]:
        return list(self._rows)


class SnapshotMarket:
    """Adapter: a :class:`MarketSource` over a callable returning a ``MarketSnapshot``.

    Use with ``engine.market.simulator.SimulatedMarket`` (or a replay) by passing a function
    that returns its current snapshot. The market clock is the snapshot's time; lot sizes and
    freeze quantities are per contract for the snapshot's day (``NseCalendar()``).
    """

    def __init__(self, snapshot: Callable[[], Any], calendar: NseCalendar | None = None) -> None:
        self._snapshot = snapshot
        self.terms = ContractTerms(calendar)
        self.calendar = self.terms.calendar

    @classmethod
    def over_simulated(cls, market: Any) -> SnapshotMarket:
        """Serve ``engine.market.simulator.SimulatedMarket`` at its clock (``market.now``);
        the snapshot is cached until the clock moves (``market.step(...)``)."""
        cache: dict[str, Any] = {}

        def current() -> Any:
            if cache.get("t") != market.now:
                cache["snap"], cache["t"] = market.snapshot_at(market.now), market.now
            return cache["snap"]

        return cls(current)

    def spot(self) -> float:
        return float(self._snapshot().spot)

    def now(self) -> datetime:
        """The snapshot's time (the market clock)."""
        return self._snapshot().time.astimezone(IST)

    def tick(self) -> datetime:
        """Quotes change only with the snapshot, i.e. with its time."""
        return self._snapshot().time

    def today(self) -> date:
        return self._snapshot().time.astimezone(IST).date()

    def expiries(self) -> list[date]:
        return list(self._snapshot().expiries)

    def quote(self, security_id: str) -> Quote | None:
        snap = self._snapshot()
        if str(security_id) == str(INDEX_ID):
            return Quote(ltp=float(snap.spot), bid=0.0, ask=0.0, prev_close=float(snap.spot))
        try:
            q = snap.quote(int(security_id))
        except (KeyError, ValueError):
            return None
        return Quote(ltp=q.ltp, bid=q.bid, ask=q.ask, prev_close=getattr(q, "prev_close", q.ltp),
                     oi=getattr(q, "oi", 0), volume=getattr(q, "volume", 0))

    def option_chain(self, expiry: date) -> dict[float, dict[str, ChainEntry]]:
        snap = self._snapshot()
        try:
            chain = snap.chain(expiry)
        except KeyError:
            return {}
        out: dict[float, dict[str, ChainEntry]] = {}
        for i, strike in enumerate(chain.strikes.tolist()):
            for kind in ("CE", "PE"):
                q = chain.quote_at(i, kind)
                out.setdefault(float(strike), {})[kind] = ChainEntry(
                    security_id=q.security_id, ltp=q.ltp, bid=q.bid, ask=q.ask,
                    iv=(q.iv or 0.0) * 100, oi=q.oi, volume=q.volume, prev_close=q.prev_close)
        return out

    def instruments(self) -> list[InstrumentRow]:
        snap = self._snapshot()
        day = snap.time.astimezone(IST).date()
        lot, freeze = self.terms.lot, self.terms.freeze
        rows = [InstrumentRow(security_id=INDEX_ID, instrument="INDEX", trading_symbol="NIFTY",
                              display_name="Nifty 50")]
        for fut in (snap.near_future, snap.far_future):
            if fut is not None:
                rows.append(InstrumentRow(
                    security_id=fut.security_id, instrument="FUTIDX",
                    trading_symbol=_symbol(fut.expiry, "FUT"), display_name="NIFTY FUT",
                    expiry=fut.expiry, lot_size=lot(day, fut.expiry), expiry_flag="M",
                    freeze_qty=freeze(day, fut.expiry)))
        for chain in snap.chains:
            chain_lot, chain_freeze = lot(day, chain.expiry), freeze(day, chain.expiry)
            for i, strike in enumerate(chain.strikes.tolist()):
                for kind, side in (("CE", chain.ce), ("PE", chain.pe)):
                    rows.append(InstrumentRow(
                        security_id=int(side.security_id[i]), instrument="OPTIDX",
                        trading_symbol=_symbol(chain.expiry, f"{int(strike)}-{kind}"),
                        display_name=f"NIFTY {int(strike)} {kind}", expiry=chain.expiry,
                        strike=float(strike), option_type=kind, lot_size=chain_lot,
                        freeze_qty=chain_freeze))
        return rows
