"""Immutable market snapshot: spot, near/far futures, option chains per expiry.

Number representation (a deliberate choice): chain quotes are stored as numpy ``float64``
arrays (one array per field, aligned by strike) because every consumer of a chain does vector
math on it (IV inversion, greeks, smiles, strategy scans). NSE prices are multiples of 0.05
with two decimals, which float64 represents to well under 1e-10, so nothing is lost as long
as values are rounded back to 2 decimals when they leave the numeric world: anything that
crosses into orders, P&L or the database goes through :func:`price_decimal` (or the
``*_decimal`` helpers on :class:`OptionQuote` / :class:`FutureQuote`), which return
``Decimal`` quantized to 0.01. Missing values: NaN for prices/IV, 0 for OI/volume.
IV is an annualized decimal fraction (0.13 = 13 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ChainSide",
    "FutureQuote",
    "MarketSnapshot",
    "OptionChain",
    "OptionQuote",
    "price_decimal",
]

_CENT = Decimal("0.01")
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def price_decimal(value: float) -> Decimal:
    """Float price -> Decimal rounded to 0.01 (raises ValueError on NaN/inf)."""
    if not np.isfinite(value):
        raise ValueError(f"price {value!r} is not a finite number")
    return Decimal(repr(float(value))).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def _frozen_array(values, dtype) -> NDArray:
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, slots=True, kw_only=True)
class FutureQuote:
    """One NIFTY futures contract quote."""

    security_id: int
    expiry: date
    ltp: float
    bid: float
    ask: float

    @property
    def mid(self) -> float:
        """(bid + ask) / 2, or LTP when either side is missing."""
        if self.bid > 0 and self.ask > 0:
            return 0.5 * (self.bid + self.ask)
        return self.ltp

    def ltp_decimal(self) -> Decimal:
        """LTP as Decimal (0.01)."""
        return price_decimal(self.ltp)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ChainSide:
    """All CE (or all PE) quotes of one expiry, aligned with the chain's strikes."""

    security_id: I64
    ltp: F64
    bid: F64
    ask: F64
    iv: F64
    oi: I64
    volume: I64
    prev_close: F64
    bid_qty: I64 | None = None  # top-of-book quantities (units), where the source quotes them
    ask_qty: I64 | None = None

    def __post_init__(self) -> None:
        n = None
        for name in ("security_id", "oi", "volume"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), np.int64))
        for name in ("bid_qty", "ask_qty"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _frozen_array(getattr(self, name), np.int64))
        for name in ("ltp", "bid", "ask", "iv", "prev_close"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), np.float64))
        for name in ChainSide.__slots__:
            if getattr(self, name) is None:
                continue
            size = getattr(self, name).shape
            if n is None:
                n = size
            elif size != n:
                raise ValueError(f"ChainSide.{name} has shape {size}, expected {n}")

    @property
    def mid(self) -> F64:
        """Mid price where both sides quote (bid > 0 and ask >= bid), else LTP."""
        ok = (self.bid > 0) & (self.ask >= self.bid)
        return np.where(ok, 0.5 * (self.bid + self.ask), self.ltp)


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionQuote:
    """One option quote (scalar view of a chain row)."""

    security_id: int
    expiry: date
    strike: float
    option_type: Literal["CE", "PE"]
    ltp: float
    bid: float
    ask: float
    iv: float | None
    oi: int
    volume: int
    prev_close: float

    def ltp_decimal(self) -> Decimal:
        """LTP as Decimal (0.01)."""
        return price_decimal(self.ltp)

    def bid_decimal(self) -> Decimal:
        """Best bid as Decimal (0.01)."""
        return price_decimal(self.bid)

    def ask_decimal(self) -> Decimal:
        """Best ask as Decimal (0.01)."""
        return price_decimal(self.ask)

    def strike_decimal(self) -> Decimal:
        """Strike as Decimal (0.01)."""
        return price_decimal(self.strike)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class OptionChain:
    """CE and PE quotes for one expiry; ``strikes`` ascending."""

    expiry: date
    strikes: F64
    ce: ChainSide
    pe: ChainSide

    def __post_init__(self) -> None:
        strikes = _frozen_array(self.strikes, np.float64)
        object.__setattr__(self, "strikes", strikes)
        if strikes.ndim != 1 or (strikes.size > 1 and np.any(np.diff(strikes) <= 0)):
            raise ValueError(f"chain {self.expiry}: strikes must be a strictly ascending 1-D array")
        for side in (self.ce, self.pe):
            if side.ltp.shape != strikes.shape:
                raise ValueError(f"chain {self.expiry}: side arrays do not match the strikes")

    def index_of(self, strike: float) -> int:
        """Row of ``strike`` (raises KeyError if not listed)."""
        i = int(np.searchsorted(self.strikes, strike))
        if i >= self.strikes.size or abs(self.strikes[i] - strike) > 1e-6:
            raise KeyError(f"strike {strike} not in the {self.expiry} chain")
        return i

    def quote_at(self, i: int, option_type: Literal["CE", "PE"]) -> OptionQuote:
        """Scalar quote of row ``i``."""
        side = self.ce if option_type == "CE" else self.pe
        iv = float(side.iv[i])
        return OptionQuote(
            security_id=int(side.security_id[i]), expiry=self.expiry,
            strike=float(self.strikes[i]), option_type=option_type,
            ltp=float(side.ltp[i]), bid=float(side.bid[i]), ask=float(side.ask[i]),
            iv=iv if np.isfinite(iv) else None, oi=int(side.oi[i]),
            volume=int(side.volume[i]), prev_close=float(side.prev_close[i]),
        )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MarketSnapshot:
    """Everything a strategy sees at one instant.

    Attributes:
        time: aware IST instant of the snapshot.
        spot: NIFTY index value.
        near_future / far_future: current-month and next-month futures.
        chains: option chains, ascending by expiry (a subset of ``listed_expiries``).
        listed_expiries: every NIFTY option expiry listed that day (the expiry calendar).
        lot_size: lot in force for newly listed contracts.
        strike_step: strike interval of the near chains (50 for NIFTY).
    """

    time: datetime
    spot: float
    near_future: FutureQuote | None
    far_future: FutureQuote | None
    chains: tuple[OptionChain, ...]
    listed_expiries: tuple[date, ...] = ()
    lot_size: int = 75
    strike_step: float = 50.0
    _by_expiry: dict = field(default_factory=dict, repr=False)
    _by_id: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError(f"snapshot time {self.time!r} must be timezone-aware")
        if not (np.isfinite(self.spot) and self.spot > 0):
            raise ValueError(f"snapshot spot {self.spot!r} must be a positive number")
        chains = tuple(sorted(self.chains, key=lambda c: c.expiry))
        object.__setattr__(self, "chains", chains)
        object.__setattr__(self, "_by_expiry", {c.expiry: c for c in chains})
        by_id: dict[int, tuple[OptionChain, int, str]] = {}
        for c in chains:
            for kind, side in (("CE", c.ce), ("PE", c.pe)):
                for i, sid in enumerate(side.security_id.tolist()):
                    by_id[sid] = (c, i, kind)
        object.__setattr__(self, "_by_id", by_id)

    @property
    def expiries(self) -> tuple[date, ...]:
        """Expiries that have a chain in this snapshot, ascending."""
        return tuple(c.expiry for c in self.chains)

    def chain(self, expiry: date) -> OptionChain:
        """The chain of ``expiry`` (KeyError naming the expiry if absent)."""
        try:
            return self._by_expiry[expiry]
        except KeyError:
            raise KeyError(f"no option chain for expiry {expiry} in snapshot "
                           f"(have {[str(e) for e in self._by_expiry]})") from None

    def atm_strike(self, expiry: date) -> float:
        """Listed strike nearest to spot for ``expiry`` (lower strike on a tie)."""
        strikes = self.chain(expiry).strikes
        if strikes.size == 0:
            raise KeyError(f"chain {expiry} has no strikes")
        return float(strikes[int(np.argmin(np.abs(strikes - self.spot)))])

    def quote(self, security_id: int) -> OptionQuote | FutureQuote:
        """Quote of an option or future by security id (KeyError if unknown)."""
        for fut in (self.near_future, self.far_future):
            if fut is not None and fut.security_id == security_id:
                return fut
        try:
            c, i, kind = self._by_id[security_id]
        except KeyError:
            raise KeyError(f"security id {security_id} not in snapshot") from None
        return c.quote_at(i, kind)
