"""The market as every options strategy sees it: pure data and the definitions they share.

Built once per scan cycle from a :class:`~engine.market.snapshot.MarketSnapshot` and the
exchange calendar by :func:`build_market_view` (pure: no I/O), then handed to each
strategy inside :class:`~engine.strategies.base.StrategyInput`. The live scanner and the
backtester build it the same way, so a strategy cannot tell them apart.

Definitions (written once, used by every strategy):

* **DTE** — trading sessions after today up to and including the expiry: the expiry day
  itself is 0, the session before it 1 (holidays and weekends do not count).
* **Time to expiry for IV** (``ExpiryView.t``) — the IV's own basis: calendar years to
  15:30 IST on the expiry (``engine.market.pricing.year_fraction``), the same in live and
  backtest. **Trading time** (``ExpiryView.t_trading``) — the rest of today's session plus
  the whole sessions up to the expiry, over ``TRADING_SESSIONS_PER_YEAR``; richness between
  two expiries is compared in trading time (:func:`trading_time_iv`), because in calendar
  time a far expiry that spans a weekend the near one does not looks cheap.
* **Near** — the first expiry with DTE ≥ 1: on an expiry day, today's contract is never a
  new leg, so "near" is the next expiry. **Next weekly** — the expiry after near. **The
  monthly** — the first monthly expiry strictly after near.
* **Strikes** — the listed ones; :meth:`ExpiryView.nearest_strike` picks the nearest to a
  target with ties resolved *outward* (away from spot), among strikes with a live two-sided
  quote; a structure uses a strike only if it is listed and quoted in every expiry used
  (:func:`common_quoted_strike`).
* **Marks** — exit-side prices: a long is marked at the bid, a short at the ask, never at
  mid (:func:`exit_mark`).
* **Units** — every leg of a structure has the same number of units per strike; when the
  contracts' lot sizes differ the structure is refused (:func:`units_for`).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Any, Literal, TypeVar

import numpy as np

from engine.execution.paper import NoQuote, Quote
from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_greeks
from engine.market.snapshot import MarketSnapshot, price_decimal
from engine.market.surface import ExpiryIV, analyze_expiries, live_chains
from engine.timeutil import IST, MARKET_CLOSE, MARKET_OPEN

__all__ = [
    "TRADING_SESSIONS_PER_YEAR",
    "ExpiryView",
    "MarketView",
    "OptionView",
    "StructureRefused",
    "build_market_view",
    "common_quoted_strike",
    "dte",
    "exit_mark",
    "trading_time_iv",
    "trading_years",
    "units_for",
]

OptionType = Literal["CE", "PE"]
TRADING_SESSIONS_PER_YEAR = 252.0
_SESSION_SECONDS = (datetime.combine(date(2000, 1, 3), MARKET_CLOSE)
                    - datetime.combine(date(2000, 1, 3), MARKET_OPEN)).total_seconds()


class StructureRefused(ValueError):
    """A structure cannot be built as asked (the message says why, for the battle log)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionView:
    """One listed option contract with its quote (``None`` where the source has nothing)."""

    security_id: str
    expiry: date
    strike: Decimal
    option_type: OptionType
    bid: Decimal | None
    ask: Decimal | None
    ltp: Decimal | None
    iv: float | None            # annualized fraction, on the IV's own (calendar) basis
    delta: float | None         # Black-76 on the expiry's parity forward at this strike's IV
    volume: int = 0
    oi: int = 0
    lot_size: int
    bid_qty: int | None = None  # top-of-book quantities, where the source quotes them
    ask_qty: int | None = None

    @property
    def quoted(self) -> bool:
        """A live two-sided quote: bid > 0 and ask ≥ bid."""
        return (self.bid is not None and self.ask is not None and self.bid > 0
                and self.ask >= self.bid)

    @property
    def mid(self) -> Decimal | None:
        if not self.quoted:
            return None
        return ((self.bid + self.ask) / 2).quantize(Decimal("0.01"))  # type: ignore[operator]

    @property
    def spread(self) -> Decimal | None:
        return (self.ask - self.bid) if self.quoted else None  # type: ignore[operator]


# ExpiryView -> {key: value derived from it} (ExpiryView.derived); weak, so the entries go
# with their view.
_DERIVED: weakref.WeakKeyDictionary[ExpiryView, dict[Hashable, Any]] = weakref.WeakKeyDictionary()
_UNSEEN = object()
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, weakref_slot=True)
class ExpiryView:
    """One listed expiry: its chain, forward, times and lot."""

    expiry: date
    dte: int
    t: float                      # calendar years to 15:30 IST on expiry (IV basis)
    t_trading: float              # trading years (see module docstring)
    forward: float
    atm_strike: Decimal
    atm_iv: float | None
    lot_size: int
    monthly: bool
    strikes: tuple[Decimal, ...]
    calls: Mapping[Decimal, OptionView]
    puts: Mapping[Decimal, OptionView]

    def option(self, strike: Decimal, option_type: OptionType) -> OptionView | None:
        return (self.calls if option_type == "CE" else self.puts).get(Decimal(strike))

    def quoted_strikes(self, option_type: OptionType | None = None) -> tuple[Decimal, ...]:
        """Strikes with a live quote on ``option_type`` (on both sides when None).

        Computed once per view and side (a view is immutable; strategies ask it for every
        candidate strike), kept while the view lives."""
        return self.derived(("quoted_strikes", option_type),
                            lambda: self._quoted_strikes(option_type))

    def derived(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, once per view and ``key``: a view is immutable and shared by every
        strategy of a cycle (and by scanner and monitor), so what is derived from it alone
        is kept while the view lives. Two threads computing the same key at once store
        equal values; ``compute`` must return something nobody mutates."""
        memo = _DERIVED.get(self)
        if memo is None:
            memo = _DERIVED.setdefault(self, {})
        value = memo.get(key, _UNSEEN)
        if value is _UNSEEN:
            value = memo[key] = compute()
        return value  # type: ignore[return-value]

    def _quoted_strikes(self, option_type: OptionType | None) -> tuple[Decimal, ...]:
        out = []
        for k in self.strikes:
            c, p = self.calls.get(k), self.puts.get(k)
            ok_c, ok_p = c is not None and c.quoted, p is not None and p.quoted
            if (option_type == "CE" and ok_c) or (option_type == "PE" and ok_p) or (
                    option_type is None and ok_c and ok_p):
                out.append(k)
        return tuple(out)

    def nearest_strike(self, target: float, *, spot: float,
                       option_type: OptionType | None = None) -> Decimal | None:
        """The quoted strike nearest ``target``; a tie goes outward (away from ``spot``)."""
        return _nearest(self.quoted_strikes(option_type), target, spot)

    def expected_move(self, spot: float) -> float | None:
        """One standard deviation of spot to expiry: spot · ATM IV · √t (index points)."""
        if self.atm_iv is None or self.t <= 0:
            return None
        return float(spot) * self.atm_iv * math.sqrt(self.t)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MarketView:
    """Spot, every listed expiry in reach (ascending, none past), events, realized range."""

    now: datetime
    spot: Decimal
    expiries: tuple[ExpiryView, ...]
    events: tuple[Any, ...] = ()
    realized_range: float | None = None
    rate: float = 0.065
    #: futures quotes by security id (bid, ask, ltp as engine.execution.paper.Quote)
    futures: Mapping[str, Any] = field(default_factory=dict)
    _by_date: dict[date, ExpiryView] = field(default_factory=dict, repr=False)
    #: security id -> (side, strike): the option is looked up in its side only when asked
    _by_id: dict[str, tuple[Mapping[Decimal, OptionView], Decimal]] = field(
        default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_date", {e.expiry: e for e in self.expiries})
        by_id = {}
        for e in self.expiries:
            for side in (e.calls, e.puts):
                ids = side.ids() if isinstance(side, LazyOptions) else {
                    o.security_id: strike for strike, o in side.items()}
                by_id.update((sid, (side, strike)) for sid, strike in ids.items())
        object.__setattr__(self, "_by_id", by_id)

    def option_by_id(self, security_id: str) -> OptionView | None:
        """The listed option with this broker security id (None if not in the view)."""
        found = self._by_id.get(str(security_id))
        return found[0].get(found[1]) if found is not None else None

    def quote(self, security_id: str) -> Any:
        """Bid/ask/LTP (``engine.execution.paper.Quote``) of an option or future.

        Raises:
            NoQuote: the security is not in the view or has no two-sided quote.
        """
        sid = str(security_id)
        if sid in self.futures:
            return self.futures[sid]
        o = self.option_by_id(sid)
        if o is None or not o.quoted:
            raise NoQuote(f"security {sid} has no live quote in the market view at {self.now}")
        return Quote(o.bid, o.ask, o.ltp if o.ltp is not None else o.mid)

    @property
    def today(self) -> date:
        return self.now.astimezone(IST).date()

    def expiry(self, d: date) -> ExpiryView | None:
        return self._by_date.get(d)

    @property
    def near(self) -> ExpiryView | None:
        """First expiry with DTE ≥ 1 (on an expiry day, the next one)."""
        return next((e for e in self.expiries if e.dte >= 1), None)

    @property
    def is_expiry_day(self) -> bool:
        return any(e.expiry == self.today for e in self.expiries)

    def next_weekly(self) -> ExpiryView | None:
        """The expiry right after near."""
        near = self.near
        if near is None:
            return None
        return next((e for e in self.expiries if e.expiry > near.expiry), None)

    def monthly_after_near(self) -> ExpiryView | None:
        """The first monthly expiry strictly after near."""
        near = self.near
        if near is None:
            return None
        return next((e for e in self.expiries if e.monthly and e.expiry > near.expiry), None)


# ---------------------------------------------------------------------------- definitions
def dte(calendar: NseCalendar, today: date, expiry: date) -> int:
    """Trading sessions after ``today`` up to and including ``expiry`` (expiry day = 0)."""
    if expiry <= today:
        return 0
    n, d = 0, today
    while d < expiry:
        d = calendar.next_trading_day(d)
        n += 1
    return n


def trading_years(calendar: NseCalendar, now: datetime, expiry: date) -> float:
    """Trading time to 15:30 IST on ``expiry``: the rest of today's session (if ``now`` is
    a trading day) plus each whole session after today, over 252 sessions a year."""
    local = now.astimezone(IST)
    today = local.date()
    if expiry < today:
        return 0.0
    rest = 0.0
    if calendar.is_trading_day(today):
        close = datetime.combine(today, MARKET_CLOSE, IST)
        opened = datetime.combine(today, MARKET_OPEN, IST)
        rest = (close - max(local, opened)).total_seconds() / _SESSION_SECONDS
        rest = min(1.0, max(0.0, rest))
    return (rest + dte(calendar, today, expiry)) / TRADING_SESSIONS_PER_YEAR


def trading_time_iv(iv: float | None, t_calendar: float, t_trading: float) -> float | None:
    """The same total variance expressed per trading year: √(σ²·t_cal / t_trading)."""
    if iv is None or t_calendar <= 0 or t_trading <= 0:
        return None
    return math.sqrt(iv * iv * t_calendar / t_trading)


def exit_mark(option: OptionView, held_side: Literal["BUY", "SELL"]) -> Decimal | None:
    """What a held leg closes at now: a long sells at the bid, a short buys at the ask."""
    if not option.quoted:
        return None
    return option.bid if held_side == "BUY" else option.ask


def units_for(lots: int, options: Sequence[OptionView]) -> int:
    """Units per leg for ``lots`` lots when every leg has the same lot size.

    Raises:
        StructureRefused: the legs' lot sizes differ (e.g. 75 and 65 around Jan 2026).
    """
    sizes = sorted({o.lot_size for o in options})
    if lots <= 0:
        raise StructureRefused(f"lots must be positive, got {lots}")
    if len(sizes) != 1:
        raise StructureRefused(
            "lot sizes differ across the legs ("
            + ", ".join(f"{o.expiry:%d %b} {o.strike} {o.option_type}: {o.lot_size}"
                        for o in options) + "): refused rather than left partly unhedged")
    return lots * sizes[0]


def common_quoted_strike(expiries: Iterable[ExpiryView], target: float, spot: float,
                         option_type: OptionType) -> Decimal | None:
    """The strike nearest ``target`` (ties outward) listed and quoted in every expiry."""
    sets = [set(e.quoted_strikes(option_type)) for e in expiries]
    if not sets:
        return None
    common = set.intersection(*sets)
    return _nearest(tuple(sorted(common)), target, spot)


def _nearest(strikes: Sequence[Decimal], target: float, spot: float) -> Decimal | None:
    if not strikes:
        return None
    best: Decimal | None = None
    best_key: tuple[float, float] | None = None
    for k in strikes:
        dist = abs(float(k) - target)
        # ties outward: of two equally near strikes, the one farther from spot
        key = (round(dist, 9), -abs(float(k) - spot))
        if best_key is None or key < best_key:
            best, best_key = k, key
    return best


# ---------------------------------------------------------------------------- builder
def build_market_view(snapshot: MarketSnapshot, calendar: NseCalendar, *,
                      events: Sequence[Any] = (), realized_range: float | None = None,
                      rate: float = 0.065, monthlies: Iterable[date] | None = None,
                      analysis: Sequence[ExpiryIV] | None = None) -> MarketView:
    """Every chain of ``snapshot`` with time left, as :class:`ExpiryView` s.

    Args:
        snapshot: the market snapshot (chains for the expiries in reach).
        calendar: the exchange calendar (DTE, trading time, lot sizes, monthlies).
        events: the day's market events (``market_events`` rows), passed through.
        realized_range: the session's spot high − low so far, passed through.
        rate: discount rate for parity forwards and Black-76.
        monthlies: monthly expiry dates; default from ``calendar``.
        analysis: ``engine.market.surface.analyze_expiries`` of the snapshot's
            ``live_chains`` at ``rate``, when the caller has it (one IV solve per snapshot
            for the surface and the view); computed here otherwise.
    """
    now = snapshot.time
    today = now.astimezone(IST).date()
    if monthlies is None:
        monthly_set = {calendar.monthly_expiry(y, m)
                       for y, m in {(c.expiry.year, c.expiry.month) for c in snapshot.chains}}
    else:
        monthly_set = set(monthlies)
    chains = live_chains(snapshot)  # time left (so none before today) and some strikes
    if analysis is None:
        analysis = analyze_expiries(snapshot, chains, rate)
    elif len(analysis) != len(chains):
        raise ValueError(f"analysis has {len(analysis)} expiries, the snapshot {len(chains)}"
                         " chains with time left")
    views = []
    for chain, e in zip(chains, analysis, strict=True):
        lot = calendar.lot_size(today, chain.expiry)
        strikes = [_strike(k) for k in chain.strikes.tolist()]
        sides = []
        for kind, side, ivs in (("CE", chain.ce, e.ce_iv), ("PE", chain.pe, e.pe_iv)):
            sides.append(LazyOptions(SideSource(chain.expiry, kind, side, ivs, chain.strikes,
                                                strikes, e.forward, e.t, lot)))
        calls, puts = sides
        views.append(ExpiryView(
            expiry=chain.expiry, dte=dte(calendar, today, chain.expiry), t=e.t,
            t_trading=trading_years(calendar, now, chain.expiry), forward=e.forward,
            atm_strike=price_decimal(e.atm_strike), atm_iv=e.atm_iv, lot_size=lot,
            monthly=chain.expiry in monthly_set, strikes=tuple(strikes),
            calls=calls, puts=puts))
    futures = {str(f.security_id): Quote(price_decimal(f.bid), price_decimal(f.ask),
                                         price_decimal(f.ltp))
               for f in (snapshot.near_future, snapshot.far_future)
               if f is not None and f.bid > 0 and f.ask >= f.bid}
    return MarketView(now=now, spot=price_decimal(snapshot.spot),
                      expiries=tuple(sorted(views, key=lambda v: v.expiry)),
                      events=tuple(events), realized_range=realized_range, rate=rate,
                      futures=futures)


class SideSource:
    """One side (calls or puts) of one chain of a snapshot, and its OptionViews made from it:
    one at a time (:meth:`option`) or all at once (:meth:`options`), the same values either
    way (each from the same elements of the same arrays, the delta from one vectorised
    Black-76 call over the side)."""

    __slots__ = ("_delta", "_ids", "expiry", "forward", "index", "ivs", "kind", "lot",
                 "side", "strike_values", "strikes", "t")

    def __init__(self, expiry: date, kind: OptionType, side: Any, ivs: np.ndarray,
                 strike_values: np.ndarray, strikes: list[Decimal], forward: float, t: float,
                 lot: int) -> None:
        self.expiry, self.kind, self.side, self.ivs = expiry, kind, side, ivs
        self.strike_values, self.strikes = strike_values, strikes
        self.forward, self.t, self.lot = forward, t, lot
        self.index = {k: i for i, k in enumerate(strikes)}
        self._ids: list[str] | None = None
        self._delta: np.ndarray | None = None

    def ids(self) -> list[str]:
        """The broker security ids, in strike order."""
        if self._ids is None:
            self._ids = [str(int(sid)) for sid in self.side.security_id.tolist()]
        return self._ids

    def _deltas(self) -> np.ndarray:
        if self._delta is None:
            ivs = self.ivs
            ok = np.isfinite(ivs) & (ivs > 0)
            delta = np.full(self.strike_values.shape, np.nan)
            if ok.any() and self.t > 0:
                g = black76_greeks(self.forward, self.strike_values[ok], self.t, ivs[ok],
                                   self.kind == "CE", 0.0)
                delta[ok] = g.delta
            self._delta = delta
        return self._delta

    def option(self, strike: Decimal) -> OptionView | None:
        """The OptionView at ``strike`` (None when the chain does not list it)."""
        i = self.index.get(strike)
        if i is None:
            return None
        side = self.side
        bq = side.bid_qty[i] if side.bid_qty is not None else None
        aq = side.ask_qty[i] if side.ask_qty is not None else None
        return self._make(self.strikes[i], self.ids()[i], float(side.bid[i]),
                          float(side.ask[i]), float(side.ltp[i]), float(self.ivs[i]),
                          float(self._deltas()[i]), side.volume[i], side.oi[i], bq, aq)

    def options(self) -> dict[Decimal, OptionView]:
        """Every OptionView of the side, by strike."""
        side, n = self.side, len(self.strikes)
        bid_qty = side.bid_qty.tolist() if side.bid_qty is not None else [None] * n
        ask_qty = side.ask_qty.tolist() if side.ask_qty is not None else [None] * n
        make = self._make
        return {strike: make(strike, sid, bid, ask, ltp, iv, d, vol, oi, bq, aq)
                for strike, sid, bid, ask, ltp, iv, d, vol, oi, bq, aq in zip(
                    self.strikes, self.ids(), side.bid.tolist(), side.ask.tolist(),
                    side.ltp.tolist(), self.ivs.tolist(), self._deltas().tolist(),
                    side.volume.tolist(), side.oi.tolist(), bid_qty, ask_qty, strict=True)}

    def _make(self, strike: Decimal, sid: str, bid: float, ask: float, ltp: float, iv: float,
              d: float, vol: Any, oi: Any, bq: Any, aq: Any) -> OptionView:
        return OptionView(
            security_id=sid, expiry=self.expiry, strike=strike,
            option_type=self.kind, bid=_money(bid), ask=_money(ask), ltp=_money(ltp),
            iv=iv if math.isfinite(iv) and iv > 0 else None,
            delta=d if math.isfinite(d) else None,
            volume=int(vol), oi=int(oi), lot_size=self.lot,
            bid_qty=int(bq) if bq is not None else None,
            ask_qty=int(aq) if aq is not None else None)


class LazyOptions(Mapping[Decimal, "OptionView"]):
    """One side (calls or puts) of one expiry in a view, ``{strike: OptionView}``, made as it
    is read.

    A view is built for every snapshot, but most readers touch little of it: the monitor's
    exit rules (every MONITOR_INTERVAL_SEC) read the few legs its open trades hold, CAL_ARB
    no option at all, while making the ~300 OptionViews of a side costs about 2 ms. So
    ``get`` makes only the option asked for; anything that needs the whole side (iteration,
    ``len``, ``[]``, ``in``) makes all of it once, keeping those already made, after which
    ``get`` is the dict's own (the strategies' hot path). Under a lock: scanner and monitor
    share views. Pickles as the plain dict."""

    __slots__ = ("_lock", "_options", "_some", "_source", "get")

    def __init__(self, source: SideSource) -> None:
        self._source: SideSource | None = source
        self._lock = threading.Lock()
        self._options: dict[Decimal, OptionView] | None = None
        self._some: dict[Decimal, OptionView | None] = {}
        self.get = self._first_get

    def ids(self) -> dict[str, Decimal]:
        """Broker security id -> strike, known without making any OptionView."""
        if self._options is not None:
            return {o.security_id: k for k, o in self._options.items()}
        source = self._source
        return dict(zip(source.ids(), source.strikes, strict=True))  # type: ignore[union-attr]

    def options(self) -> dict[Decimal, OptionView]:
        options = self._options
        if options is None:
            with self._lock:
                if self._options is None:
                    made = self._source.options()  # type: ignore[union-attr]
                    made.update((k, o) for k, o in self._some.items() if o is not None)
                    self._options, self._source, self._some = made, None, {}
                    self.get = made.get
                options = self._options
        return options

    def _first_get(self, key: Decimal, default: Any = None) -> Any:
        with self._lock:
            if self._options is not None:
                return self._options.get(key, default)
            found = self._some.get(key, _UNSEEN)
            if found is _UNSEEN:
                found = self._some[key] = self._source.option(key)  # type: ignore[union-attr]
        return default if found is None else found

    def __getitem__(self, key: Decimal) -> OptionView:
        return self.options()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.options()

    def __iter__(self) -> Iterator[Decimal]:
        return iter(self.options())

    def __len__(self) -> int:
        return len(self.options())

    def __repr__(self) -> str:
        return f"LazyOptions({self.options()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (self.options(),)


_CENT = Decimal("0.01")


@lru_cache(maxsize=1 << 16)
def _cents(x: float) -> Decimal:
    """``price_decimal`` of a positive finite float (the same expression, without its
    finiteness check, done by the callers), memoized: chains repeat their prices."""
    return Decimal(repr(x)).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def _strike(k: float) -> Decimal:
    return _cents(k) if k > 0 and math.isfinite(k) else price_decimal(k)


def _money(x: float) -> Decimal | None:
    x = float(x)
    if not math.isfinite(x) or x <= 0:
        return None
    return _cents(x)
