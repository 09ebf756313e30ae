"""IC: the NIFTY short iron condor, the fallback when MDC selects nothing.

Considered only in a cycle where MDC selected nothing (the scanner passes MDC's reason as
``mdc_selected_nothing``), but entered on its **own** rule: a front that is not rich argues
against selling front premium, so IC asks instead whether near implied vol is high against
realized vol.

Entry (every gate that fails is recorded in ``Decision.reasons``; the structure, credit and
vol figures are in ``Decision.metrics`` whenever they can be computed):

* **Vol rule** (``IC_VOL_RULE``):
  ``IV_RV`` — near ATM IV in *trading time* (:func:`~engine.strategies.market_view.trading_time_iv`,
  the same variance per session as the realized figure) ≥ ``IC_MIN_IV_RV_RATIO`` × realized
  vol. Realized vol is the **close-to-close** estimator (:func:`close_to_close_vol`): sample
  standard deviation of the last ``IC_RV_SESSIONS`` daily log returns × √252, from
  ``inp.extra["daily_closes"]`` — NIFTY closes of the sessions *before* today, oldest first
  (the scanner/backtester supplies them; the intraday ``realized_range`` is not used: a part
  session's high − low misses the overnight gaps that near IV prices).
  ``IV_RANK`` — near ATM IV (calendar basis, as ``iv_snapshots`` stores it) ranks ≥
  ``IC_MIN_IV_RANK`` (0–100) within ``inp.extra["iv_history"]`` (past near ATM IVs as
  fractions, at least :data:`IV_RANK_MIN_SAMPLES` of them).
* Near DTE in [``IC_MIN_NEAR_DTE``, ``IC_MAX_NEAR_DTE``]; **never on an expiry day, never
  with near DTE ≤ 1** (the session before expiry); inside ``IC_ENTRY_START`` ≤ t <
  ``IC_ENTRY_END`` IST; no event block (:mod:`engine.events.guard`, ``IC_EVENT_BLOCK_*``:
  HIGH events and, for this short-gamma structure, MEDIUM event days); a free IC slot
  (``IC_SLOTS``; the used count is the larger of ``inp.slots["IC"]["used"]`` and the open IC
  trades, the limit the smaller of ``IC_SLOTS`` and ``inp.slots["IC"]["limit"]``); no risk
  pause.
* **Structure** (near expiry, one lot size, the same units on every leg): SELL the CE and the
  PE whose |delta| is nearest ``IC_SHORT_DELTA`` (Black-76 on the expiry's parity forward at
  the strike's own IV — :attr:`OptionView.delta`), among quoted strikes on the OTM side of
  spot, ties outward; BUY wings ``IC_WING_POINTS`` further out — that strike if listed and
  quoted, else the nearest quoted strike farther out. Width = the wider side (it sets the
  maximum loss).
* **Credit** = (short bids − wing asks) × units − entry charges (``costs.side_charges``).
  Credit floor: credit ≥ ``IC_MIN_CREDIT_PCT`` × width × units. On 39 real NIFTY days in
  ../shared/data (2024-01 … 2026-01, at the close, near DTE ≥ 2) 15-delta shorts with
  150-point wings gave 10.1–22.9 % of width net of charges (median 15.8 %, 10th percentile
  12.3 %), 20-delta/100-point 21.4–31.1 %: the 0.12 default trades most days and refuses
  the thin-premium ones (a ⅓-of-width rule would never trade).
* **Liquidity**: every leg's volume ≥ ``IC_MIN_VOLUME`` contracts and OI ≥ ``IC_MIN_OI_LOTS``
  lots (OI units ÷ lot size), top-of-book quantity ≥ the order's units where quoted, and the
  whole structure's round-trip spread ≤ ``IC_MAX_SPREAD_OF_TARGET`` × the profit target.

Legs go out BUY wings first, then SELL shorts (never an unhedged short).

Exits (:func:`exit_rule`, exit-side marks, net of entry and estimated exit charges):
expiry day / past expiry; near DTE ≤ 1 (the session before expiry); max hold — these fire
even on a stale mark. Then, only with a live quote on every leg: stop when loss ≥ the
effective stop multiple × credit, where the effective multiple is ``IC_STOP_LOSS_MULT``
clamped to the maximum possible loss ((width × units − credit) / credit), so a stop set
beyond what the structure can lose still fires at the worst mark; spot at or through a
short strike; profit ≥ ``IC_PROFIT_TARGET_PCT`` × credit. No adjustments or rolls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from engine.events.guard import event_blocks, guard_knobs, input_events
from engine.execution.trades import Trade
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.settings.registry import Knob, SettingError
from engine.strategies.base import Decision, EntryIntent, ExitIntent, StrategyInput
from engine.strategies.costs import PricedLeg, round_trip_spread, side_charges
from engine.strategies.market_view import (
    ExpiryView,
    MarketView,
    OptionView,
    StructureRefused,
    exit_mark,
    trading_time_iv,
    units_for,
)
from engine.timeutil import IST

__all__ = ["GRID_SPACE", "IV_RANK_MIN_SAMPLES", "KNOBS", "NAME", "PARAM_KEYS", "Condor",
           "build_condor", "close_to_close_vol", "decide", "defaults", "exit_rule", "iv_rank",
           "pick_short", "pick_wing", "resolve_params"]

NAME = "IC"
#: near DTE at or below which IC never opens and an open IC closes (the session before expiry)
EXIT_DTE = 1
#: past near-ATM IV samples needed before an IV rank is trusted
IV_RANK_MIN_SAMPLES = 20
TRADING_SESSIONS_PER_YEAR = 252.0
DIRECTION = "SHORT_IRON_CONDOR"

_CENT = Decimal("0.01")
D = Decimal
_TIMES = tuple(f"{h:02d}:{m:02d}" for h in range(9, 16) for m in range(0, 60, 5)
               if "09:15" <= f"{h:02d}:{m:02d}" <= "15:30")

KNOBS: tuple[Knob, ...] = (
    Knob("IC_ENABLED", bool, True, "Consider the iron-condor fallback in cycles where MDC "
         "selected nothing."),
    Knob("IC_LOTS", int, 1, "Lots per iron-condor leg (every leg the same units).", 1, 50),
    Knob("IC_SLOTS", int, 1, "Open iron condors allowed at once (IC's own slot limit).", 0, 10),
    Knob("IC_VOL_RULE", str, "IV_RV", "Entry vol rule: IV_RV = near ATM IV over close-to-close "
         "realized vol, IV_RANK = near ATM IV rank in the given IV history.",
         choices=("IV_RV", "IV_RANK")),
    Knob("IC_MIN_IV_RV_RATIO", D, D("1.10"), "Enter only when near ATM IV (trading time) is at "
         "least this multiple of realized vol.", D("0.50"), D("5")),
    Knob("IC_RV_SESSIONS", int, 20, "Daily log returns in the close-to-close realized vol.",
         5, 250),
    Knob("IC_MIN_IV_RANK", D, D("50"), "With IC_VOL_RULE=IV_RANK: the near ATM IV rank "
         "(0-100) needed to enter.", D("0"), D("100")),
    Knob("IC_MIN_NEAR_DTE", int, 2, "Fewest trading sessions to near expiry at entry (DTE 1 "
         "and expiry days are always refused).", 2, 30),
    Knob("IC_MAX_NEAR_DTE", int, 4, "Most trading sessions to near expiry at entry.", 2, 30),
    Knob("IC_ENTRY_START", str, "09:45", "IST time from which IC may open.", choices=_TIMES),
    Knob("IC_ENTRY_END", str, "14:30", "IST time from which IC no longer opens.",
         choices=_TIMES),
    Knob("IC_SHORT_DELTA", D, D("0.15"), "|Black-76 delta| targeted by the short CE and PE.",
         D("0.05"), D("0.45")),
    Knob("IC_WING_POINTS", int, 150, "Index points from each short strike out to its wing.",
         50, 1000),
    Knob("IC_MIN_CREDIT_PCT", D, D("0.12"), "Credit floor net of entry charges, as a "
         "fraction of the wing width x units.", D("0.01"), D("0.90")),
    Knob("IC_MIN_VOLUME", int, 1000, "Contracts traded today needed on every leg.",
         0, 100_000_000),
    Knob("IC_MIN_OI_LOTS", int, 1000, "Open interest (in lots) needed on every leg.",
         0, 100_000_000),
    Knob("IC_MAX_SPREAD_OF_TARGET", D, D("0.25"), "Refuse when the structure's round-trip "
         "bid-ask spread exceeds this fraction of the profit target.", D("0"), D("5")),
    Knob("IC_PROFIT_TARGET_PCT", D, D("0.50"), "Close when profit net of charges reaches "
         "this fraction of the credit.", D("0.05"), D("1")),
    Knob("IC_STOP_LOSS_MULT", D, D("2.0"), "Close when loss reaches this multiple of the "
         "credit (clamped to the maximum possible loss so it can fire).", D("0.10"), D("20")),
    Knob("IC_MAX_HOLD_MINUTES", int, 10080, "Close an iron condor held this long (a "
         "backstop: the DTE-1 exit normally comes first).", 15, 60 * 24 * 30),
    *guard_knobs(NAME),
)
#: the event-guard knobs may be left out of ``params`` (their defaults apply)
_OPTIONAL_KEYS = frozenset(k.key for k in guard_knobs(NAME))
PARAM_KEYS: tuple[str, ...] = tuple(k.key for k in KNOBS)
_KNOBS = {k.key: k for k in KNOBS}

GRID_SPACE: Mapping[str, tuple[Any, ...]] = {
    "IC_SHORT_DELTA": (D("0.10"), D("0.15"), D("0.20")),
    "IC_WING_POINTS": (100, 150, 200),
    "IC_MIN_CREDIT_PCT": (D("0.10"), D("0.12"), D("0.15")),
    "IC_MIN_IV_RV_RATIO": (D("1.00"), D("1.10"), D("1.20")),
    "IC_PROFIT_TARGET_PCT": (D("0.40"), D("0.50"), D("0.65")),
    "IC_STOP_LOSS_MULT": (D("1.5"), D("2.0"), D("3.0")),
}


# ---------------------------------------------------------------------------- parameters
def resolve_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every IC parameter checked against its knob (type and bounds) and across knobs.

    Raises:
        ValueError: a key is missing, a value is outside its knob, or the DTE window or the
            entry window is empty.
    """
    missing = [k for k in PARAM_KEYS if k not in params and k not in _OPTIONAL_KEYS]
    if missing:
        raise ValueError(f"IC parameters missing: {', '.join(missing)}")
    out: dict[str, Any] = {}
    for key, knob in _KNOBS.items():
        if key not in params:
            out[key] = knob.default
            continue
        raw = params[key]
        try:
            out[key] = knob.coerce(raw if isinstance(raw, str) else knob.render(raw))
        except SettingError as exc:
            raise ValueError(f"IC parameter {exc}") from None
    if out["IC_MIN_NEAR_DTE"] > out["IC_MAX_NEAR_DTE"]:
        raise ValueError(f"IC_MIN_NEAR_DTE={out['IC_MIN_NEAR_DTE']} is above "
                         f"IC_MAX_NEAR_DTE={out['IC_MAX_NEAR_DTE']}: no DTE can enter")
    if out["IC_ENTRY_START"] >= out["IC_ENTRY_END"]:
        raise ValueError(f"IC_ENTRY_START={out['IC_ENTRY_START']} is not before "
                         f"IC_ENTRY_END={out['IC_ENTRY_END']}: the entry window is empty")
    return out


def defaults() -> dict[str, Any]:
    """The knobs' default values (for tests and the grid search base)."""
    return {k.key: k.default for k in KNOBS}


# ---------------------------------------------------------------------------- vol
def close_to_close_vol(closes: Sequence[Any], sessions: int) -> float:
    """Annualized realized vol: sample stdev of the last ``sessions`` daily log returns × √252.

    Args:
        closes: daily closes, oldest first (at least ``sessions + 1``).
        sessions: the number of returns used.

    Raises:
        ValueError: too few closes, or a close that is not a positive finite number.
    """
    if sessions < 2:
        raise ValueError(f"close_to_close_vol needs at least 2 returns, asked for {sessions}")
    if len(closes) < sessions + 1:
        raise ValueError(f"close_to_close_vol needs {sessions + 1} daily closes, got "
                         f"{len(closes)}")
    px = []
    for i, c in enumerate(closes[-(sessions + 1):]):
        try:
            x = float(c)
        except (TypeError, ValueError):
            raise ValueError(f"daily close #{i} {c!r} is not a number") from None
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"daily close #{i} {c!r} is not a positive finite number")
        px.append(x)
    r = [math.log(b / a) for a, b in pairwise(px)]
    m = sum(r) / len(r)
    var = sum((x - m) ** 2 for x in r) / (len(r) - 1)
    return math.sqrt(var * TRADING_SESSIONS_PER_YEAR)


def iv_rank(current: float, history: Sequence[Any]) -> float | None:
    """Where ``current`` sits in the range of ``history``, 0-100 (None if the range is flat)."""
    vals = []
    for i, h in enumerate(history):
        try:
            x = float(h)
        except (TypeError, ValueError):
            raise ValueError(f"iv_history[{i}] {h!r} is not a number") from None
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"iv_history[{i}] {h!r} is not a positive IV fraction")
        vals.append(x)
    lo, hi = min(vals), max(vals)
    if hi <= lo:
        return None
    return 100.0 * (current - lo) / (hi - lo)


# ---------------------------------------------------------------------------- structure
@dataclass(frozen=True, slots=True, kw_only=True)
class Condor:
    """A priced iron condor on one expiry (entry at the touch: sells at the bid, buys at the ask)."""

    expiry: date
    short_call: OptionView
    short_put: OptionView
    wing_call: OptionView
    wing_put: OptionView
    units: int
    gross_credit: Decimal       # (short bids - wing asks) x units
    entry_charges: Decimal
    round_trip_spread: Decimal  # rupees lost to the bid-ask opening and closing now

    @property
    def credit(self) -> Decimal:
        return self.gross_credit - self.entry_charges

    @property
    def call_width(self) -> Decimal:
        return self.wing_call.strike - self.short_call.strike

    @property
    def put_width(self) -> Decimal:
        return self.short_put.strike - self.wing_put.strike

    @property
    def width(self) -> Decimal:
        """Index points of the wider side (it sets the maximum loss)."""
        return max(self.call_width, self.put_width)

    @property
    def width_rupees(self) -> Decimal:
        return self.width * self.units

    @property
    def credit_pct(self) -> float:
        return float(self.credit / self.width_rupees)

    @property
    def max_loss(self) -> Decimal:
        return self.width_rupees - self.credit

    def legs(self) -> tuple[Leg, ...]:
        """BUY wings first, then SELL shorts; each priced at the touch it opens at."""
        def leg(o: OptionView, side: Side) -> Leg:
            price = o.ask if side is Side.BUY else o.bid
            return Leg(security_id=o.security_id, side=side, quantity=self.units,
                       kind=InstrumentKind.OPT, option_type=OptionType(o.option_type),
                       expiry=o.expiry, strike=o.strike, price=price)
        return (leg(self.wing_call, Side.BUY), leg(self.wing_put, Side.BUY),
                leg(self.short_call, Side.SELL), leg(self.short_put, Side.SELL))

    def metrics(self) -> dict[str, Any]:
        per_unit = self.credit / self.units
        return {
            "expiry": self.expiry.isoformat(), "units": self.units,
            "short_call": _option_metrics(self.short_call),
            "short_put": _option_metrics(self.short_put),
            "wing_call": _option_metrics(self.wing_call),
            "wing_put": _option_metrics(self.wing_put),
            "call_width": str(self.call_width), "put_width": str(self.put_width),
            "width_rupees": str(self.width_rupees.quantize(_CENT)),
            "gross_credit": str(self.gross_credit.quantize(_CENT)),
            "entry_charges": str(self.entry_charges.quantize(_CENT)),
            "credit": str(self.credit.quantize(_CENT)),
            "credit_pct_of_width": round(100 * self.credit_pct, 2),
            "max_loss": str(self.max_loss.quantize(_CENT)),
            "breakevens": [str((self.short_put.strike - per_unit).quantize(_CENT)),
                           str((self.short_call.strike + per_unit).quantize(_CENT))],
            "round_trip_spread": str(self.round_trip_spread.quantize(_CENT)),
        }


def _option_metrics(o: OptionView) -> dict[str, Any]:
    return {"strike": str(o.strike), "security_id": o.security_id,
            "delta": None if o.delta is None else round(o.delta, 4),
            "iv": None if o.iv is None else round(o.iv, 4),
            "bid": str(o.bid), "ask": str(o.ask), "volume": o.volume, "oi": o.oi}


def pick_short(options: Sequence[OptionView], target_delta: float, spot: float
               ) -> OptionView | None:
    """The quoted OTM option (CE above spot, PE below) whose |delta| is nearest
    ``target_delta``; of two equally near, the one farther from spot (ties outward)."""
    best: OptionView | None = None
    best_key: tuple[float, float] | None = None
    for o in options:
        if not o.quoted or o.delta is None:
            continue
        k = float(o.strike)
        if (o.option_type == "CE" and k <= spot) or (o.option_type == "PE" and k >= spot):
            continue
        key = (round(abs(abs(o.delta) - target_delta), 9), -abs(k - spot))
        if best_key is None or key < best_key:
            best, best_key = o, key
    return best


def pick_wing(expiry: ExpiryView, short: OptionView, points: int) -> OptionView | None:
    """The wing ``points`` beyond ``short`` if listed and quoted, else the nearest quoted
    strike farther out (None when there is none)."""
    out = 1 if short.option_type == "CE" else -1
    target = short.strike + out * points
    book = expiry.calls if short.option_type == "CE" else expiry.puts
    farther = [o for o in book.values()
               if o.quoted and out * (o.strike - target) >= 0]
    return min(farther, key=lambda o: abs(o.strike - target), default=None)


def build_condor(near: ExpiryView, spot: Decimal, *, short_delta: float, wing_points: int,
                 lots: int, on: date) -> Condor:
    """The iron condor IC would open on ``near`` now.

    Raises:
        StructureRefused: no short or wing strike, or mismatched lot sizes (the message
            says which, for the battle log).
    """
    s = float(spot)
    sc = pick_short(tuple(near.calls.values()), short_delta, s)
    sp = pick_short(tuple(near.puts.values()), short_delta, s)
    if sc is None or sp is None:
        side = "CE above" if sc is None else "PE below"
        raise StructureRefused(f"no quoted {near.expiry:%d %b} {side} spot with a delta for "
                               "the short leg")
    wc, wp = pick_wing(near, sc, wing_points), pick_wing(near, sp, wing_points)
    if wc is None or wp is None:
        short, sign = (sc, "+") if wc is None else (sp, "-")
        raise StructureRefused(
            f"no quoted {short.option_type} wing at or beyond {short.strike} {sign} "
            f"{wing_points} in the {near.expiry:%d %b} chain")
    units = units_for(lots, (wc, wp, sc, sp))
    priced = _priced_legs(((wc, Side.BUY), (wp, Side.BUY), (sc, Side.SELL), (sp, Side.SELL)),
                          units)
    gross = (sc.bid + sp.bid - wc.ask - wp.ask) * units  # type: ignore[operator]
    return Condor(expiry=near.expiry, short_call=sc, short_put=sp, wing_call=wc, wing_put=wp,
                  units=units, gross_credit=gross, entry_charges=side_charges(priced, on),
                  round_trip_spread=round_trip_spread(priced))


def _priced_legs(legs: Sequence[tuple[OptionView, Side]], units: int) -> tuple[PricedLeg, ...]:
    return tuple(PricedLeg(kind="OPT", side=side.value, units=units,
                           entry_price=(o.ask if side is Side.BUY else o.bid),  # type: ignore[arg-type]
                           exit_price=(o.bid if side is Side.BUY else o.ask))  # type: ignore[arg-type]
                 for o, side in legs)


# ---------------------------------------------------------------------------- decide
def decide(inp: StrategyInput, params: Mapping[str, Any], *,
           mdc_selected_nothing: str | None, mdc_selected: str | None = None) -> Decision:
    """IC's entry (or why none) and exits of its open trades for this cycle.

    Args:
        inp: the cycle's input (``inp.market`` the options view).
        params: the IC_* parameter values (see :data:`KNOBS`).
        mdc_selected_nothing: MDC's reason for selecting nothing this cycle; None (or empty)
            when MDC selected a variant — IC is then not considered.
        mdc_selected: the code of what MDC selected (for the battle-log text), if it did.
    """
    p = resolve_params(params)
    market: MarketView | None = inp.market
    exits, errors = _decide_exits(inp, market, p)
    early = {"exit_check_errors": errors} if errors else {}
    if not mdc_selected_nothing:
        return Decision(strategy=NAME, eligible=False, exits=exits, metrics=early, reasons=(
            f"MDC selected {mdc_selected or 'a variant'}: IC not considered",))
    if not p["IC_ENABLED"]:
        return Decision(strategy=NAME, eligible=False, exits=exits, metrics=early,
                        reasons=("disabled (IC_ENABLED=false)",))
    if market is None:
        return Decision(strategy=NAME, eligible=False, exits=exits, metrics=early,
                        reasons=("no option chains in the market data",))
    local = inp.now.astimezone(IST)
    reasons: list[str] = []
    metrics: dict[str, Any] = {"considered_because": mdc_selected_nothing,
                               "spot": str(market.spot), **early}

    start, end = time.fromisoformat(p["IC_ENTRY_START"]), time.fromisoformat(p["IC_ENTRY_END"])
    if not start <= local.time() < end:
        reasons.append(f"outside the IC entry window {p['IC_ENTRY_START']}-"
                       f"{p['IC_ENTRY_END']} IST (now {local:%H:%M})")
    if market.is_expiry_day:
        reasons.append(f"expiry day ({market.today}): IC never opens on an expiry day")
    near = market.near
    if near is None:
        reasons.append("no listed expiry with DTE >= 1 in the market data")
    else:
        metrics.update(near_expiry=near.expiry.isoformat(), near_dte=near.dte)
        if near.dte <= EXIT_DTE:
            reasons.append(f"near expiry {near.expiry} is {near.dte} session away: IC never "
                           "opens on the session before expiry")
        elif not p["IC_MIN_NEAR_DTE"] <= near.dte <= p["IC_MAX_NEAR_DTE"]:
            reasons.append(f"near DTE {near.dte} outside [IC_MIN_NEAR_DTE "
                           f"{p['IC_MIN_NEAR_DTE']}, IC_MAX_NEAR_DTE {p['IC_MAX_NEAR_DTE']}]")
    reasons.extend(_event_block(inp, market, p, params.get("_calendar")))
    used, limit = _slots(inp, p)
    metrics["slots"] = {"used": used, "limit": limit}
    if used >= limit:
        reasons.append(f"IC slots full ({used}/{limit})")
    if inp.entries_paused_reason:
        reasons.append(f"risk paused: {inp.entries_paused_reason}")

    condor: Condor | None = None
    if near is not None:
        reasons.extend(_vol_rule(inp, near, p, metrics))
        try:
            condor = build_condor(near, market.spot, short_delta=float(p["IC_SHORT_DELTA"]),
                                  wing_points=p["IC_WING_POINTS"], lots=p["IC_LOTS"],
                                  on=local.date())
        except StructureRefused as exc:
            reasons.append(f"structure refused: {exc}")
    if condor is not None:
        metrics["structure"] = condor.metrics()
        reasons.extend(_credit_and_liquidity(condor, p, metrics))
    if reasons:
        return Decision(strategy=NAME, eligible=True, exits=exits, reasons=tuple(reasons),
                        metrics=metrics)
    assert condor is not None
    entry = EntryIntent(
        strategy=NAME, tag=f"{NAME}-{local:%Y%m%d-%H%M%S}", legs=condor.legs(),
        direction=DIRECTION,
        reason=(f"iron condor {condor.wing_put.strike:.0f}/{condor.short_put.strike:.0f} PE - "
                f"{condor.short_call.strike:.0f}/{condor.wing_call.strike:.0f} CE "
                f"{condor.expiry:%d %b}: credit ₹{condor.credit.quantize(_CENT)} "
                f"({100 * condor.credit_pct:.1f} % of width), {metrics.get('vol_rule_text', '')}"
                ).rstrip(", "),
        context={**metrics, "params": {k: p[k] if isinstance(p[k], (bool, int, str))
                                       else str(p[k]) for k in PARAM_KEYS}})
    return Decision(strategy=NAME, eligible=True, entries=(entry,), exits=exits,
                    metrics=metrics)


def _vol_rule(inp: StrategyInput, near: ExpiryView, p: Mapping[str, Any],
              metrics: dict[str, Any]) -> list[str]:
    if near.atm_iv is None:
        return [f"no near ATM IV for {near.expiry} (ATM strike {near.atm_strike} unquoted)"]
    metrics["near_atm_iv"] = round(near.atm_iv, 5)
    iv_t = trading_time_iv(near.atm_iv, near.t, near.t_trading)
    metrics["near_atm_iv_trading"] = None if iv_t is None else round(iv_t, 5)
    if p["IC_VOL_RULE"] == "IV_RANK":
        history = tuple(inp.extra.get("iv_history", ()) or ())
        if len(history) < IV_RANK_MIN_SAMPLES:
            return [f"IV rank needs {IV_RANK_MIN_SAMPLES} past near ATM IVs in "
                    f"inp.extra['iv_history'], got {len(history)}"]
        rank = iv_rank(near.atm_iv, history)
        metrics["iv_rank"] = None if rank is None else round(rank, 2)
        if rank is None:
            return ["IV history is flat: no IV rank"]
        metrics["vol_rule_text"] = f"IV rank {rank:.0f}"
        if rank < float(p["IC_MIN_IV_RANK"]):
            return [f"near ATM IV {near.atm_iv:.1%} ranks {rank:.0f} in {len(history)} samples, "
                    f"below IC_MIN_IV_RANK {p['IC_MIN_IV_RANK']}"]
        return []
    n = p["IC_RV_SESSIONS"]
    closes = tuple(inp.extra.get("daily_closes", ()) or ())
    if len(closes) < n + 1:
        return [f"realized vol needs {n + 1} daily closes in inp.extra['daily_closes'], got "
                f"{len(closes)}"]
    rv = close_to_close_vol(closes, n)
    metrics["realized_vol"] = round(rv, 5)
    if iv_t is None or rv <= 0:
        return ["near ATM IV or realized vol is zero: no IV/RV ratio"]
    ratio = iv_t / rv
    metrics["iv_rv_ratio"] = round(ratio, 4)
    metrics["vol_rule_text"] = f"IV/RV {ratio:.2f}"
    if ratio < float(p["IC_MIN_IV_RV_RATIO"]):
        return [f"near ATM IV {iv_t:.1%} (trading time) is {ratio:.2f} x the {n}-session "
                f"realized vol {rv:.1%}, below IC_MIN_IV_RV_RATIO {p['IC_MIN_IV_RV_RATIO']}"]
    return []


def _credit_and_liquidity(c: Condor, p: Mapping[str, Any], metrics: dict[str, Any]
                          ) -> list[str]:
    reasons = []
    floor = p["IC_MIN_CREDIT_PCT"]
    if c.credit <= 0:
        reasons.append(f"no credit: ₹{c.credit.quantize(_CENT)} after ₹"
                       f"{c.entry_charges.quantize(_CENT)} entry charges")
    elif c.credit < floor * c.width_rupees:
        reasons.append(f"credit ₹{c.credit.quantize(_CENT)} is {100 * c.credit_pct:.1f} % of "
                       f"the ₹{c.width_rupees.quantize(_CENT)} wing width, below "
                       f"IC_MIN_CREDIT_PCT {100 * floor:.0f} %")
    for name, o, side in (("short CE", c.short_call, Side.SELL), ("short PE", c.short_put,
                          Side.SELL), ("wing CE", c.wing_call, Side.BUY),
                          ("wing PE", c.wing_put, Side.BUY)):
        label = f"{name} {o.strike:.0f}"
        if o.volume < p["IC_MIN_VOLUME"]:
            reasons.append(f"{label} volume {o.volume} below IC_MIN_VOLUME {p['IC_MIN_VOLUME']}")
        oi_lots = o.oi // o.lot_size if o.lot_size else 0
        if oi_lots < p["IC_MIN_OI_LOTS"]:
            reasons.append(f"{label} OI {oi_lots} lots below IC_MIN_OI_LOTS "
                           f"{p['IC_MIN_OI_LOTS']}")
        top = o.ask_qty if side is Side.BUY else o.bid_qty
        if top is not None and top < c.units:
            touch = "ask" if side is Side.BUY else "bid"
            reasons.append(f"{label} top {touch} quantity {top} below the order's {c.units}")
    target = p["IC_PROFIT_TARGET_PCT"] * c.credit
    metrics["profit_target"] = str(target.quantize(_CENT))
    bound = p["IC_MAX_SPREAD_OF_TARGET"] * target
    if c.credit > 0 and c.round_trip_spread > bound:
        reasons.append(f"round-trip spread ₹{c.round_trip_spread.quantize(_CENT)} exceeds "
                       f"IC_MAX_SPREAD_OF_TARGET {p['IC_MAX_SPREAD_OF_TARGET']} x the ₹"
                       f"{target.quantize(_CENT)} profit target")
    if c.credit > 0:
        _, eff, _ = _stop_multiple(p["IC_STOP_LOSS_MULT"], c.credit, c.max_loss)
        metrics["stop_loss_mult_effective"] = str(eff.quantize(D("0.0001")))
    return reasons


def _event_block(inp: StrategyInput, market: MarketView, p: Mapping[str, Any],
                 calendar: Any) -> list[str]:
    near = market.near
    return event_blocks(NAME, input_events(inp), inp.now, near.expiry if near else None,
                        calendar if calendar is not None else _default_calendar(), p)


_CAL: list[Any] = []


def _default_calendar() -> Any:
    if not _CAL:
        from engine.market.calendar import NseCalendar

        _CAL.append(NseCalendar())
    return _CAL[0]


def _slots(inp: StrategyInput, p: Mapping[str, Any]) -> tuple[int, int]:
    slot = inp.slots.get(NAME) or {}
    mine = sum(1 for t in inp.open_trades if t.strategy == NAME)
    used = max(int(slot.get("used", 0)), mine)
    limit = int(p["IC_SLOTS"])
    if "limit" in slot:
        limit = min(limit, int(slot["limit"]))
    return used, limit


def _decide_exits(inp: StrategyInput, market: MarketView | None, p: Mapping[str, Any]
                  ) -> tuple[tuple[ExitIntent, ...], list[str]]:
    """Exits of IC's open trades on the rules that need no entry fills (expiry, DTE ≤ 1, max
    hold, spot through a short strike), and the trades that could not be checked; the
    monitor applies :func:`exit_rule` in full."""
    out = []
    out_errors: list[str] = []
    for t in inp.open_trades:
        if t.strategy != NAME:
            continue
        try:
            why = _check_exit(t.tag, [(leg, None) for leg in t.legs], None, t.opened_at,
                              market, inp.now, p)
        except ValueError as exc:
            # not a four-leg condor (an operator's hand): the monitor's exit_rule raises it;
            # one odd trade must not stop this cycle's decision
            why = None
            out_errors.append(str(exc))
        if why:
            out.append(ExitIntent(strategy=NAME, tag=t.tag, reason=why))
    return tuple(out), out_errors


# ---------------------------------------------------------------------------- exits
def exit_rule(trade: Trade, market: MarketView | None, now: datetime,
              params: Mapping[str, Any]) -> str | None:
    """Why this open iron condor must close now, or None.

    Order: past expiry / expiry day; near DTE ≤ 1; max hold (these fire without marks);
    then, only when every leg has a live exit-side quote: stop, spot through a short strike,
    profit target. P&L = exit-side marks − entry fills − entry charges − estimated exit
    charges at the marks; credit = fills net of entry charges.

    Raises:
        ValueError: the trade does not have the four legs of an iron condor.
    """
    p = resolve_params(params)
    return _check_exit(trade.tag, [(ol.leg, ol.entry_price) for ol in trade.legs],
                       trade.entry_charges, trade.opened_at, market, now, p)


def _stop_multiple(mult: Decimal, credit: Decimal, max_loss: Decimal
                   ) -> tuple[Decimal, Decimal, bool]:
    """(configured, effective, clamped): the stop multiple bounded by max loss / credit."""
    ceiling = max_loss / credit
    return mult, min(mult, ceiling), ceiling < mult


def _check_exit(tag: str, legs: Sequence[tuple[Leg, Decimal | None]],
                entry_charges: Decimal | None, opened_at: datetime,
                market: MarketView | None, now: datetime, p: Mapping[str, Any]) -> str | None:
    shorts = {leg.option_type: leg for leg, _ in legs if leg.side is Side.SELL}
    wings = {leg.option_type: leg for leg, _ in legs if leg.side is Side.BUY}
    if (len(legs) != 4 or set(shorts) != {OptionType.CE, OptionType.PE}
            or set(wings) != {OptionType.CE, OptionType.PE}
            or any(leg.strike is None or leg.expiry is None for leg, _ in legs)):
        raise ValueError(f"IC trade {tag} does not have the four legs of an iron condor "
                         "(SELL CE, SELL PE, BUY CE wing, BUY PE wing, each with strike and "
                         "expiry): " + ", ".join(f"{leg.side} {leg.option_type} {leg.strike}"
                                                for leg, _ in legs))
    local = now.astimezone(IST)
    today = local.date()
    for e in sorted({leg.expiry for leg, _ in legs}):  # type: ignore[type-var]
        if e < today:
            return f"past expiry: the {e} legs expired while the trade was open"
        if e == today:
            return f"expiry day {e}: IC closes no later than the session before expiry"
        ev = market.expiry(e) if market is not None else None
        if ev is not None and ev.dte <= EXIT_DTE:
            return f"session before expiry: {e} is DTE {ev.dte} (IC exits at DTE <= {EXIT_DTE})"
    max_hold = int(p["IC_MAX_HOLD_MINUTES"])
    if now - opened_at >= timedelta(minutes=max_hold):
        return f"max hold: open {max_hold} minutes or more"
    if market is None:
        return None
    marks: list[tuple[Leg, Decimal | None, Decimal]] = []
    for leg, entry in legs:
        o = market.option_by_id(leg.security_id)
        mark = exit_mark(o, leg.side.value) if o is not None else None  # type: ignore[arg-type]
        if mark is None:
            return None  # no live quote on a leg: no exit fires on a stale mark
        marks.append((leg, entry, mark))
    sc, sp = shorts[OptionType.CE], shorts[OptionType.PE]
    spot = market.spot
    pnl_reason = None
    if entry_charges is not None and all(entry is not None for _, entry, _ in marks):
        pnl_reason = _pnl_exit(marks, entry_charges, sc, sp, wings, today, p)
        if pnl_reason and pnl_reason.startswith("stop"):
            return pnl_reason
    if spot >= sc.strike:  # type: ignore[operator]
        return f"spot {spot} at or through the short {sc.strike:.0f} CE"
    if spot <= sp.strike:  # type: ignore[operator]
        return f"spot {spot} at or through the short {sp.strike:.0f} PE"
    return pnl_reason


def _pnl_exit(marks: Sequence[tuple[Leg, Decimal | None, Decimal]], entry_charges: Decimal,
              sc: Leg, sp: Leg, wings: Mapping[Any, Leg], today: date,
              p: Mapping[str, Any]) -> str | None:
    gross = Decimal(0)
    credit = -entry_charges
    for leg, entry, mark in marks:
        sign = 1 if leg.side is Side.BUY else -1
        gross += (mark - entry) * leg.quantity * sign  # type: ignore[operator]
        credit -= entry * leg.quantity * sign  # type: ignore[operator]
    exit_charges = side_charges(
        (PricedLeg(kind="OPT", side=leg.side.value, units=leg.quantity,
                   entry_price=entry, exit_price=mark)  # type: ignore[arg-type]
         for leg, entry, mark in marks), today, exit=True)
    pnl = gross - entry_charges - exit_charges
    if credit <= 0:
        return None  # not a credit structure: the credit-based rules have nothing to scale
    units = min(leg.quantity for leg, _, _ in marks)
    width = max(wings[OptionType.CE].strike - sc.strike,  # type: ignore[operator]
                sp.strike - wings[OptionType.PE].strike)  # type: ignore[operator]
    max_loss = width * units - credit
    mult, eff, clamped = _stop_multiple(D(str(p["IC_STOP_LOSS_MULT"])), credit, max_loss)
    stop = eff * credit
    if -pnl >= stop:
        how = (f"IC_STOP_LOSS_MULT {mult} clamped to the maximum possible loss, "
               f"{eff.quantize(D('0.01'))} x" if clamped else f"{mult} x")
        return (f"stop loss: loss ₹{(-pnl).quantize(_CENT)} >= {how} the ₹"
                f"{credit.quantize(_CENT)} credit")
    target = D(str(p["IC_PROFIT_TARGET_PCT"])) * credit
    if pnl >= target:
        return (f"profit target: ₹{pnl.quantize(_CENT)} >= {p['IC_PROFIT_TARGET_PCT']} x the ₹"
                f"{credit.quantize(_CENT)} credit")
    return None
