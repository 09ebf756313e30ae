"""End-of-day market data from ``bhavcopy_ohlc``: a day's NIFTY rows as the market view the
strategies read, at that day's close (15:30 IST).

Which price is what (the rules every end-of-day figure follows):

* **Spot** is the index close: the ``underlying`` (``UndrlygPric``) of the day's option rows.
* A contract that **traded** that day (``volume`` > 0) has a usable close (``ClsPric``). Its
  modelled quote is ``close ∓ half_spread`` (``engine.backtest.fill_model``): that is the
  bid/ask the strategies see, and where it fills.
* An **untraded** contract's close is stale (on 2025-02-11 the 13-Mar 23050 CE had volume 0,
  ``ClsPric`` 906.10 vs ``SttlmPric`` 432.85): it gets **no quote** in the view (so no
  strategy picks it and no exit fires on it) and is never filled; where a held leg needs a
  value it is a **model mark** — Black-76 at the strike's IV interpolated (linearly in
  ln(K/F), flat beyond the ends) from that expiry's *traded* out-of-the-money strikes — and
  flagged ``model``.
* **Daily mark-to-market** uses the settlement price (``SttlmPric``) of traded contracts, the
  model mark of untraded ones; never ``LastPric`` (not even stored).
* Liquidity filters read ``volume`` and ``open_interest`` from the file, never a spread the
  backtest modelled itself.
* NIFTY's **daily high/low** is not in the table: it is approximated from the near-month
  future's high/low shifted by its close basis (future close − index close); see
  :meth:`EodDay.spot_range`.

Contract identity: the engine needs a broker security id per contract. The table has none,
so each contract gets a stable synthetic one from (expiry, strike, type):
``YYMMDD·strike(6 digits)·1|2|3`` (CE/PE/FUT), the same every day the contract is listed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from engine.backtest.fill_model import half_spread, touch
from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_price
from engine.market.snapshot import ChainSide, FutureQuote, MarketSnapshot, OptionChain
from engine.strategies.market_view import MarketView, build_market_view
from engine.timeutil import IST, MARKET_CLOSE

__all__ = ["COLUMNS", "NIFTY_WEEKLIES_FROM", "Contract", "DataRefused", "EodDay", "build_view",
           "contract_id", "group_days", "load_rows", "model_marks", "trading_days"]

#: NIFTY weekly options were first listed for expiry 14 Feb 2019 (trading from 11 Feb 2019)
NIFTY_WEEKLIES_FROM = date(2019, 2, 11)
COLUMNS = ("trade_date", "expiry", "option_type", "strike", "open", "high", "low", "close",
           "settle", "underlying", "open_interest", "oi_change", "volume", "lot_size")
_KIND_CODE = {"CE": 1, "PE": 2, "FUT": 3}
#: expiries in reach of the strategies (calendar days): near, next weekly, the monthly after
REACH_DAYS = 75
D = Decimal


class DataRefused(ValueError):
    """The data cannot support the asked range (the message says why)."""


def contract_id(expiry: date, strike: Decimal | float, option_type: str) -> str:
    """The synthetic security id of a contract: stable across the days it is listed."""
    return f"{expiry:%y%m%d}{round(float(strike)):06d}{_KIND_CODE[option_type]}"


@dataclass(frozen=True, slots=True)
class Contract:
    """One bhavcopy row of one contract on one day."""

    security_id: str
    expiry: date
    option_type: str            # CE, PE or FUT
    strike: Decimal             # 0 for FUT
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None
    settle: Decimal | None
    volume: int
    oi: int
    lot_size: int

    @property
    def traded(self) -> bool:
        """Traded that day: the close is a usable price."""
        return self.volume > 0 and self.close is not None and self.close > 0


@dataclass(frozen=True, slots=True, eq=False)
class EodDay:
    """Every NIFTY contract of one trade date."""

    trade_date: date
    spot: Decimal
    contracts: Mapping[str, Contract]
    options: Mapping[date, Mapping[tuple[Decimal, str], Contract]] = field(default_factory=dict)
    futures: tuple[Contract, ...] = ()

    @property
    def close_time(self) -> datetime:
        return datetime.combine(self.trade_date, MARKET_CLOSE, IST)

    def spot_range(self) -> tuple[Decimal, Decimal, str] | None:
        """(low, high, source) of NIFTY today: the near-month future's low/high minus its close
        basis; None when no future traded."""
        fut = next((f for f in self.futures if f.traded and f.expiry >= self.trade_date
                    and f.high and f.low), None)
        if fut is None:
            return None
        basis = fut.close - self.spot  # type: ignore[operator]
        return (fut.low - basis, fut.high - basis,  # type: ignore[operator]
                f"near future {fut.expiry} high/low less its close basis {basis}")


def load_rows(pool: Any, start: date, end: date, *, symbol: str = "NIFTY") -> list[dict[str, Any]]:
    """The ``bhavcopy_ohlc`` rows of ``symbol`` from ``start`` to ``end`` inclusive."""
    with pool.connection() as conn:
        cur = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM bhavcopy_ohlc WHERE symbol = %s"
            " AND trade_date BETWEEN %s AND %s ORDER BY trade_date, expiry, option_type, strike",
            (symbol, start, end))
        return [dict(r) for r in cur.fetchall()]


def _dec(x: Any) -> Decimal | None:
    return None if x is None else D(str(x))


def group_days(rows: Iterable[Mapping[str, Any]], redatings: Iterable[Any] = ()
               ) -> dict[date, EodDay]:
    """Rows (any order) grouped into one :class:`EodDay` per trade date.

    ``redatings`` (``engine.backtest.redating``): from the day a contract was re-dated (NSE
    moved live contracts' expiries, e.g. 25-Sep-2025 -> 30-Sep-2025), it is also found
    under the id of its old expiry, so a leg held from before is priced every day.

    Raises:
        DataRefused: a day without the index close (``underlying``) or a row without lot size.
    """
    moved = [r for r in redatings if getattr(r, "symbol", "NIFTY") == "NIFTY"]
    by_day: dict[date, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by_day[r["trade_date"]].append(r)
    out = {}
    for d, rr in sorted(by_day.items()):
        spots = [r["underlying"] for r in rr if r["option_type"] != "FUT" and r["underlying"]]
        spots = spots or [r["underlying"] for r in rr if r["underlying"]]
        if not spots:
            raise DataRefused(f"{d}: no index close (underlying) in the bhavcopy rows: the "
                              "replay needs the index close for spot and expiry settlement")
        contracts: dict[str, Contract] = {}
        options: dict[date, dict[tuple[Decimal, str], Contract]] = defaultdict(dict)
        futures = []
        for r in rr:
            if not r["lot_size"]:
                raise DataRefused(f"{d}: {r['option_type']} {r['expiry']} {r['strike']} has no "
                                  "lot size: legacy rows without lots cannot be replayed")
            c = Contract(security_id=contract_id(r["expiry"], r["strike"], r["option_type"]),
                         expiry=r["expiry"], option_type=r["option_type"],
                         strike=D(str(r["strike"])).quantize(D("0.01")),
                         open=_dec(r["open"]), high=_dec(r["high"]), low=_dec(r["low"]),
                         close=_dec(r["close"]), settle=_dec(r["settle"]),
                         volume=int(r["volume"] or 0), oi=int(r["open_interest"] or 0),
                         lot_size=int(r["lot_size"]))
            contracts[c.security_id] = c
            if c.option_type == "FUT":
                futures.append(c)
            else:
                options[c.expiry][(c.strike, c.option_type)] = c
        for r in moved:
            if r.redated_on > d:
                continue
            for (strike, kind), c in list(options.get(r.new_expiry, {}).items()):
                contracts.setdefault(contract_id(r.old_expiry, strike, kind), c)
        out[d] = EodDay(trade_date=d, spot=D(str(spots[0])).quantize(D("0.01")),
                        contracts=contracts, options=dict(options),
                        futures=tuple(sorted(futures, key=lambda f: f.expiry)))
    return out


def _nan(x: Decimal | None) -> float:
    return float(x) if x is not None else math.nan


def build_view(day: EodDay, calendar: NseCalendar, *, rate: float = 0.065,
               realized_range: float | None = None, expiry_limit: int | None = None,
               reach_days: int | None = REACH_DAYS, at: datetime | None = None) -> MarketView:
    """The market view at ``day``'s close: chains of every live expiry (ascending), traded
    contracts quoted at close ∓ the modelled half-spread, untraded ones unquoted (IV, delta
    and quotes None), volume/OI from the file, lot size per contract from the file."""
    now = at or day.close_time
    spot = float(day.spot)
    expiries = sorted(e for e in day.options if e >= day.trade_date)
    if reach_days is not None:  # the expiries in reach (a weekly, a monthly, the next monthly)
        expiries = [e for e in expiries if (e - day.trade_date).days <= reach_days]
    if expiry_limit is not None:
        expiries = expiries[:expiry_limit]
    live = [e for e in expiries if e > day.trade_date]  # rank 0 = the nearest live expiry
    chains = []
    lots: dict[str, int] = {}
    for e in expiries:
        by = day.options[e]
        strikes = sorted({k for k, _ in by})
        rank = live.index(e) if e in live else 0

        def side(kind: str, strikes: Sequence[Decimal] = strikes,
                 by: Mapping[tuple[Decimal, str], Contract] = by, rank: int = rank,
                 e: date = e) -> ChainSide:
            sid, ltp, bid, ask, vol, oi = [], [], [], [], [], []
            for k in strikes:
                c = by.get((k, kind))
                sid.append(int(c.security_id) if c else int(contract_id(e, k, kind)))
                vol.append(c.volume if c else 0)
                oi.append(c.oi if c else 0)
                if c is not None and c.traded:
                    lots[c.security_id] = c.lot_size
                    h = half_spread(c.close, rank=rank, volume=c.volume,  # type: ignore[arg-type]
                                    moneyness=math.log(float(k) / spot))
                    q = touch(c.close, h)  # type: ignore[arg-type]
                    ltp.append(float(c.close))  # type: ignore[arg-type]
                    bid.append(float(q.bid))
                    ask.append(float(q.ask))
                else:
                    if c is not None:
                        lots[c.security_id] = c.lot_size
                    ltp.append(math.nan)
                    bid.append(math.nan)
                    ask.append(math.nan)
            n = len(strikes)
            return ChainSide(security_id=sid, ltp=ltp, bid=bid, ask=ask, iv=np.full(n, np.nan),
                             oi=oi, volume=vol, prev_close=np.full(n, np.nan))

        chains.append(OptionChain(expiry=e, strikes=np.array([float(k) for k in strikes]),
                                  ce=side("CE"), pe=side("PE")))
    futs = [f for f in day.futures if f.expiry >= day.trade_date and f.traded]

    def fq(f: Contract | None) -> FutureQuote | None:
        if f is None:
            return None
        q = touch(f.close, half_spread(f.close, rank=0, volume=f.volume, moneyness=0,  # type: ignore[arg-type]
                                       kind="FUT"))
        return FutureQuote(security_id=int(f.security_id), expiry=f.expiry, ltp=float(f.close),  # type: ignore[arg-type]
                           bid=float(q.bid), ask=float(q.ask))

    snap = MarketSnapshot(time=now, spot=spot, near_future=fq(futs[0] if futs else None),
                          far_future=fq(futs[1] if len(futs) > 1 else None),
                          chains=tuple(chains), listed_expiries=tuple(expiries))
    view = build_market_view(snap, calendar, realized_range=realized_range, rate=rate)
    # lot size per contract from the file (NewBrdLotQty), not the calendar's rule
    expiries_out = []
    for ev in view.expiries:
        calls = {k: _lot(o, lots) for k, o in ev.calls.items()}
        puts = {k: _lot(o, lots) for k, o in ev.puts.items()}
        sizes = [o.lot_size for o in (*calls.values(), *puts.values()) if o.quoted]
        lot = max(set(sizes), key=sizes.count) if sizes else ev.lot_size
        expiries_out.append(replace(ev, calls=calls, puts=puts, lot_size=lot))
    return MarketView(now=view.now, spot=view.spot, expiries=tuple(expiries_out),
                      events=view.events, realized_range=view.realized_range, rate=view.rate,
                      futures=view.futures)


def _lot(o: Any, lots: Mapping[str, int]) -> Any:
    lot = lots.get(o.security_id, o.lot_size)
    return o if lot == o.lot_size else replace(o, lot_size=lot)


def model_marks(view: MarketView, day: EodDay) -> dict[str, Decimal]:
    """Black-76 marks of every *untraded* option of ``view``'s expiries: the strike's IV
    interpolated in ln(K/F) from that expiry's traded out-of-the-money strikes (CE at or above
    the forward, PE below), flat beyond the ends. Contracts with no traded strike in their
    expiry get no mark."""
    out: dict[str, Decimal] = {}
    for ev in view.expiries:
        if ev.t <= 0:
            continue
        f = ev.forward
        pts = sorted((math.log(float(o.strike) / f), o.iv) for o in (*ev.calls.values(), *ev.puts.values())
                     if o.iv is not None and o.quoted
                     and ((o.option_type == "CE") == (float(o.strike) >= f)))
        if not pts:
            continue
        xs = np.array([p[0] for p in pts])
        ys = np.array([p[1] for p in pts])
        todo = [o for o in (*ev.calls.values(), *ev.puts.values())
                if (c := day.contracts.get(o.security_id)) is not None and not c.traded]
        if not todo:
            continue
        k = np.array([float(o.strike) for o in todo])
        iv = np.interp(np.log(k / f), xs, ys)
        px = black76_price(f, k, ev.t, iv, np.array([o.option_type == "CE" for o in todo]), view.rate)
        for o, x in zip(todo, px.tolist(), strict=True):
            out[o.security_id] = max(D("0.05"), D(repr(x)).quantize(D("0.01")))
    return out


def trading_days(calendar: NseCalendar, start: date, end: date) -> list[date]:
    """The calendar's sessions from ``start`` to ``end`` inclusive."""
    return [d for d in (start + timedelta(n) for n in range((end - start).days + 1))
            if calendar.is_trading_day(d)]
