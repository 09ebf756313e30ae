"""Data endpoints of the Dhan client: option chain, expiry list, market quotes, charts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.broker.dhan.errors import DhanError
from engine.broker.dhan.models import dec
from engine.broker.dhan.ratelimit import EndpointClass
from engine.broker.dhan.transport import Transport

NIFTY_SCRIP = 13
INDEX_SEGMENT = "IDX_I"
MAX_QUOTE_INSTRUMENTS = 1000
INTERVALS = (1, 5, 15, 25, 60)
MAX_INTRADAY_DAYS = 90


def strike_key(strike: Decimal | float | int | str) -> str:
    """Dhan's option-chain strike key: six decimals, e.g. ``"25000.000000"``."""
    return f"{Decimal(str(strike)):.6f}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionQuote:
    """One side (CE or PE) of one strike of the option chain."""

    security_id: str
    last_price: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    bid_qty: int
    ask_qty: int
    implied_volatility: Decimal | None
    oi: int
    previous_oi: int
    volume: int
    previous_close: Decimal | None
    greeks: dict[str, Decimal] = field(default_factory=dict)
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> OptionQuote:
        """Parse one ``ce``/``pe`` object."""
        greeks = {k: dec(v) for k, v in (d.get("greeks") or {}).items() if v is not None}
        return cls(security_id=str(d.get("security_id")), last_price=dec(d.get("last_price")),
                   bid=dec(d.get("top_bid_price")), ask=dec(d.get("top_ask_price")),
                   bid_qty=int(d.get("top_bid_quantity") or 0),
                   ask_qty=int(d.get("top_ask_quantity") or 0),
                   implied_volatility=dec(d.get("implied_volatility")),
                   oi=int(d.get("oi") or 0), previous_oi=int(d.get("previous_oi") or 0),
                   volume=int(d.get("volume") or 0),
                   previous_close=dec(d.get("previous_close_price")),
                   greeks=greeks, raw=d)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionChain:
    """``POST /optionchain``: underlying price and ``{strike: {"CE": quote, "PE": quote}}``.

    A side absent on the wire is absent from the inner dict.
    """

    expiry: date
    last_price: Decimal | None
    strikes: dict[Decimal, dict[str, OptionQuote]]

    @classmethod
    def from_wire(cls, expiry: date, data: dict[str, Any]) -> OptionChain:
        """Parse the ``data`` object of the option-chain response."""
        strikes: dict[Decimal, dict[str, OptionQuote]] = {}
        for key, sides in (data.get("oc") or {}).items():
            row = {}
            for wire, side in (("ce", "CE"), ("pe", "PE")):
                if isinstance(sides, dict) and sides.get(wire):
                    row[side] = OptionQuote.from_wire(sides[wire])
            strikes[Decimal(str(key)).normalize() + 0] = row
        return cls(expiry=expiry, last_price=dec(data.get("last_price")), strikes=strikes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candles:
    """Parallel candle arrays (floats; ``timestamp`` is epoch seconds)."""

    open: tuple[float, ...]
    high: tuple[float, ...]
    low: tuple[float, ...]
    close: tuple[float, ...]
    volume: tuple[float, ...]
    timestamp: tuple[int, ...]
    open_interest: tuple[float, ...] = ()

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Candles:
        """Parse the bare object of ``/charts/*`` (missing arrays are empty)."""
        def arr(name: str) -> tuple[Any, ...]:
            return tuple(d.get(name) or ())

        return cls(open=arr("open"), high=arr("high"), low=arr("low"), close=arr("close"),
                   volume=arr("volume"), timestamp=tuple(int(t) for t in arr("timestamp")),
                   open_interest=arr("open_interest"))


def _data(payload: Any, endpoint: str) -> Any:
    if not isinstance(payload, dict) or "data" not in payload:
        raise DhanError(f"expected a {{status, data}} envelope from {endpoint}")
    return payload["data"]


def _instruments(instruments: dict[str, list[int | str]]) -> dict[str, list[int]]:
    if not instruments:
        raise ValueError("market quote needs at least one instrument")
    body = {seg: [int(i) for i in ids] for seg, ids in instruments.items()}
    count = sum(len(ids) for ids in body.values())
    if count > MAX_QUOTE_INSTRUMENTS:
        raise ValueError(f"market quote takes at most {MAX_QUOTE_INSTRUMENTS} instruments, "
                         f"got {count}")
    return body


class MarketDataMixin:
    """Option chain, quotes and charts; mixed into ``DhanClient``."""

    transport: Transport

    def expiry_list(self, underlying_scrip: int = NIFTY_SCRIP,
                    underlying_seg: str = INDEX_SEGMENT) -> list[date]:
        """``POST /optionchain/expirylist``: expiries in chronological order."""
        body = {"UnderlyingScrip": int(underlying_scrip), "UnderlyingSeg": underlying_seg}
        payload = self.transport.call("POST", "/optionchain/expirylist", klass=EndpointClass.DATA,
                                      key=("expirylist", underlying_scrip, underlying_seg),
                                      body=body, retry=True)
        return sorted(date.fromisoformat(str(e)) for e in _data(payload, "expirylist"))

    def option_chain(self, expiry: date, underlying_scrip: int = NIFTY_SCRIP,
                     underlying_seg: str = INDEX_SEGMENT) -> OptionChain:
        """``POST /optionchain`` for one expiry (limited to one unique request per 3 s)."""
        if not isinstance(expiry, date):
            raise ValueError(f"expiry must be a date, got {expiry!r}")
        body = {"UnderlyingScrip": int(underlying_scrip), "UnderlyingSeg": underlying_seg,
                "Expiry": expiry.isoformat()}
        payload = self.transport.call(
            "POST", "/optionchain", klass=EndpointClass.DATA,
            key=("optionchain", underlying_scrip, underlying_seg, expiry.isoformat()),
            body=body, retry=True)
        return OptionChain.from_wire(expiry, _data(payload, "optionchain"))

    def _quote(self, kind: str, instruments: dict[str, list[int | str]]) -> dict[str, Any]:
        payload = self.transport.call("POST", f"/marketfeed/{kind}", klass=EndpointClass.QUOTE,
                                      body=_instruments(instruments), retry=True)
        return _data(payload, f"marketfeed/{kind}")

    def ltp(self, instruments: dict[str, list[int | str]]) -> dict[str, dict[str, Decimal]]:
        """``POST /marketfeed/ltp`` -> ``{segment: {security_id: last_price}}``.

        Unknown ids are simply absent.
        """
        data = self._quote("ltp", instruments)
        return {seg: {sid: dec(q.get("last_price")) for sid, q in (ids or {}).items()}
                for seg, ids in data.items()}  # type: ignore[misc]

    def ohlc(self, instruments: dict[str, list[int | str]]) -> dict[str, dict[str, Any]]:
        """``POST /marketfeed/ohlc`` -> ``{segment: {id: {last_price, ohlc{...}}}}``."""
        return self._quote("ohlc", instruments)

    def quote(self, instruments: dict[str, list[int | str]]) -> dict[str, dict[str, Any]]:
        """``POST /marketfeed/quote`` -> full quote with 5-level depth per id."""
        return self._quote("quote", instruments)

    def historical(self, security_id: str, exchange_segment: str, instrument: str,
                   from_date: date, to_date: date, *, expiry_code: int | None = None,
                   oi: bool = False) -> Candles:
        """``POST /charts/historical`` daily candles; ``to_date`` is exclusive."""
        if to_date <= from_date:
            raise ValueError(f"to_date {to_date} must be after from_date {from_date}")
        body: dict[str, Any] = {"securityId": str(security_id),
                                "exchangeSegment": exchange_segment, "instrument": instrument,
                                "oi": oi, "fromDate": from_date.isoformat(),
                                "toDate": to_date.isoformat()}
        if expiry_code is not None:
            body["expiryCode"] = int(expiry_code)
        payload = self.transport.call("POST", "/charts/historical", klass=EndpointClass.DATA,
                                      body=body, retry=True, parse_float=float)
        return Candles.from_wire(payload or {})

    def intraday(self, security_id: str, exchange_segment: str, instrument: str,
                 interval: int, from_time: datetime, to_time: datetime, *,
                 oi: bool = False) -> Candles:
        """``POST /charts/intraday`` minute candles (at most 90 days per call)."""
        if int(interval) not in INTERVALS:
            raise ValueError(f"interval must be one of {INTERVALS}, got {interval}")
        if to_time <= from_time:
            raise ValueError(f"to_time {to_time} must be after from_time {from_time}")
        if (to_time - from_time).days > MAX_INTRADAY_DAYS:
            raise ValueError(f"intraday charts cover at most {MAX_INTRADAY_DAYS} days per call")
        body = {"securityId": str(security_id), "exchangeSegment": exchange_segment,
                "instrument": instrument, "interval": str(int(interval)), "oi": oi,
                "fromDate": from_time.strftime("%Y-%m-%d %H:%M:%S"),
                "toDate": to_time.strftime("%Y-%m-%d %H:%M:%S")}
        payload = self.transport.call("POST", "/charts/intraday", klass=EndpointClass.DATA,
                                      body=body, retry=True, parse_float=float)
        return Candles.from_wire(payload or {})
