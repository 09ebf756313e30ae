"""MarketData port over Dhan REST: option chains, futures quotes, spot -> MarketSnapshot.

One snapshot = the expiry list (cached ``expiry_ttl_s``, and re-read when the day changes),
the option chains of the first ``n_chains`` expiries on or after today (each cached at least
``chain_ttl_s`` >= 3 s: Dhan allows one unique option-chain request per 3 s), and the near /
far NIFTY futures via ``POST /marketfeed/quote`` (cached ``quote_ttl_s`` >= 1 s: one quote
request per second). Spot is the chain's ``last_price``. Dhan's IV is in percent (divided
by 100 here); a missing IV or price is NaN.

``quote(security_id)`` answers from the last snapshot when it is at most
``quote_max_age_s`` old (else it takes a new one); a security outside the snapshot (e.g. an
option of a farther expiry) is asked for with one market-quote call. Unknown securities
raise ``NoQuote``; Dhan being unreachable raises :class:`MarketDataUnavailable` (a
``NoQuote`` too, so order paths refuse cleanly).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.errors import DhanError
from engine.broker.dhan.instruments import InstrumentMaster, StaleInstrumentMaster
from engine.broker.dhan.marketdata import OptionChain as WireChain
from engine.clock import Clock
from engine.execution.paper import NoQuote, Quote
from engine.market.snapshot import ChainSide, FutureQuote, MarketSnapshot, OptionChain
from engine.ports.market_data import quote_from_snapshot

logger = logging.getLogger(__name__)

FNO = "NSE_FNO"
MIN_CHAIN_TTL = 3.0
MIN_QUOTE_TTL = 1.0

FuturesSource = InstrumentMaster | Mapping[str, Any] | Callable[[date], Any]


class MarketDataUnavailable(NoQuote):
    """Dhan did not deliver the data a snapshot needs (names the missing piece)."""


def _f(value: Decimal | float | None) -> float:
    return float(value) if value is not None else math.nan


def _field(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


class DhanMarketData:
    """The MarketData port on Dhan (see module docstring).

    Args:
        client: Dhan client (shares the process-wide rate limiter).
        master_or_futures_ids: where the near/far futures ids come from: an
            ``InstrumentMaster``; a mapping ``{"near": row, "far": row}`` whose rows have
            ``security_id`` and ``expiry`` (futures_id_cache rows); or a callable
            ``loader(today)`` returning either (called on first use and once the cached
            near future has expired).
        clock: engine clock (snapshot time and "today").
        calendar: market calendar (kept for strike/expiry decisions; may be ``None``).
        n_chains: how many expiries get an option chain (near and next by default).
        chain_ttl_s / quote_ttl_s / expiry_ttl_s / quote_max_age_s: cache lifetimes in real
            seconds (the first two are raised to Dhan's minimum spacing).
        monotonic: real time source (tests).
    """

    def __init__(self, client: DhanClient, master_or_futures_ids: FuturesSource, clock: Clock,
                 calendar: Any = None, *, n_chains: int = 2, chain_ttl_s: float = 3.5,
                 quote_ttl_s: float = 1.0, expiry_ttl_s: float = 600.0,
                 quote_max_age_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if n_chains < 1:
            raise ValueError(f"n_chains must be >= 1, got {n_chains}")
        self._client, self._source, self._clock = client, master_or_futures_ids, clock
        self._calendar, self._n_chains = calendar, n_chains
        self._chain_ttl = max(MIN_CHAIN_TTL, chain_ttl_s)
        self._quote_ttl = max(MIN_QUOTE_TTL, quote_ttl_s)
        self._expiry_ttl, self._max_age = expiry_ttl_s, quote_max_age_s
        self._mono = monotonic
        self._lock = threading.RLock()
        self._expiries: tuple[float, date, list[date]] | None = None
        self._chains: dict[date, tuple[float, WireChain]] = {}
        self._futures_day: date | None = None  # futures ids are re-resolved every trading day
        self._futures_quote: tuple[float, dict[str, Any]] | None = None
        self._futures: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._last: tuple[float, MarketSnapshot] | None = None

    # ------------------------------------------------------------------ port
    def snapshot(self) -> MarketSnapshot:
        """The market now (chains and quotes from the caches when fresh enough).

        Raises:
            MarketDataUnavailable: an expiry list, chain or futures quote could not be read.
        """
        with self._lock:
            now = self._clock.now()
            today = now.date()
            expiries = self._expiry_list(today)
            chains_wire = [self._chain(e) for e in expiries[: self._n_chains]]
            near, far = self._future_rows(today)
            fq = self._future_quotes(near, far)
            spot = next((float(c.last_price) for c in chains_wire
                         if c.last_price is not None and c.last_price > 0), None)
            if spot is None:
                raise MarketDataUnavailable(
                    f"Dhan option chains for {[str(e) for e in expiries[:self._n_chains]]} carry "
                    "no underlying last_price: no spot")
            chains = [c for c in (self._to_chain(w) for w in chains_wire) if c is not None]
            snap = MarketSnapshot(
                time=now, spot=spot, near_future=self._future(near, fq),
                far_future=self._future(far, fq), chains=tuple(chains),
                listed_expiries=tuple(expiries), lot_size=int(near.get("lot_size") or 75),
                strike_step=_strike_step(chains))
            self._last = (self._mono(), snap)
            return snap

    def quote(self, security_id: str) -> Quote:
        """Bid/ask/LTP of a future or option (see module docstring).

        Raises:
            NoQuote: Dhan does not know ``security_id`` (or has no data).
        """
        with self._lock:
            last = self._last
            fresh = last is not None and self._mono() - last[0] <= self._max_age
            snap = last[1] if fresh and last is not None else self.snapshot()
        try:
            return quote_from_snapshot(snap, str(security_id))
        except NoQuote:
            pass
        except ValueError:  # listed, but a side is missing (NaN price)
            raise NoQuote(f"security {security_id} has no two-sided quote in the Dhan "
                          f"snapshot at {snap.time}") from None
        return self._direct_quote(str(security_id))

    # ------------------------------------------------------------------ pieces
    def _expiry_list(self, today: date) -> list[date]:
        cached = self._expiries
        if cached is None or cached[1] != today or self._mono() - cached[0] > self._expiry_ttl:
            try:
                listed = self._client.expiry_list()
            except DhanError as exc:
                raise MarketDataUnavailable(f"Dhan expiry list unavailable: {exc}") from exc
            cached = (self._mono(), today, [e for e in listed if e >= today])
            self._expiries = cached
        if not cached[2]:
            raise MarketDataUnavailable(f"Dhan lists no NIFTY option expiry on/after {today}")
        return cached[2]

    def _chain(self, expiry: date) -> WireChain:
        cached = self._chains.get(expiry)
        if cached is not None and self._mono() - cached[0] < self._chain_ttl:
            return cached[1]
        try:
            chain = self._client.option_chain(expiry)
        except DhanError as exc:
            raise MarketDataUnavailable(f"Dhan option chain {expiry} unavailable: {exc}") from exc
        self._chains = {e: c for e, c in self._chains.items() if e >= self._clock.now().date()}
        self._chains[expiry] = (self._mono(), chain)
        return chain

    def _future_rows(self, today: date) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._futures is not None and self._futures_day == today:
            near_exp = self._futures[0]["expiry"]
            if near_exp is None or near_exp >= today:
                return self._futures
        source = self._source(today) if callable(self._source) else self._source
        rows = _rows_from(source, today)
        self._futures, self._futures_day = rows, today
        logger.info("Dhan futures: near %s (%s), far %s (%s)", rows[0]["security_id"],
                    rows[0]["expiry"], rows[1]["security_id"], rows[1]["expiry"])
        return rows

    def _future_quotes(self, near: dict[str, Any], far: dict[str, Any]) -> dict[str, Any]:
        cached = self._futures_quote
        if cached is not None and self._mono() - cached[0] < self._quote_ttl:
            return cached[1]
        ids = [near["security_id"], far["security_id"]]
        try:
            data = self._client.quote({FNO: ids}).get(FNO) or {}
        except DhanError as exc:
            raise MarketDataUnavailable(f"Dhan futures quote {ids} unavailable: {exc}") from exc
        self._futures_quote = (self._mono(), data)
        return data

    @staticmethod
    def _future(row: dict[str, Any], quotes: dict[str, Any]) -> FutureQuote | None:
        q = quotes.get(str(row["security_id"]))
        if not q or row.get("expiry") is None:
            return None
        bid, ask = _top(q, "buy"), _top(q, "sell")
        return FutureQuote(security_id=int(row["security_id"]), expiry=row["expiry"],
                           ltp=_f(q.get("last_price")), bid=bid, ask=ask)

    @staticmethod
    def _to_chain(wire: WireChain) -> OptionChain | None:
        strikes = sorted(wire.strikes)
        if not strikes:
            return None

        def side(kind: str) -> ChainSide:
            cols: dict[str, list[Any]] = {k: [] for k in ("security_id", "ltp", "bid", "ask",
                                                          "iv", "oi", "volume", "prev_close")}
            for k in strikes:
                q = wire.strikes[k].get(kind)
                cols["security_id"].append(int(q.security_id) if q else -1)
                cols["ltp"].append(_f(q.last_price) if q else math.nan)
                cols["bid"].append(_f(q.bid) if q else math.nan)
                cols["ask"].append(_f(q.ask) if q else math.nan)
                iv = q.implied_volatility if q else None
                cols["iv"].append(float(iv) / 100.0 if iv is not None and iv > 0 else math.nan)
                cols["oi"].append(q.oi if q else 0)
                cols["volume"].append(q.volume if q else 0)
                cols["prev_close"].append(_f(q.previous_close) if q else math.nan)
            return ChainSide(**cols)

        return OptionChain(expiry=wire.expiry, strikes=np.array([float(k) for k in strikes]),
                           ce=side("CE"), pe=side("PE"))

    def _direct_quote(self, security_id: str) -> Quote:
        try:
            sid = int(security_id)
        except ValueError:
            raise NoQuote(f"security id {security_id!r} is not numeric") from None
        try:
            data = (self._client.quote({FNO: [sid]}).get(FNO) or {}).get(str(sid))
        except DhanError as exc:
            raise MarketDataUnavailable(f"Dhan quote of {security_id} unavailable: {exc}") from exc
        if not data:
            raise NoQuote(f"Dhan has no NSE_FNO quote for security {security_id}")
        bid, ask = _top(data, "buy"), _top(data, "sell")
        if not (bid > 0 and ask > 0):
            raise NoQuote(f"security {security_id} has no two-sided quote on Dhan")
        return Quote(Decimal(str(bid)).quantize(Decimal("0.01")),
                     Decimal(str(ask)).quantize(Decimal("0.01")),
                     Decimal(str(data.get("last_price") or 0)).quantize(Decimal("0.01")))


def _top(quote: Mapping[str, Any], book: str) -> float:
    levels = ((quote.get("depth") or {}).get(book) or [])
    price = levels[0].get("price") if levels else None
    return float(price) if price else math.nan


def _strike_step(chains: list[OptionChain]) -> float:
    for chain in chains:
        if chain.strikes.size > 1:
            return float(np.min(np.diff(chain.strikes)))
    return 50.0


def _rows_from(source: Any, today: date) -> tuple[dict[str, Any], dict[str, Any]]:
    """Near/far futures rows ``{security_id, expiry, lot_size}`` from a master or mapping."""
    if isinstance(source, InstrumentMaster):
        try:
            source.ensure_fresh(today)
        except StaleInstrumentMaster as exc:
            raise MarketDataUnavailable(f"refusing to trade: {exc}") from None
        live = source.futures(on_or_after=today)
        if len(live) < 2:
            raise MarketDataUnavailable(
                f"instrument master ({source.source or 'unknown'}, {source.as_of}) has "
                f"{len(live)} NIFTY futures expiring on/after {today}; need near and far")
        return tuple({"security_id": str(f.security_id), "expiry": f.expiry,  # type: ignore[return-value]
                      "lot_size": f.lot_size} for f in live[:2])
    if isinstance(source, Mapping):
        rows = []
        for leg in ("near", "far"):
            row = source.get(leg)
            sid = _field(row, "security_id") if row is not None else None
            if not sid:
                raise MarketDataUnavailable(f"no {leg} NIFTY futures security id configured")
            expiry = _field(row, "expiry")
            if isinstance(expiry, datetime):
                expiry = expiry.date()
            elif isinstance(expiry, str):
                expiry = date.fromisoformat(expiry[:10])
            rows.append({"security_id": str(sid), "expiry": expiry,
                         "lot_size": _field(row, "lot_size")})
        return rows[0], rows[1]
    raise TypeError(f"futures source must be an InstrumentMaster, a mapping or a loader, "
                    f"got {type(source).__name__}")
