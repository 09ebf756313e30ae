"""DC — the NIFTY double calendar (pure: no I/O, parameters passed in).

Structure: SELL the near-expiry CE at K_c and PE at K_p, BUY the same strikes (a double
calendar) or strikes shifted outward (a double diagonal) in the far expiry
(``DC_FAR_EXPIRY``: the next weekly or the monthly after near), the same units on every leg.
K_c / K_p are the listed strikes nearest spot ± ``DC_STRIKE_OFFSET_SD`` × the near expected
move (spot · near ATM IV · √t), ties outward, quoted in both expiries. Opened and closed
whole: no adjustments, no rolls.

Definitions this module adds to :mod:`engine.strategies.market_view`:

* **Richness** (:func:`richness`) — near minus far implied vol in *trading time*
  (:func:`~engine.strategies.market_view.trading_time_iv`) at the near strikes traded, in
  vol points: (near − far) at K_c on the CE plus (near − far) at K_p on the PE, halved. Both
  expiries are read at the *same* strikes, so a double diagonal's far smile (further out,
  on the skew) does not count as front richness; only the term structure does.
* **Planned exit** (:func:`planned_exit`) — ``DC_EXIT_DAYS_BEFORE_EXPIRY`` sessions before
  the near expiry (default 1: since Feb 2025 index calendars lose their margin offset on
  expiry day) at ``DC_EXIT_TIME``; with 0, on the expiry day at ``EXPIRY_DAY_EXIT_TIME``.
* **Model** (:func:`model_pnl`, :func:`breakevens`, :func:`best_case`) — each leg repriced
  at a spot S at time ``at`` with Black-76 on its expiry's forward carried from today's
  parity basis (F = S·e^{c·t}); vols are **sticky-moneyness**: each expiry's current smile
  (OTM side, as a function of ln(K/F)) is held, so at spot S a leg at strike K gets the vol
  today's smile has at ln(K/F(S)); vols are held in **trading time** (the same variance per
  session) and the variance left at ``at`` is σ²·(trading years left). P&L counts the debit
  paid (at the touch, with entry charges), the exit charges, and half of today's bid-ask on
  exit (the entry half is already in the debit).

Targets: profit ≥ target % × debit, where the % is ``DC_PROFIT_TARGET_PCT`` when the far leg
is the next weekly and ``DC_PROFIT_TARGET_PCT_MONTHLY`` when it is a later expiry (their
defaults come from the structure's best case, see ``KNOBS``); stop at loss ≥
``DC_STOP_LOSS_PCT`` × debit; spot beyond the model breakevens at the planned exit stored in
the trade's context at entry; ``DC_MAX_HOLD_DAYS`` sessions; the planned exit.

Entry filters (:func:`entry_problems`, every failing one is reported): the IST window, near
DTE, near ATM IV band, realized range, the event guard (:mod:`engine.events.guard`, knobs
``DC_EVENT_BLOCK_*``), risk pause, dc_family (and DC) slots, the
same four contracts already open, richness ≥ ``DC_MIN_IV_EDGE``, per-leg volume/OI floors and
top-of-book quantity, the whole structure's round-trip spread against the profit target, and
spot inside the model breakevens by ``DC_BREAKEVEN_BUFFER_SD`` near expected moves (else the
breakeven exit fires on the first wiggle). The default offset is ±0.5 SD: on the real Feb-2025
chains a ±1 SD structure's lower model breakeven sat at or above spot on most days (the put
skew), so it would either never pass that filter or exit at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize_scalar

from engine.events.guard import event_blocks, guard_knobs, input_events
from engine.execution.charges import order_charges
from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_price, year_fraction
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.settings.registry import Knob
from engine.strategies.base import Decision, EntryIntent, ExitIntent, StrategyInput
from engine.strategies.costs import PricedLeg, round_trip_charges, round_trip_spread, side_charges
from engine.strategies.market_view import (
    ExpiryView,
    MarketView,
    OptionView,
    StructureRefused,
    common_quoted_strike,
    dte,
    exit_mark,
    trading_time_iv,
    trading_years,
    units_for,
)
from engine.timeutil import IST

__all__ = [
    "DEFAULTS",
    "GRID_SPACE",
    "KNOBS",
    "NAME",
    "PARAM_KEYS",
    "Structure",
    "StructureLeg",
    "best_case",
    "breakevens",
    "build",
    "decide",
    "entry_problems",
    "exit_rule",
    "far_expiry",
    "model_pnl",
    "planned_exit",
    "profit_target_pct",
    "richness",
    "sd_code",
]

NAME = "DC"
D = Decimal
_QUARTER_HOURS = tuple(f"{h:02d}:{m:02d}" for h in range(9, 16) for m in (0, 15, 30, 45)
                       if "09:15" <= f"{h:02d}:{m:02d}" <= "15:30")
_EXIT_TIMES = ("14:30", "14:45", "15:00", "15:10", "15:15", "15:20")

KNOBS: tuple[Knob, ...] = (
    Knob("DC_ENABLED", bool, True, "Scan the NIFTY options double calendar (DC)."),
    Knob("DC_LOTS", int, 1, "Lots per leg of a double calendar (every leg the same units).", 1, 50),
    Knob("DC_STRIKE_OFFSET_SD", D, D("0.5"),
         "Short strikes at spot ± this many near expected moves (0 = both at the money).",
         D("0"), D("3")),
    Knob("DC_FAR_EXPIRY", str, "next_weekly",
         "Far (bought) leg: the expiry right after near, or the first monthly after near.",
         choices=("next_weekly", "monthly")),
    Knob("DC_MIN_IV_EDGE", D, D("0.25"),
         "Enter only when near minus far IV in trading time at the traded strikes is at least "
         "this many vol points.", D("-10"), D("20")),
    Knob("DC_NEAR_IV_MIN", D, D("9"), "Lowest near ATM IV (vol points, calendar basis) to enter.",
         D("0"), D("200")),
    Knob("DC_NEAR_IV_MAX", D, D("30"), "Highest near ATM IV (vol points, calendar basis) to enter.",
         D("0"), D("200")),
    Knob("DC_MIN_NEAR_DTE", int, 3, "Fewest trading sessions to the near expiry at entry.", 1, 30),
    Knob("DC_MAX_NEAR_DTE", int, 5, "Most trading sessions to the near expiry at entry.", 1, 30),
    Knob("DC_ENTRY_START", str, "09:30", "Earliest IST time of day a double calendar is opened.",
         choices=_QUARTER_HOURS),
    Knob("DC_ENTRY_END", str, "15:00", "IST time of day from which no double calendar is opened.",
         choices=_QUARTER_HOURS),
    Knob("DC_MAX_REALIZED_RANGE_PCT", D, D("0.012"),
         "Skip entries once today's spot high − low exceeds this fraction of spot.",
         D("0.001"), D("0.2")),
    Knob("DC_MIN_VOLUME", int, 100, "Contracts each leg must have traded today.", 0, 100_000_000),
    Knob("DC_MIN_OI", int, 500, "Open interest (contracts) each leg must have.", 0, 100_000_000),
    Knob("DC_BREAKEVEN_BUFFER_SD", D, D("0.25"),
         "At entry spot must sit inside the model breakevens at the planned exit by at least this "
         "many near expected moves (else the breakeven exit would fire on the first wiggle).",
         D("0"), D("2")),
    Knob("DC_MAX_SPREAD_OF_TARGET", D, D("0.30"),
         "Refuse when the whole structure's round-trip bid-ask exceeds this share of the profit "
         "target in rupees.", D("0"), D("5")),
    Knob("DC_PROFIT_TARGET_PCT", D, D("0.15"),
         "Close at this profit (net of costs) as a fraction of the debit when the far leg is the "
         "next weekly (±1 SD best case at the planned exit: median 25 % for Feb-2025 entries 3-4 "
         "sessions before near expiry).", D("0.01"), D("5")),
    Knob("DC_PROFIT_TARGET_PCT_MONTHLY", D, D("0.10"),
         "Close at this profit (net of costs) as a fraction of the debit when the far leg is the "
         "monthly (±1 SD best case at the planned exit: median 17 %, Feb 2025).", D("0.01"), D("5")),
    Knob("DC_STOP_LOSS_PCT", D, D("0.30"), "Close at this loss (net of costs) as a fraction of the debit.",
         D("0.01"), D("1")),
    Knob("DC_MAX_HOLD_DAYS", int, 5, "Close after this many trading sessions held (entry day = 0).",
         1, 30),
    Knob("DC_EXIT_DAYS_BEFORE_EXPIRY", int, 1,
         "Close the whole structure this many sessions before the near expiry (0 = on the expiry "
         "day at EXPIRY_DAY_EXIT_TIME).", 0, 5),
    Knob("DC_EXIT_TIME", str, "15:00",
         "IST time of the planned exit on the session before near expiry.", choices=_EXIT_TIMES),
    *guard_knobs(NAME),
)
#: every parameter decide/exit_rule read (EXPIRY_DAY_EXIT_TIME is the global monitor knob)
PARAM_KEYS: tuple[str, ...] = (*(k.key for k in KNOBS), "EXPIRY_DAY_EXIT_TIME")
DEFAULTS: Mapping[str, Any] = {**{k.key: k.default for k in KNOBS}, "EXPIRY_DAY_EXIT_TIME": "15:00"}
GRID_SPACE: Mapping[str, tuple[Any, ...]] = {
    "DC_STRIKE_OFFSET_SD": (D("0.5"), D("1.0"), D("1.5")),
    "DC_FAR_EXPIRY": ("next_weekly", "monthly"),
    "DC_MIN_IV_EDGE": (D("0"), D("0.5"), D("1.0")),
    "DC_PROFIT_TARGET_PCT": (D("0.10"), D("0.15"), D("0.20")),
    "DC_STOP_LOSS_PCT": (D("0.20"), D("0.30"), D("0.50")),
}

_DEFAULT_CALENDAR: NseCalendar | None = None


def _calendar(params: Mapping[str, Any] | None) -> NseCalendar:
    """The exchange calendar: ``params["_calendar"]`` (the engine's, with the stored
    holidays) or the built-in NSE list."""
    global _DEFAULT_CALENDAR
    cal = params.get("_calendar") if params else None
    if cal is not None:
        return cal
    if _DEFAULT_CALENDAR is None:
        _DEFAULT_CALENDAR = NseCalendar()
    return _DEFAULT_CALENDAR


def _p(params: Mapping[str, Any], key: str) -> Any:
    if key in params:
        return params[key]
    return DEFAULTS[key]


def _hhmm(params: Mapping[str, Any], key: str) -> time:
    raw = str(_p(params, key))
    try:
        return time.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not an HH:MM time") from None


# ---------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class StructureLeg:
    """One leg of a planned structure: the contract, the entry side, units."""

    option: OptionView
    side: Literal["BUY", "SELL"]
    units: int

    @property
    def entry_price(self) -> Decimal:
        """The touch it opens at: a buy at the ask, a sell at the bid."""
        price = self.option.ask if self.side == "BUY" else self.option.bid
        if price is None:
            raise StructureRefused(f"{_label(self.option)} has no {self.side} touch")
        return price

    @property
    def exit_price(self) -> Decimal:
        """The touch it would close at now (exit-side mark)."""
        mark = exit_mark(self.option, self.side)
        if mark is None:
            raise StructureRefused(f"{_label(self.option)} has no live quote")
        return mark

    def priced(self) -> PricedLeg:
        return PricedLeg(kind="OPT", side=self.side, units=self.units,
                         entry_price=self.entry_price, exit_price=self.exit_price)


@dataclass(frozen=True)
class Structure:
    """A double calendar / double diagonal as it would open now.

    ``debit`` = premium paid at the touch × units + ``entry_charges`` (rupees);
    ``round_trip_charges`` / ``round_trip_spread`` from :mod:`engine.strategies.costs`;
    strikes: ``call_strike`` / ``put_strike`` the near (sold) ones, ``far_*`` the bought ones.
    """

    code: str
    near: date
    far: date
    legs: tuple[StructureLeg, ...]
    debit: Decimal
    entry_charges: Decimal
    round_trip_charges: Decimal
    round_trip_spread: Decimal
    call_strike: Decimal
    put_strike: Decimal
    far_call_strike: Decimal
    far_put_strike: Decimal

    @property
    def units(self) -> int:
        return self.legs[0].units

    @property
    def premium(self) -> Decimal:
        """Net premium paid at the touch (rupees, before charges)."""
        return self.debit - self.entry_charges

    @property
    def diagonal(self) -> bool:
        return (self.far_call_strike, self.far_put_strike) != (self.call_strike, self.put_strike)

    def to_legs(self) -> tuple[Leg, ...]:
        """Order legs, BUY (far) legs first so no short is ever left unhedged."""
        ordered = sorted(self.legs, key=lambda x: 0 if x.side == "BUY" else 1)
        return tuple(Leg(security_id=x.option.security_id, side=Side(x.side), quantity=x.units,
                         kind=InstrumentKind.OPT, option_type=OptionType(x.option.option_type),
                         expiry=x.option.expiry, strike=x.option.strike, price=x.entry_price)
                     for x in ordered)

    def summary(self) -> dict[str, Any]:
        """JSON-able description (battle log, trade context)."""
        return {"code": self.code, "near": self.near.isoformat(), "far": self.far.isoformat(),
                "call_strike": str(self.call_strike), "put_strike": str(self.put_strike),
                "far_call_strike": str(self.far_call_strike),
                "far_put_strike": str(self.far_put_strike), "units": self.units,
                "debit": str(self.debit), "entry_charges": str(self.entry_charges),
                "round_trip_charges": str(self.round_trip_charges),
                "round_trip_spread": str(self.round_trip_spread),
                "legs": [{"security_id": x.option.security_id, "side": x.side,
                          "expiry": x.option.expiry.isoformat(), "strike": str(x.option.strike),
                          "option_type": x.option.option_type, "price": str(x.entry_price)}
                         for x in self.legs]}


def _label(o: OptionView) -> str:
    return f"{o.expiry:%d %b} {o.strike.normalize():f} {o.option_type}"


def sd_code(sd: float | Decimal) -> str:
    """Short variant code of a symmetric offset: 0 → ATM, 1 → 1SD, 1.5 → 15SD."""
    x = float(sd)
    if x == 0:
        return "ATM"
    return f"{x:g}".replace(".", "") + "SD"


def far_expiry(view: MarketView, params: Mapping[str, Any]) -> ExpiryView:
    """The far expiry ``DC_FAR_EXPIRY`` names (refused with the reason when absent)."""
    choice = str(_p(params, "DC_FAR_EXPIRY"))
    if choice == "next_weekly":
        far = view.next_weekly()
    elif choice == "monthly":
        far = view.monthly_after_near()
    else:
        raise StructureRefused(f"DC_FAR_EXPIRY={choice!r}: expected next_weekly or monthly")
    if far is None:
        raise StructureRefused(f"no {choice.replace('_', ' ')} expiry after near in the market data")
    return far


def build(view: MarketView, params: Mapping[str, Any], *, code: str, call_sd: float,
          put_sd: float, far_extra_sd: float = 0.0, far: ExpiryView | None = None) -> Structure:
    """The double calendar (``far_extra_sd`` 0) or double diagonal that opens now.

    Near strikes: nearest listed to spot + ``call_sd`` × EM (CE) and spot − ``put_sd`` × EM
    (PE), EM = the near expected move, ties outward, quoted in both expiries. Far strikes:
    the same, or the far-expiry strikes nearest ± (sd + ``far_extra_sd``) × EM.

    Raises:
        StructureRefused: no near/far expiry, no expected move, no quoted strike, a far
            strike inside the near one, lot sizes that differ, or not a debit.
    """
    if min(call_sd, put_sd, far_extra_sd) < 0:
        raise StructureRefused(
            f"offsets must be ≥ 0 (call_sd={call_sd}, put_sd={put_sd}, far_extra_sd={far_extra_sd})")
    near = view.near
    if near is None:
        raise StructureRefused("no expiry with a session left in the market data")
    if far is None:
        far = far_expiry(view, params)
    if far.expiry <= near.expiry:
        raise StructureRefused(f"far expiry {far.expiry} is not after near {near.expiry}")
    spot = float(view.spot)
    em = near.expected_move(spot)
    if em is None:
        raise StructureRefused(f"near {near.expiry} has no ATM IV: no expected move")
    kc = common_quoted_strike((near, far), spot + call_sd * em, spot, "CE")
    kp = common_quoted_strike((near, far), spot - put_sd * em, spot, "PE")
    if kc is None or kp is None:
        raise StructureRefused(f"no {'CE' if kc is None else 'PE'} strike quoted in both "
                               f"{near.expiry} and {far.expiry}")
    if kp > kc:
        raise StructureRefused(f"put strike {kp} above call strike {kc}")
    if far_extra_sd > 0:
        fkc = far.nearest_strike(spot + (call_sd + far_extra_sd) * em, spot=spot, option_type="CE")
        fkp = far.nearest_strike(spot - (put_sd + far_extra_sd) * em, spot=spot, option_type="PE")
        if fkc is None or fkp is None:
            raise StructureRefused(f"no quoted far strike in {far.expiry} for the diagonal")
        if fkc < kc or fkp > kp:
            raise StructureRefused(f"far strikes {fkp}/{fkc} inside the near strikes {kp}/{kc}")
    else:
        fkc, fkp = kc, kp
    opts = {"nc": near.option(kc, "CE"), "np": near.option(kp, "PE"),
            "fc": far.option(fkc, "CE"), "fp": far.option(fkp, "PE")}
    missing = [k for k, o in opts.items() if o is None or not o.quoted]
    if missing:  # cannot happen after the strike picks; kept as a guard with a reason
        raise StructureRefused(f"legs without a live quote: {missing}")
    units = units_for(int(_p(params, "DC_LOTS")), list(opts.values()))  # type: ignore[arg-type]
    legs = (StructureLeg(opts["fc"], "BUY", units), StructureLeg(opts["fp"], "BUY", units),  # type: ignore[arg-type]
            StructureLeg(opts["nc"], "SELL", units), StructureLeg(opts["np"], "SELL", units))  # type: ignore[arg-type]
    priced = [x.priced() for x in legs]
    premium = sum((x.entry_price * x.units * (1 if x.side == "BUY" else -1) for x in legs), D(0))
    if premium <= 0:
        raise StructureRefused(f"not a debit at the touch (net premium ₹{premium})")
    today = view.today
    entry = side_charges(priced, today)
    return Structure(code=code, near=near.expiry, far=far.expiry, legs=legs, debit=premium + entry,
                     entry_charges=entry, round_trip_charges=round_trip_charges(priced, today),
                     round_trip_spread=round_trip_spread(priced), call_strike=kc, put_strike=kp,
                     far_call_strike=fkc, far_put_strike=fkp)


# ---------------------------------------------------------------------------- richness
def richness(view: MarketView, structure: Structure) -> float | None:
    """Near − far IV in trading time at the near strikes, vol points (None if an IV is missing).

    At K_c the CE of each expiry, at K_p the PE; the two differences averaged. Both
    expiries at the same strike: the far smile of a diagonal does not count.
    """
    near, far = view.expiry(structure.near), view.expiry(structure.far)
    if near is None or far is None:
        return None
    diffs = []
    for k, kind in ((structure.call_strike, "CE"), (structure.put_strike, "PE")):
        n, f = near.option(k, kind), far.option(k, kind)  # type: ignore[arg-type]
        if n is None or f is None:
            return None
        vn = trading_time_iv(n.iv, near.t, near.t_trading)
        vf = trading_time_iv(f.iv, far.t, far.t_trading)
        if vn is None or vf is None:
            return None
        diffs.append(vn - vf)
    return 100.0 * sum(diffs) / len(diffs)


def calendar_time_richness(view: MarketView, structure: Structure) -> float | None:
    """The same spread on the IVs' own calendar basis (for the battle log: it is biased by
    weekends the far expiry spans and the near does not)."""
    near, far = view.expiry(structure.near), view.expiry(structure.far)
    if near is None or far is None:
        return None
    diffs = []
    for k, kind in ((structure.call_strike, "CE"), (structure.put_strike, "PE")):
        n, f = near.option(k, kind), far.option(k, kind)  # type: ignore[arg-type]
        if n is None or f is None or n.iv is None or f.iv is None:
            return None
        diffs.append(n.iv - f.iv)
    return 100.0 * sum(diffs) / len(diffs)


# ---------------------------------------------------------------------------- exits, model
def planned_exit(view: MarketView, structure: Structure, params: Mapping[str, Any]) -> datetime:
    """``DC_EXIT_DAYS_BEFORE_EXPIRY`` sessions before near expiry at ``DC_EXIT_TIME`` (IST);
    with 0, the expiry day at ``EXPIRY_DAY_EXIT_TIME``. Sessions from ``params["_calendar"]``
    (the engine's calendar) or the built-in NSE calendar."""
    n = int(_p(params, "DC_EXIT_DAYS_BEFORE_EXPIRY"))
    cal = _calendar(params)
    d = structure.near
    for _ in range(n):
        d = cal.previous_trading_day(d)
    at = _hhmm(params, "EXPIRY_DAY_EXIT_TIME" if n == 0 else "DC_EXIT_TIME")
    return datetime.combine(d, at, tzinfo=IST)


def profit_target_pct(view: MarketView | None, structure: Structure | None,
                      params: Mapping[str, Any], *, far_kind: str | None = None) -> Decimal:
    """The target fraction for this structure: next weekly far leg → ``DC_PROFIT_TARGET_PCT``,
    a later far leg (the monthly) → ``DC_PROFIT_TARGET_PCT_MONTHLY``."""
    kind = far_kind or _far_kind(view, structure)
    key = "DC_PROFIT_TARGET_PCT" if kind == "next_weekly" else "DC_PROFIT_TARGET_PCT_MONTHLY"
    return D(str(_p(params, key)))


def _far_kind(view: MarketView | None, structure: Structure | None) -> str:
    if view is None or structure is None:
        return "next_weekly"
    after = [e.expiry for e in view.expiries if e.expiry > structure.near]
    return "next_weekly" if after and after[0] == structure.far else "monthly"


def _smile(e: ExpiryView) -> tuple[np.ndarray, np.ndarray]:
    """(ln(K/F), trading-time IV) over the strikes, the OTM side's IV where it has one; once
    per view (one decision reprices hundreds of candidate structures on the same few
    expiries), as read-only arrays."""
    return e.derived("dc_smile", lambda: _compute_smile(e))


def _compute_smile(e: ExpiryView) -> tuple[np.ndarray, np.ndarray]:
    xs, vs = [], []
    for k in e.strikes:
        otm, itm = (e.calls, e.puts) if float(k) >= e.forward else (e.puts, e.calls)
        iv = None
        for side in (otm, itm):
            o = side.get(k)
            if o is not None and o.iv is not None:
                iv = o.iv
                break
        v = trading_time_iv(iv, e.t, e.t_trading)
        if v is not None:
            xs.append(math.log(float(k) / e.forward))
            vs.append(v)
    x, y = np.asarray(xs, dtype=float), np.asarray(vs, dtype=float)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


Sticky = Literal["moneyness", "strike"]


def model_pnl(view: MarketView, structure: Structure, at: datetime,
              spots: Sequence[float] | np.ndarray, *, calendar: NseCalendar | None = None,
              sticky: Sticky = "moneyness") -> np.ndarray:
    """Model P&L (rupees) at ``at`` for each spot: Black-76, smiles held in trading time
    (module docstring), net of the debit, exit charges and half today's spread.

    ``sticky="moneyness"`` (the default, used by every DC rule): a leg at K gets today's
    smile at ln(K/F(S)); ``"strike"``: it keeps today's vol at K whatever the spot.
    """
    if sticky not in ("moneyness", "strike"):
        raise ValueError(f"sticky={sticky!r}: expected 'moneyness' or 'strike'")
    cal = calendar or _calendar(None)
    s = np.atleast_1d(np.asarray(spots, dtype=float))
    spot0 = float(view.spot)
    value = np.zeros_like(s)
    for leg in structure.legs:
        e = view.expiry(leg.option.expiry)
        if e is None:
            raise StructureRefused(f"expiry {leg.option.expiry} not in the market view")
        xs, vs = _smile(e)
        if xs.size == 0:
            raise StructureRefused(f"no IV in the {e.expiry} chain to reprice {_label(leg.option)}")
        t_cal = year_fraction(at, e.expiry)
        t_tr = trading_years(cal, at, e.expiry)
        carry = math.log(e.forward / spot0) / e.t if e.t > 0 else 0.0
        fwd = s * math.exp(carry * t_cal)
        k = float(leg.option.strike)
        x = np.log(k / fwd) if sticky == "moneyness" else np.full_like(s, math.log(k / e.forward))
        sigma = np.interp(x, xs, vs)
        price = black76_price(fwd, k, t_tr, sigma, leg.option.option_type == "CE", 0.0)
        price = price * math.exp(-view.rate * t_cal)
        value += (1 if leg.side == "BUY" else -1) * price * leg.units
    costs = float(structure.debit + (structure.round_trip_charges - structure.entry_charges)
                  + structure.round_trip_spread / 2)
    return value - costs


def _grid(view: MarketView, structure: Structure, scale: float) -> np.ndarray:
    spot = float(view.spot)
    near = view.expiry(structure.near)
    em = near.expected_move(spot) if near is not None else None
    half = scale * max(4.0 * (em or 0.0), 0.03 * spot)
    mid = float(structure.call_strike + structure.put_strike) / 2
    return np.linspace(max(1.0, mid - half), mid + half, 801)


def best_case(view: MarketView, structure: Structure, at: datetime, *,
              calendar: NseCalendar | None = None, sticky: Sticky = "moneyness") -> dict[str, float]:
    """The structure's model P&L at ``at`` with spot at the strikes' midpoint and at the best
    spot, in rupees and as a fraction of the debit."""
    grid = _grid(view, structure, 1.0)
    pnl = model_pnl(view, structure, at, grid, calendar=calendar, sticky=sticky)
    i = int(np.argmax(pnl))
    step = float(grid[1] - grid[0])
    res = minimize_scalar(lambda x: -float(model_pnl(view, structure, at, [x], calendar=calendar,
                                                     sticky=sticky)[0]),
                          bounds=(float(grid[i]) - step, float(grid[i]) + step), method="bounded",
                          options={"xatol": 0.01})
    best_spot, best = (float(res.x), -float(res.fun)) if -res.fun >= pnl[i] else (float(grid[i]), float(pnl[i]))
    mid = float(structure.call_strike + structure.put_strike) / 2
    at_mid = float(model_pnl(view, structure, at, [mid], calendar=calendar, sticky=sticky)[0])
    debit = float(structure.debit)
    return {"mid_spot": mid, "mid_pnl": round(at_mid, 2), "mid_pct": round(at_mid / debit, 4),
            "best_spot": round(best_spot, 2), "best_pnl": round(best, 2),
            "best_pct": round(best / debit, 4)}


def breakevens(view: MarketView, structure: Structure, at: datetime, *,
               calendar: NseCalendar | None = None, sticky: Sticky = "moneyness"
               ) -> tuple[float | None, float | None]:
    """The lowest and highest spot at ``at`` where the model P&L incl. round-trip costs
    crosses 0 (the outer breakevens: near expiry a wide double calendar has two humps and a
    dip between its strikes); ``(None, None)`` when it makes money at no spot.

    Two vectorised :func:`model_pnl` calls: the spot grid (widened until the profitable
    region is inside it), then 64 steps across each bracket with the crossing interpolated
    linearly -- within 0.01 points of a root finder, which would need ten scalar calls.
    """
    for scale in (1.0, 2.0, 4.0):
        grid = _grid(view, structure, scale)
        pnl = model_pnl(view, structure, at, grid, calendar=calendar, sticky=sticky)
        positive = np.flatnonzero(pnl > 0)
        if not positive.size:
            if scale == 1.0:
                return None, None
            continue
        first, last = int(positive[0]), int(positive[-1])
        if first == 0 or last == grid.size - 1:
            continue  # still positive at the edge of the grid: look wider
        sub = np.linspace(0.0, 1.0, _BRACKET_STEPS + 1)
        left = grid[first - 1] + (grid[first] - grid[first - 1]) * sub
        right = grid[last] + (grid[last + 1] - grid[last]) * sub
        fine = model_pnl(view, structure, at, np.concatenate([left, right]), calendar=calendar,
                         sticky=sticky)
        return (round(_crossing(left, fine[:sub.size]), 2),
                round(_crossing(right, fine[sub.size:]), 2))
    return None, None


_BRACKET_STEPS = 64


def _crossing(x: np.ndarray, y: np.ndarray) -> float:
    """Where ``y`` (one sign change on ``x``) crosses 0, linear between the samples."""
    j = int(np.flatnonzero((y[1:] > 0) != (y[:-1] > 0))[0])
    return float(x[j] + (x[j + 1] - x[j]) * y[j] / (y[j] - y[j + 1]))


# ---------------------------------------------------------------------------- filters
def _holds_same(open_trades: Iterable[Any], structure: Structure) -> str | None:
    want = {(x.option.security_id, x.side) for x in structure.legs}
    for t in open_trades or ():
        legs = getattr(t, "legs", ())
        have = set()
        for leg in legs:
            leg = getattr(leg, "leg", leg)  # a Trade's OpenLeg or a plain Leg
            have.add((str(leg.security_id), str(getattr(leg.side, "value", leg.side))))
        if want <= have:
            return str(getattr(t, "tag", "?"))
    return None


def entry_problems(inp: StrategyInput, view: MarketView, structure: Structure,
                   params: Mapping[str, Any], *, guard: str | None = NAME) -> list[str]:
    """Every DC entry filter ``structure`` fails now (empty: it may open).

    ``guard``: whose event-guard knobs apply (``engine.events.guard``); None skips the guard
    (MDC passes its own name: its knobs, the same text as its early gate)."""
    out: list[str] = []
    now = (inp.now or view.now).astimezone(IST)
    start, end = _hhmm(params, "DC_ENTRY_START"), _hhmm(params, "DC_ENTRY_END")
    if not start <= now.time() < end:
        out.append(f"outside the entry window {start:%H:%M}–{end:%H:%M} IST (now {now:%H:%M})")
    near = view.expiry(structure.near)
    far = view.expiry(structure.far)
    if near is None or far is None:
        return [*out, f"expiry {structure.near if near is None else structure.far} not in the market view"]
    lo_dte, hi_dte = int(_p(params, "DC_MIN_NEAR_DTE")), int(_p(params, "DC_MAX_NEAR_DTE"))
    if not lo_dte <= near.dte <= hi_dte:
        out.append(f"near DTE {near.dte} outside [{lo_dte}, {hi_dte}]")
    n_before = int(_p(params, "DC_EXIT_DAYS_BEFORE_EXPIRY"))
    if near.dte <= n_before:
        out.append(f"near DTE {near.dte}: the planned exit ({n_before} session(s) before expiry) "
                   "is today or past")
    elif planned_exit(view, structure, params) <= now:
        out.append("the planned exit time has already passed")
    iv_lo, iv_hi = float(_p(params, "DC_NEAR_IV_MIN")), float(_p(params, "DC_NEAR_IV_MAX"))
    if near.atm_iv is None:
        out.append("near ATM IV unknown")
    elif not iv_lo <= 100 * near.atm_iv <= iv_hi:
        out.append(f"near ATM IV {100 * near.atm_iv:.2f} outside [{iv_lo:g}, {iv_hi:g}]")
    max_range = float(_p(params, "DC_MAX_REALIZED_RANGE_PCT"))
    if view.realized_range is not None and view.realized_range > max_range * float(view.spot):
        out.append(f"realized range {view.realized_range:.0f} pts > {100 * max_range:g} % of spot "
                   f"({max_range * float(view.spot):.0f} pts)")
    if guard is not None:
        out.extend(event_blocks(guard, input_events(inp), now, structure.near, _calendar(params),
                                params))
    if inp.entries_paused_reason:
        out.append(f"risk paused: {inp.entries_paused_reason}")
    slots = inp.slots or {}
    for key in ("dc_family", NAME):
        slot = slots.get(key)
        if slot is None:
            if key == "dc_family":
                out.append("dc_family slot use unknown (no slots in the input)")
            continue
        used, limit = int(slot.get("used", 0)), int(slot.get("limit", 0))
        if used >= limit:
            out.append(f"{key} slots full ({used}/{limit})")
    dup = _holds_same(inp.open_trades, structure)
    if dup:
        out.append(f"the same structure is already open ({dup})")
    rich = richness(view, structure)
    edge = float(_p(params, "DC_MIN_IV_EDGE"))
    if rich is None:
        out.append("richness unknown: an IV is missing at the traded strikes")
    elif rich < edge:
        out.append(f"front not rich: near − far IV {round(rich, 2) + 0.0:+.2f} vol pts (trading time) < "
                   f"DC_MIN_IV_EDGE {edge:g}")
    out.extend(_liquidity_problems(view, structure, params))
    if near.dte > n_before:
        out.extend(_model_problems(view, structure, params))
    return out


def _model_problems(view: MarketView, structure: Structure, params: Mapping[str, Any]) -> list[str]:
    """The breakeven exit must not fire at once: spot now inside the model breakevens."""
    try:
        lo, hi = breakevens(view, structure, planned_exit(view, structure, params),
                            calendar=_calendar(params))
    except StructureRefused as exc:
        return [f"cannot model the structure: {exc}"]
    spot = float(view.spot)
    if lo is None or hi is None:
        return ["no spot makes money at the planned exit after costs"]
    if not lo <= spot <= hi:
        return [f"spot {spot:.2f} outside the model breakevens {lo:.0f}–{hi:.0f} at the planned "
                "exit: the structure loses if spot stays"]
    near = view.expiry(structure.near)
    em = (near.expected_move(spot) if near is not None else None) or 0.0
    buffer = float(_p(params, "DC_BREAKEVEN_BUFFER_SD")) * em
    room = min(spot - lo, hi - spot)
    if room < buffer:
        return [f"spot {spot:.2f} only {room:.0f} pts inside the model breakevens {lo:.0f}–{hi:.0f} "
                f"(DC_BREAKEVEN_BUFFER_SD needs {buffer:.0f})"]
    return []


def _liquidity_problems(view: MarketView, structure: Structure, params: Mapping[str, Any]) -> list[str]:
    out = []
    min_vol, min_oi = int(_p(params, "DC_MIN_VOLUME")), int(_p(params, "DC_MIN_OI"))
    for x in structure.legs:
        o = x.option
        oi_contracts = o.oi // o.lot_size if o.lot_size else o.oi
        if o.volume < min_vol:
            out.append(f"{_label(o)}: volume {o.volume} < {min_vol} contracts")
        if oi_contracts < min_oi:
            out.append(f"{_label(o)}: OI {oi_contracts} < {min_oi} contracts")
        top = o.ask_qty if x.side == "BUY" else o.bid_qty
        if top is not None and top < x.units:
            out.append(f"{_label(o)}: top-of-book {'ask' if x.side == 'BUY' else 'bid'} quantity "
                       f"{top} < order {x.units}")
    target = profit_target_pct(view, structure, params) * structure.debit
    cap = D(str(_p(params, "DC_MAX_SPREAD_OF_TARGET"))) * target
    if structure.round_trip_spread > cap:
        out.append(f"round-trip spread ₹{structure.round_trip_spread} > "
                   f"{_p(params, 'DC_MAX_SPREAD_OF_TARGET')} × target ₹{target.quantize(D('0.01'))}")
    return out


# ---------------------------------------------------------------------------- decide
def decide(inp: StrategyInput, params: Mapping[str, Any]) -> Decision:
    """Exits for DC's open trades whose rule fires; an entry when every filter passes."""
    if not _p(params, "DC_ENABLED"):
        return Decision(strategy=NAME, eligible=False, reasons=("disabled (DC_ENABLED=false)",))
    view = inp.market
    if view is None:
        return Decision(strategy=NAME, eligible=False, reasons=("no option chains in the market data",))
    exits = []
    for t in inp.open_trades:
        if getattr(t, "strategy", None) != NAME or not hasattr(t, "context"):
            continue  # a plain OpenTradeView carries no fills: the monitor applies exit_rule
        why = exit_rule(t, view, inp.now, params)
        if why:
            exits.append(ExitIntent(strategy=NAME, tag=t.tag, reason=why))
    sd = float(_p(params, "DC_STRIKE_OFFSET_SD"))
    code = sd_code(sd)
    try:
        s = build(view, params, code=code, call_sd=sd, put_sd=sd)
    except StructureRefused as exc:
        return Decision(strategy=NAME, eligible=False, exits=tuple(exits),
                        reasons=(f"no structure: {exc}",), metrics={"variant": code})
    metrics: dict[str, Any] = {"variant": code, **s.summary()}
    rich = richness(view, s)
    cal_rich = calendar_time_richness(view, s)
    metrics["richness_vol_pts"] = None if rich is None else round(rich, 3)
    metrics["richness_calendar_vol_pts"] = None if cal_rich is None else round(cal_rich, 3)
    problems = entry_problems(inp, view, s, params)
    near = view.expiry(s.near)
    metrics["near_dte"] = near.dte if near else None
    metrics["near_atm_iv"] = None if near is None or near.atm_iv is None else round(100 * near.atm_iv, 3)
    far_kind = _far_kind(view, s)
    target_pct = profit_target_pct(view, s, params)
    metrics.update(far_kind=far_kind, profit_target_pct=str(target_pct),
                   profit_target=str((target_pct * s.debit).quantize(D("0.01"))))
    if problems:
        return Decision(strategy=NAME, eligible=True, exits=tuple(exits), reasons=tuple(problems),
                        metrics=metrics)
    cal = _calendar(params)
    exit_at = planned_exit(view, s, params)
    try:
        lo, hi = breakevens(view, s, exit_at, calendar=cal)
        best = best_case(view, s, exit_at, calendar=cal)
    except StructureRefused as exc:
        return Decision(strategy=NAME, eligible=True, exits=tuple(exits),
                        reasons=(f"cannot model the structure: {exc}",), metrics=metrics)
    if lo is None or hi is None:
        return Decision(strategy=NAME, eligible=True, exits=tuple(exits), metrics=metrics,
                        reasons=("no spot makes money at the planned exit after costs "
                                 f"(best case {best['best_pct']:.1%} of the debit)",))
    metrics.update(planned_exit=exit_at.isoformat(), breakevens=[lo, hi], best_case=best)
    context = {**metrics, "near_dte_at_entry": near.dte if near else None,
               "stop_loss_pct": str(_p(params, "DC_STOP_LOSS_PCT")),
               "params": {k: str(_p(params, k)) for k in PARAM_KEYS}}
    local = inp.now.astimezone(IST)
    entry = EntryIntent(
        strategy=NAME, tag=f"{NAME}-{local:%Y%m%d-%H%M%S}", legs=s.to_legs(),
        direction="LONG_CALENDAR", context=context,
        reason=(f"double calendar {code} {s.put_strike.normalize():f}PE/{s.call_strike.normalize():f}CE "
                f"{s.near:%d %b}/{s.far:%d %b}: front rich by {rich:+.2f} vol pts, debit ₹{s.debit}, "
                f"breakevens {lo:.0f}–{hi:.0f} at the planned exit"))
    return Decision(strategy=NAME, eligible=True, entries=(entry,), exits=tuple(exits), metrics=metrics)


# ---------------------------------------------------------------------------- exit rule
def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def exit_rule(trade: Any, market: MarketView | None, now: datetime, params: Mapping[str, Any]) -> str | None:
    """Why this open DC trade must close now, or None.

    Time rules first (they fire even without a live mark): past the near expiry, the
    planned exit (``DC_EXIT_DAYS_BEFORE_EXPIRY`` sessions before near expiry at
    ``DC_EXIT_TIME``; with 0, the expiry day at ``EXPIRY_DAY_EXIT_TIME``), max hold
    (``DC_MAX_HOLD_DAYS`` sessions). Then, only with a live exit-side mark on every leg:
    stop loss, profit target (both net of entry and exit charges, fractions of the debit),
    spot beyond the model breakevens stored at entry.
    """
    local = now.astimezone(IST)
    today = local.date()
    legs = tuple(trade.legs)
    expiries = [x.leg.expiry for x in legs if x.leg.expiry is not None]
    if not expiries:
        return None
    near = min(expiries)
    if near < today:
        return f"past the near expiry {near}: a leg expired while the engine was not watching"
    n_before = int(_p(params, "DC_EXIT_DAYS_BEFORE_EXPIRY"))
    nv = market.expiry(near) if market is not None else None
    left = 0 if near == today else (nv.dte if nv is not None else dte(_calendar(params), today, near))
    if n_before == 0:
        cutoff = _hhmm(params, "EXPIRY_DAY_EXIT_TIME")
        if near == today and local.time() >= cutoff:
            return f"expiry-day exit at {cutoff:%H:%M} (DC_EXIT_DAYS_BEFORE_EXPIRY=0)"
    else:
        cutoff = _hhmm(params, "DC_EXIT_TIME")
        if left < n_before:
            return (f"near expiry {near} is {left} session(s) away: past the planned exit "
                    f"{n_before} session(s) before it")
        if left == n_before and local.time() >= cutoff:
            return (f"planned exit: {n_before} session(s) before near expiry {near:%d %b}, "
                    f"{cutoff:%H:%M}")
    ctx = trade.context or {}
    entry_left = ctx.get("near_dte_at_entry")
    if entry_left is None:
        entry_left = dte(_calendar(params), trade.opened_at.astimezone(IST).date(), near)
    held = int(entry_left) - left
    max_hold = int(_p(params, "DC_MAX_HOLD_DAYS"))
    if held >= max_hold:
        return f"max hold: {held} session(s) held ≥ DC_MAX_HOLD_DAYS {max_hold}"
    if market is None:
        return None
    marks: dict[str, Decimal] = {}
    for x in legs:
        o = market.option_by_id(x.leg.security_id)
        mark = exit_mark(o, x.leg.side.value) if o is not None else None
        if mark is None:
            return None  # no exit fires on a stale mark
        marks[x.leg.security_id] = mark
    debit = sum((x.entry_price * x.leg.quantity * (1 if x.leg.side is Side.BUY else -1) for x in legs),
                D(0)) + trade.entry_charges
    exit_charges = sum((order_charges(kind="OPT", side="SELL" if x.leg.side is Side.BUY else "BUY",
                                      price=marks[x.leg.security_id], quantity=x.leg.quantity,
                                      on=today).total for x in legs), D(0))
    pnl = (trade.gross_pnl(marks) - trade.entry_charges - exit_charges).quantize(D("0.01"))
    if debit > 0:
        stop = D(str(_p(params, "DC_STOP_LOSS_PCT")))
        if pnl <= -stop * debit:
            return (f"stop loss: P&L ₹{pnl} (net of costs) ≤ −{stop} × debit ₹{debit.quantize(D('0.01'))}")
        kind = str(ctx.get("far_kind") or "next_weekly")
        target = profit_target_pct(None, None, params, far_kind=kind)
        if pnl >= target * debit:
            return (f"profit target: P&L ₹{pnl} (net of costs) ≥ {target} × debit "
                    f"₹{debit.quantize(D('0.01'))}")
    be = ctx.get("breakevens") or (None, None)
    lo, hi = (_num(be[0]), _num(be[1])) if len(be) == 2 else (None, None)
    spot = float(market.spot)
    if lo is not None and spot < lo:
        return f"spot {spot:.2f} below the lower model breakeven {lo:.2f}"
    if hi is not None and spot > hi:
        return f"spot {spot:.2f} above the upper model breakeven {hi:.2f}"
    return None
