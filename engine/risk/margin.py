"""The margin an entry needs: a documented approximation of NSE SPAN + exposure (pure).

Used in paper, shadow and backtest, and in live whenever Dhan's multi-order margin
calculator does not answer (``engine.broker.dhan.margin``). It is an *approximation*: the
exchange's SPAN file (its price/vol scan ranges, the short-option minimum charge, inter-
commodity credits) is not read, so a live figure can differ by tens of percent. What it gets
right is the shape: hedged structures are cheap, naked shorts are not, and the expiry day of a
short leg is expensive.

Formula (all rupees, Decimal; ``q`` = signed units, long +, short −):

* **Options — SPAN-like scan.** Every option leg is valued with Black-76 on the spot (no
  carry) at its own implied vol (implied from the leg's price) and trading time
  ``(DTE + 1) / 252`` (``on`` is taken at the session open; DTE as in
  :func:`engine.strategies.market_view.dte`). The scan re-values the legs under 16
  scenarios, as a SPAN risk array: spot moves of 0, ±⅓, ±⅔, ±1 × ``PRICE_SCAN_RANGE``
  (6 % of spot), each with implied vol ± ``VOL_SCAN_RANGE`` (4 vol points, absolute), and
  two extreme moves of ±2 × the range at unchanged vol counted at 35 %. The scan risk of a
  group of legs is its worst loss over the scenarios (never below 0). Legs are scanned
  together in one *tier* on normal days, so a hedge (a condor's wings, a calendar's far
  legs) offsets the shorts' loss.
* **Premium** — the net option premium payable (Σ long price × q − Σ short price × q,
  floored at 0): collected upfront since Feb 2025 (SEBI circular
  SEBI/HO/MRD/TPD-1/P/CIR/2024/132, "upfront collection of option premium").
* **SPAN** = max(0, scan risk − premium): the worst scan loss beyond what the position has
  already paid for. A long option therefore needs its premium only; an iron condor needs
  about its max loss (width − credit) × units; a calendar on a normal day needs little more
  than its debit.
* **Exposure** — 2 % (``EXPOSURE_PCT``) of the notional (spot × units) of every short index
  option, hedged or not (NSE extreme-loss margin for index options).
* **Futures** — ``FUTURES_MARGIN_PCT`` 12 % of notional per outright unit (10 % SPAN + 2 %
  exposure; the Dhan simulator blocks 12 %). Opposite futures in different expiries of one
  tier are a calendar spread: the matched units need a third of that on the far leg's
  notional (the exchanges levy a calendar spread's exposure margin on one third of the far
  leg; applying the third to the SPAN part too is an assumption). Options and futures are
  not offset against each other.
* **Hedge benefit** — informational: what the legs would need one by one (each short option
  scanned alone, each future outright) minus the SPAN above.
* **The expiry-day jump** (``expiry_day_extra``). On the expiry day of a contract, two rules
  apply to index derivatives (SEBI circular 2024/132 §5.2 and the NSE/clearing circulars
  implementing it):

  - *no calendar spread treatment*: from **2025-02-10** (NSE moved the start from 1 Feb
    2025) the contracts expiring that day are scanned in their own tier, so the far legs of
    a calendar no longer offset the expiring shorts (NSE's SPAN file gets an expiry-day
    ``scanTiers`` split; futures in the expiring contract lose the calendar treatment too);
  - *additional ELM*: from **2024-11-20**, short index options expiring that day carry an
    extra 2 % (``EXPIRY_DAY_ELM_PCT``) of notional (NSE circular CMPT64639), hedged or not.

  With ``expiry_day=True`` (the position will still be open then) the legs are re-valued as
  on the *jump day* — the first expiry of a short option or of a future, :func:`jump_day` —
  with today's implied vols and spot, under those rules; ``expiry_day_extra`` is how much
  that exceeds today's normal-rule margin (never below 0). When ``on`` is itself the jump
  day the rules apply today and the extra is always included.

* **Total** = premium + SPAN + exposure + expiry_day_extra.

Sources and assumptions: the NSE parameters (index options volatility scan range 4 %,
ELM 2 %, calendar spread treatment until the near contract's expiry) are from NSE Clearing's
published SPAN parameters as quoted on public pages, the expiry-day rules from the SEBI/NSE
circulars named above; none of this is in ``../shared/reference/nse-data.md``. The 6 % price
scan range, the 35 % extreme-move cover, the one-third futures calendar charge, valuing on
spot without carry and ignoring the short-option minimum charge are assumptions of this
module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from engine.market.calendar import NseCalendar
from engine.market.iv import implied_vol_black76
from engine.market.pricing import black76_price
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.strategies.market_view import TRADING_SESSIONS_PER_YEAR, dte
from engine.timeutil import IST

__all__ = [
    "CALENDAR_OFFSET_REMOVED_FROM",
    "EXPIRY_DAY_ELM_FROM",
    "EXPIRY_DAY_ELM_PCT",
    "EXPOSURE_PCT",
    "FUTURES_MARGIN_PCT",
    "PRICE_SCAN_RANGE",
    "VOL_SCAN_RANGE",
    "MarginEstimate",
    "entry_margin",
    "entry_margin_check",
    "estimate_margin",
    "held_into",
    "jump_day",
    "margin_denial",
    "open_margin",
    "recorded_margin",
]

logger = logging.getLogger(__name__)
ZERO = Decimal("0")
_CENT = Decimal("0.01")

PRICE_SCAN_RANGE = 0.06        # fraction of spot (assumption)
VOL_SCAN_RANGE = 0.04          # absolute vol (NSE index options: 4 %)
EXTREME_MULT = 2.0             # extreme moves: ±2 × the price scan range ...
EXTREME_COVER = 0.35           # ... of which 35 % of the loss counts (SPAN convention)
EXPOSURE_PCT = Decimal("0.02")             # ELM on short index options' notional
EXPIRY_DAY_ELM_PCT = Decimal("0.02")       # extra ELM on shorts expiring today
EXPIRY_DAY_ELM_FROM = date(2024, 11, 20)
CALENDAR_OFFSET_REMOVED_FROM = date(2025, 2, 10)
FUTURES_MARGIN_PCT = Decimal("0.12")       # outright futures (10 % SPAN + 2 % exposure)
_FUT_EXPOSURE_PCT = Decimal("0.02")
FUTURES_CALENDAR_FRACTION = Decimal(1) / Decimal(3)
_MIN_IV = 0.01
_MAX_IV = 5.0

#: (spot move as a fraction of the scan range, vol shift in units of the vol range, cover)
_SCENARIOS: tuple[tuple[float, float, float], ...] = (
    *((m, v, 1.0) for m in (0.0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1.0, -1.0) for v in (1.0, -1.0)),
    (EXTREME_MULT, 0.0, EXTREME_COVER), (-EXTREME_MULT, 0.0, EXTREME_COVER))


@dataclass(frozen=True, slots=True)
class MarginEstimate:
    """The margin of a set of legs (rupees). ``total`` = premium + span + exposure +
    expiry_day_extra; ``hedge_benefit`` is informational (already netted in ``span``)."""

    span: Decimal
    exposure: Decimal
    hedge_benefit: Decimal
    premium: Decimal
    expiry_day_extra: Decimal
    total: Decimal
    jump_day: date | None = None        # the expiry day the extra refers to, if any
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"span": str(self.span), "exposure": str(self.exposure),
                "hedge_benefit": str(self.hedge_benefit), "premium": str(self.premium),
                "expiry_day_extra": str(self.expiry_day_extra), "total": str(self.total),
                "jump_day": self.jump_day.isoformat() if self.jump_day else None,
                "notes": list(self.notes)}


def _money(x: float | Decimal) -> Decimal:
    return Decimal(str(x)).quantize(_CENT, rounding=ROUND_HALF_UP)


def _check(legs: Sequence[Leg], spot: Decimal, on: date) -> None:
    if not legs:
        raise ValueError("estimate_margin needs at least one leg")
    if not isinstance(spot, Decimal) or not spot.is_finite() or spot <= 0:
        raise ValueError(f"estimate_margin: spot must be a positive Decimal, got {spot!r}")
    for leg in legs:
        if leg.expiry is None:
            raise ValueError(f"leg {leg.security_id}: no expiry")
        if leg.expiry < on:
            raise ValueError(f"leg {leg.security_id} expired on {leg.expiry} (before {on})")
        if leg.kind is InstrumentKind.OPT:
            if leg.option_type is None or leg.strike is None or leg.strike <= 0:
                raise ValueError(f"option leg {leg.security_id}: needs option_type and a "
                                 f"positive strike (got {leg.option_type}, {leg.strike})")
            if leg.price is None or leg.price < 0:
                raise ValueError(f"option leg {leg.security_id}: needs its price (got "
                                 f"{leg.price}) to imply the vol the margin scan uses")


def _signed(leg: Leg) -> int:
    return leg.quantity if leg.side is Side.BUY else -leg.quantity


def jump_day(legs: Iterable[Leg], on: date) -> date | None:
    """The first expiry day (≥ ``on``) the expiry-day rules raise this position's margin:
    the earliest expiry of a short option or of a future; None when there is none or that
    day is before both rules existed."""
    days = [leg.expiry for leg in legs if leg.expiry is not None and leg.expiry >= on
            and (leg.kind is InstrumentKind.FUT or leg.side is Side.SELL)]
    if not days:
        return None
    first = min(days)
    return first if first >= EXPIRY_DAY_ELM_FROM else None


class _Book:
    """The option legs as arrays, with implied vols fixed at ``on`` (the scan's inputs)."""

    def __init__(self, legs: Sequence[Leg], spot: float, on: date, calendar: NseCalendar):
        self.legs = list(legs)
        self.spot = spot
        self.k = np.array([float(x.strike) for x in self.legs])  # type: ignore[arg-type]
        self.call = np.array([x.option_type == "CE" for x in self.legs])
        self.q = np.array([float(_signed(x)) for x in self.legs])
        self.price = np.array([float(x.price) for x in self.legs])  # type: ignore[arg-type]
        t = self.t_at(on, calendar)
        iv = implied_vol_black76(self.price, spot, self.k, t, self.call).iv
        self.iv = np.clip(np.where(np.isfinite(iv), iv, _MIN_IV), _MIN_IV, _MAX_IV)

    def t_at(self, day: date, calendar: NseCalendar) -> np.ndarray:
        return np.array([(dte(calendar, day, x.expiry) + 1) / TRADING_SESSIONS_PER_YEAR
                         for x in self.legs])  # type: ignore[arg-type]

    def scan(self, idx: np.ndarray, t: np.ndarray) -> float:
        """Worst scenario loss of the legs ``idx`` (never below 0)."""
        if not idx.any():
            return 0.0
        k, call, q, iv, tt = self.k[idx], self.call[idx], self.q[idx], self.iv[idx], t[idx]
        base = float(np.sum(q * black76_price(self.spot, k, tt, iv, call)))
        worst = 0.0
        for move, vol, cover in _SCENARIOS:
            f = self.spot * (1.0 + move * PRICE_SCAN_RANGE)
            sig = np.maximum(iv + vol * VOL_SCAN_RANGE, _MIN_IV)
            value = float(np.sum(q * black76_price(f, k, tt, sig, call)))
            worst = max(worst, (base - value) * cover)
        return worst


def _futures(legs: Sequence[Leg], spot: Decimal, tiers: list[set[date]]
             ) -> tuple[Decimal, Decimal, Decimal]:
    """(span, exposure, standalone span) of the futures legs: outright 12 %, calendar-matched
    units a third of it on the far leg (within a tier)."""
    span = exposure = standalone = ZERO
    for tier in tiers:
        mine = [x for x in legs if x.expiry in tier]
        if not mine:
            continue
        notional = {id(x): (x.price if x.price is not None and x.price > 0 else spot)
                    for x in mine}
        for x in mine:
            standalone += (FUTURES_MARGIN_PCT - _FUT_EXPOSURE_PCT) * notional[id(x)] * x.quantity
        longs = sorted((x for x in mine if x.side is Side.BUY), key=lambda x: x.expiry)
        shorts = sorted((x for x in mine if x.side is Side.SELL), key=lambda x: x.expiry)
        left = {id(x): x.quantity for x in mine}
        for a in longs:  # match opposite sides of different expiries, nearest first
            for b in shorts:
                if a.expiry == b.expiry or not left[id(a)] or not left[id(b)]:
                    continue
                n = min(left[id(a)], left[id(b)])
                left[id(a)] -= n
                left[id(b)] -= n
                far = a if a.expiry > b.expiry else b  # type: ignore[operator]
                base = FUTURES_CALENDAR_FRACTION * notional[id(far)] * n
                span += (FUTURES_MARGIN_PCT - _FUT_EXPOSURE_PCT) * base
                exposure += _FUT_EXPOSURE_PCT * base
        for x in mine:
            base = notional[id(x)] * left[id(x)]
            span += (FUTURES_MARGIN_PCT - _FUT_EXPOSURE_PCT) * base
            exposure += _FUT_EXPOSURE_PCT * base
    return span, exposure, standalone


@dataclass(frozen=True, slots=True)
class _Rules:
    span: Decimal
    exposure: Decimal
    standalone: Decimal   # what the legs need one by one (SPAN part)

    @property
    def total(self) -> Decimal:
        return self.span + self.exposure


def _margin_on(book: _Book | None, futs: Sequence[Leg], spot: Decimal, premium: Decimal,
               day: date, calendar: NseCalendar, *, expiry_rules: bool) -> _Rules:
    """SPAN (net of premium) and exposure of the position valued as on ``day``."""
    expiries = sorted({x.expiry for x in ([] if book is None else book.legs) + list(futs)})
    split = expiry_rules and day >= CALENDAR_OFFSET_REMOVED_FROM and day in expiries
    tiers = ([{day}, {e for e in expiries if e != day}] if split else [set(expiries)])
    scan = standalone = 0.0
    exposure = ZERO
    if book is not None:
        t = book.t_at(day, calendar)
        exp = np.array([x.expiry for x in book.legs])
        for tier in tiers:
            scan += book.scan(np.array([e in tier for e in exp]), t)
        for i, leg in enumerate(book.legs):
            if leg.side is Side.SELL:
                only = np.zeros(len(book.legs), dtype=bool)
                only[i] = True
                standalone += book.scan(only, t)
                exposure += EXPOSURE_PCT * spot * leg.quantity
                if expiry_rules and leg.expiry == day and day >= EXPIRY_DAY_ELM_FROM:
                    exposure += EXPIRY_DAY_ELM_PCT * spot * leg.quantity
    fspan, fexp, fstand = _futures(futs, spot, tiers)
    span = _money(max(0.0, scan - float(premium))) + fspan
    return _Rules(span=_money(span), exposure=_money(exposure + fexp),
                  standalone=_money(Decimal(str(standalone)) + fstand))


def estimate_margin(legs: Sequence[Leg], spot: Decimal, on: date, calendar: NseCalendar, *,
                    expiry_day: bool) -> MarginEstimate:
    """The approximate margin of opening ``legs`` on trading day ``on`` (module docstring).

    Args:
        legs: the entry's legs (options need strike, option type, expiry and price; futures
            their expiry; a future without a price is valued at ``spot``).
        spot: NIFTY now.
        on: the trading day of the entry.
        calendar: the exchange calendar (DTE in sessions).
        expiry_day: the position will still be open on :func:`jump_day`: add the
            expiry-day jump. Ignored (always added) when ``on`` is that day.

    Raises:
        ValueError: a leg without what the estimate needs, an expired leg, a bad spot.
    """
    legs = list(legs)
    _check(legs, spot, on)
    opts = [x for x in legs if x.kind is InstrumentKind.OPT]
    futs = [x for x in legs if x.kind is InstrumentKind.FUT]
    paid = sum((x.price * _signed(x) for x in opts), ZERO)  # type: ignore[operator]
    premium = _money(max(ZERO, paid))
    book = _Book(opts, float(spot), on, calendar) if opts else None
    normal = _margin_on(book, futs, spot, premium, on, calendar, expiry_rules=False)
    jump = jump_day(legs, on)
    notes: list[str] = []
    extra = ZERO
    if jump is not None and (expiry_day or jump == on):
        peak = _margin_on(book, futs, spot, premium, jump, calendar, expiry_rules=True)
        extra = max(ZERO, peak.total - normal.total)
        rules = []
        if jump >= CALENDAR_OFFSET_REMOVED_FROM and len({x.expiry for x in legs}) > 1:
            rules.append("no calendar offset for the contracts expiring then")
        if any(x.side is Side.SELL and x.expiry == jump for x in opts):
            rules.append(f"+{EXPIRY_DAY_ELM_PCT:%} ELM on the shorts expiring then")
        notes.append(f"expiry-day jump on {jump}: +₹{extra}"
                     + (f" ({'; '.join(rules)})" if rules else ""))
    elif jump is not None:
        notes.append(f"expiry-day jump on {jump} not applied: the position exits before it")
    hedge = _money(max(ZERO, normal.standalone - normal.span))
    total = premium + normal.span + normal.exposure + extra
    return MarginEstimate(span=normal.span, exposure=normal.exposure, hedge_benefit=hedge,
                          premium=premium, expiry_day_extra=_money(extra), total=_money(total),
                          jump_day=jump, notes=tuple(notes))


def held_into(day: date | None, *, now: datetime, calendar: NseCalendar,
              planned_exit: str | datetime | None = None, max_hold_minutes: int | None = None,
              exit_dte: int | None = None) -> bool:
    """Whether a position opened at ``now`` will still be open on ``day`` (the jump day).

    The last day held is the earliest of what is known: the strategy's planned exit (DC and
    MDC record it in the entry's context), ``now`` + its max hold in minutes, and the
    session ``exit_dte`` sessions before ``day`` for a strategy that always exits at that DTE
    (IC: 1). With none of them the position is assumed held into ``day`` (conservative).

    Raises:
        ValueError: ``planned_exit`` is not an ISO datetime.
    """
    if day is None:
        return False
    last: list[date] = []
    if planned_exit is not None:
        at = (planned_exit if isinstance(planned_exit, datetime)
              else _iso(planned_exit))
        last.append(at.astimezone(IST).date())
    if max_hold_minutes is not None:
        last.append((now + timedelta(minutes=int(max_hold_minutes))).astimezone(IST).date())
    if exit_dte is not None and exit_dte >= 1:
        d = day
        for _ in range(int(exit_dte)):
            d = calendar.previous_trading_day(d)
        last.append(d)
    if not last:
        return True
    return min(last) >= day


def _iso(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"planned_exit {text!r} is not an ISO datetime") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=IST)


def entry_margin(legs: Sequence[Leg], spot: Decimal, now: datetime, calendar: NseCalendar, *,
                 planned_exit: str | datetime | None = None,
                 max_hold_minutes: int | None = None, exit_dte: int | None = None
                 ) -> tuple[MarginEstimate, bool]:
    """(the estimate, held into the jump day) of an entry at ``now``: the expiry-day jump is
    included when the position would still be open on :func:`jump_day` (:func:`held_into`).
    The RiskActor and the backtest both call this."""
    today = now.astimezone(IST).date()
    held = held_into(jump_day(legs, today), now=now, calendar=calendar,
                     planned_exit=planned_exit, max_hold_minutes=max_hold_minutes,
                     exit_dte=exit_dte)
    return estimate_margin(legs, spot, today, calendar, expiry_day=held), held


def recorded_margin(context: Mapping[str, Any] | None) -> Decimal | None:
    """The margin total an open trade recorded at entry (``margin`` in its context: the
    entry's params in the engine, the entry's context in a backtest), or None."""
    ctx = context or {}
    for where in (ctx.get("margin"), (ctx.get("params") or {}).get("margin")):
        if isinstance(where, Mapping) and where.get("total") is not None:
            return Decimal(str(where["total"]))
    return None


def open_margin(trades: Iterable[Any], spot: Decimal, today: date, calendar: NseCalendar
                ) -> Decimal:
    """Margin of open trades (``engine.execution.trades.Trade``): as recorded at entry, else
    re-estimated from their legs at the entry prices (a trade that cannot be estimated
    counts 0 and is logged)."""
    total = ZERO
    for t in trades:
        recorded = recorded_margin(t.context)
        if recorded is not None:
            total += recorded
            continue
        legs = [replace(x.leg, price=x.entry_price) for x in t.legs]
        try:
            total += estimate_margin(legs, spot, today, calendar, expiry_day=False).total
        except ValueError as exc:
            logger.warning("margin of open trade %s not estimated (%s): counted as 0", t.tag, exc)
    return total


def margin_denial(margin: Decimal, *, open_margin: Decimal, capital: Decimal,
                  max_pct: Decimal, max_total_pct: Decimal, source: str = "approximation"
                  ) -> str | None:
    """Why an entry needing ``margin`` must be refused, or None.

    ``open_margin`` is what the stage's open positions (and admitted entries not yet open)
    already need; both caps are shares of ``capital`` (``RISK_CAPITAL_BASE``).
    """
    cap = (max_pct * capital).quantize(_CENT)
    if margin > cap:
        return (f"margin ₹{margin} ({source}) exceeds RISK_MAX_MARGIN_PCT {max_pct} of capital "
                f"₹{capital} (cap ₹{cap})")
    total_cap = (max_total_pct * capital).quantize(_CENT)
    if open_margin + margin > total_cap:
        return (f"margin ₹{margin} ({source}) + open positions' ₹{open_margin} = "
                f"₹{open_margin + margin} exceeds RISK_MAX_TOTAL_MARGIN_PCT {max_total_pct} of "
                f"capital ₹{capital} (cap ₹{total_cap})")
    return None


def entry_margin_check(entry: Any, spec: Any, spot: Decimal, now: datetime, cal: NseCalendar,
                       p: Mapping[str, Any], open_trades: Any) -> dict[str, Any] | str:
    """The RiskActor's margin check with the approximation, for a backtest (parameters
    explicit): the reason an entry is refused, or its margin record (kept in the trade's
    context)."""
    hold = p.get(f"{entry.strategy}_MAX_HOLD_MINUTES")
    try:
        est, held = entry_margin(entry.legs, spot, now, cal,
                                 planned_exit=entry.context.get("planned_exit"),
                                 max_hold_minutes=None if hold is None else int(hold),
                                 exit_dte=getattr(spec.module, "EXIT_DTE", None))
    except ValueError as exc:
        return f"margin not estimated ({exc}): entry refused"
    why = margin_denial(est.total,
                        open_margin=open_margin(open_trades, spot, now.date(), cal),
                        capital=Decimal(p["RISK_CAPITAL_BASE"]),
                        max_pct=Decimal(p["RISK_MAX_MARGIN_PCT"]),
                        max_total_pct=Decimal(p["RISK_MAX_TOTAL_MARGIN_PCT"]))
    return why or {**est.to_json(), "source": "approximation", "held_into_jump": held}
