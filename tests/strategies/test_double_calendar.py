"""DC, the NIFTY options double calendar (engine.strategies.double_calendar): pure tests.

Hand-built chains: Black-76 mids on the parity forward at a stated IV per expiry (the IV is
also given as the source IV), bid/ask = mid ∓ ``half``, 50-point strikes. Monday
2025-02-03 10:00 IST, spot 23000: near 6 Feb (DTE 3), next weekly 13 Feb, monthly 27 Feb.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, time
from decimal import ROUND_DOWN, Decimal

import numpy as np
import pytest

from engine.events.model import MarketEvent
from engine.execution.charges import order_charges
from engine.execution.trades import OpenLeg, Trade
from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_price, year_fraction
from engine.market.snapshot import ChainSide, MarketSnapshot, OptionChain
from engine.messages.legs import Side
from engine.strategies import double_calendar as dc
from engine.strategies.base import OpenTradeView, StrategyInput
from engine.strategies.market_view import (
    MarketView,
    StructureRefused,
    build_market_view,
    trading_years,
)
from engine.timeutil import IST
from tests.market.bhav import nifty_options
from tests.shared_data import require_shared_data

CAL = NseCalendar()
R = 0.065
MON = datetime(2025, 2, 3, 10, 0, tzinfo=IST)
NEAR, NEXT, MONTHLY = date(2025, 2, 6), date(2025, 2, 13), date(2025, 2, 27)
BASE_IDS = {NEAR: 1000, NEXT: 2000, MONTHLY: 3000}
STRIKES = np.arange(22000, 24001, 50.0)
PARAMS = dict(dc.DEFAULTS)
SLOTS = {"dc_family": {"used": 0, "limit": 1}}


def _chain(expiry: date, now: datetime, spot: float, iv, *, half: float = 0.25,
           volume: int = 20_000, oi: int = 1_500_000) -> OptionChain:
    t = year_fraction(now, expiry)
    fwd = spot * math.exp(R * t)
    ivs = np.full(STRIKES.shape, float(iv))
    base = BASE_IDS.get(expiry, 9000)

    def side(call: bool, first: int) -> ChainSide:
        mid = np.maximum(np.round(black76_price(fwd, STRIKES, t, ivs, call, R) / 0.05) * 0.05, 1.0)
        return ChainSide(security_id=first + np.arange(STRIKES.size), ltp=mid, bid=mid - half,
                         ask=mid + half, iv=ivs, oi=np.full(STRIKES.size, oi),
                         volume=np.full(STRIKES.size, volume), prev_close=mid)

    return OptionChain(expiry=expiry, strikes=STRIKES, ce=side(True, base), pe=side(False, base + 500))


def _view(now: datetime = MON, spot: float = 23000.0, ivs=(0.15, 0.12, 0.11),
          expiries=(NEAR, NEXT, MONTHLY), *, realized_range: float | None = 80.0,
          events=(), **chain_kw) -> MarketView:
    chains = tuple(_chain(e, now, spot, iv, **chain_kw) for e, iv in zip(expiries, ivs, strict=True)
                   if year_fraction(now, e) > 0)
    snap = MarketSnapshot(time=now, spot=spot, near_future=None, far_future=None, chains=chains)
    return build_market_view(snap, CAL, realized_range=realized_range, events=events)


def _inp(view: MarketView, *, slots=SLOTS, paused: str | None = None, open_trades=(),
         extra=None) -> StrategyInput:
    return StrategyInput(now=view.now, spot=view.spot, near=None, far=None, market=view,
                         slots=slots, entries_paused_reason=paused, open_trades=open_trades,
                         extra=extra or {})


def _with_option(view: MarketView, security_id: str, **changes) -> MarketView:
    """``view`` with one option's quote fields replaced (everything else identical)."""
    exps = []
    for e in view.expiries:
        calls = {k: replace(o, **changes) if o.security_id == security_id else o
                 for k, o in e.calls.items()}
        puts = {k: replace(o, **changes) if o.security_id == security_id else o
                for k, o in e.puts.items()}
        exps.append(replace(e, calls=calls, puts=puts))
    return replace(view, expiries=tuple(exps))


def _one_sd(view: MarketView, params=PARAMS) -> dc.Structure:
    return dc.build(view, params, code="1SD", call_sd=1.0, put_sd=1.0)


def _default(view: MarketView, params=PARAMS) -> dc.Structure:
    """The structure decide builds: ± DC_STRIKE_OFFSET_SD (default 0.5) near expected moves."""
    sd = float(params["DC_STRIKE_OFFSET_SD"])
    return dc.build(view, params, code=dc.sd_code(sd), call_sd=sd, put_sd=sd)


# ---------------------------------------------------------------------------- strikes
def test_strikes_nearest_listed_ties_outward() -> None:
    view = _view()
    em = view.near.expected_move(23000.0)
    assert em == pytest.approx(23000 * 0.15 * math.sqrt(view.near.t))
    # targets 23025 / 22975 sit exactly between two strikes: ties go away from spot
    s = dc.build(view, PARAMS, code="T", call_sd=25 / em, put_sd=25 / em)
    assert (s.put_strike, s.call_strike) == (Decimal("22950.00"), Decimal("23050.00"))
    assert (s.far_put_strike, s.far_call_strike) == (s.put_strike, s.call_strike)
    assert (s.near, s.far) == (NEAR, NEXT)
    # ±1 SD: the nearest listed strikes to spot ± em
    one = _one_sd(view)
    assert one.call_strike == Decimal(round((23000 + em) / 50) * 50)
    assert one.put_strike == Decimal(round((23000 - em) / 50) * 50)


def test_strike_without_quote_in_one_expiry_moves_to_the_next() -> None:
    view = _view()
    em = view.near.expected_move(23000.0)
    first = dc.build(view, PARAMS, code="T", call_sd=25 / em, put_sd=25 / em)
    far_ce = view.expiry(NEXT).option(first.call_strike, "CE")
    near_pe = view.near.option(first.put_strike, "PE")
    holed = _with_option(_with_option(view, far_ce.security_id, bid=None),
                         near_pe.security_id, ask=None)
    s = dc.build(holed, PARAMS, code="T", call_sd=25 / em, put_sd=25 / em)
    # 23050 CE unquoted in 13 Feb and 22950 PE in 6 Feb: the other strike of each tie
    assert (s.put_strike, s.call_strike) == (Decimal("23000.00"), Decimal("23000.00"))


def test_structure_legs_units_debit_and_costs() -> None:
    view = _view()
    s = _one_sd(view)
    fc, fp, nc, np_ = s.legs
    assert [(x.side, x.option.expiry, x.option.option_type) for x in s.legs] == [
        ("BUY", NEXT, "CE"), ("BUY", NEXT, "PE"), ("SELL", NEAR, "CE"), ("SELL", NEAR, "PE")]
    assert {x.units for x in s.legs} == {75}
    premium = (fc.option.ask + fp.option.ask - nc.option.bid - np_.option.bid) * 75
    charges = sum(order_charges(kind="OPT", side=x.side, price=x.entry_price, quantity=75,
                                on=MON.date()).total for x in s.legs)
    assert s.entry_charges == charges and s.debit == premium + charges
    exit_charges = sum(order_charges(kind="OPT", side="SELL" if x.side == "BUY" else "BUY",
                                     price=x.exit_price, quantity=75, on=MON.date()).total
                       for x in s.legs)
    assert s.round_trip_charges == charges + exit_charges
    assert s.round_trip_spread == Decimal("0.50") * 75 * 4   # ₹0.50 wide on each leg
    legs = s.to_legs()
    assert [leg.side for leg in legs] == [Side.BUY, Side.BUY, Side.SELL, Side.SELL]
    assert legs[0].price == fc.option.ask and legs[2].price == nc.option.bid
    assert all(leg.quantity == 75 and leg.strike is not None for leg in legs)


def test_far_expiry_choice_and_double_diagonal() -> None:
    view = _view()
    monthly = _one_sd(view, {**PARAMS, "DC_FAR_EXPIRY": "monthly"})
    assert monthly.far == MONTHLY
    em = view.near.expected_move(23000.0)
    dd = dc.build(view, PARAMS, code="DD", call_sd=1.0, put_sd=1.0, far_extra_sd=0.5)
    assert dd.diagonal and (dd.call_strike, dd.put_strike) == (
        _one_sd(view).call_strike, _one_sd(view).put_strike)
    assert dd.far_call_strike == Decimal(round((23000 + 1.5 * em) / 50) * 50)
    assert dd.far_put_strike == Decimal(round((23000 - 1.5 * em) / 50) * 50)
    # richness is read at the near strikes in both expiries: the diagonal's far smile is not edge
    assert dc.richness(view, dd) == pytest.approx(dc.richness(view, _one_sd(view)))
    given = dc.build(view, PARAMS, code="X", call_sd=1, put_sd=1, far=view.expiry(MONTHLY))
    assert given.far == MONTHLY
    with pytest.raises(StructureRefused, match="not after near"):
        dc.build(view, PARAMS, code="X", call_sd=1, put_sd=1, far=view.near)
    with pytest.raises(StructureRefused, match="no monthly expiry"):
        dc.build(_view(ivs=(0.15, 0.12), expiries=(NEAR, NEXT)), {**PARAMS, "DC_FAR_EXPIRY": "monthly"},
                 code="X", call_sd=1, put_sd=1)


def test_lot_mismatch_is_refused() -> None:
    # 22 Dec 2025: the 23 Dec weekly trades in lots of 65, the 30 Dec monthly still in 75
    now = datetime(2025, 12, 22, 10, 0, tzinfo=IST)
    strikes = np.arange(25000, 27001, 50.0)
    chains = []
    for i, (e, iv) in enumerate(((date(2025, 12, 23), 0.12), (date(2025, 12, 30), 0.11))):
        t, fwd = year_fraction(now, e), 26000 * math.exp(R * year_fraction(now, e))
        sides = []
        for call in (True, False):
            mid = np.maximum(np.round(black76_price(fwd, strikes, t, iv, call, R) / 0.05) * 0.05, 1.0)
            sides.append(ChainSide(security_id=100_000 * (i + 1) + call * 1000 + np.arange(strikes.size),
                                   ltp=mid, bid=mid - 0.25, ask=mid + 0.25, iv=np.full(strikes.size, iv),
                                   oi=np.full(strikes.size, 650_000), volume=np.full(strikes.size, 9000),
                                   prev_close=mid))
        chains.append(OptionChain(expiry=e, strikes=strikes, ce=sides[0], pe=sides[1]))
    view = build_market_view(MarketSnapshot(time=now, spot=26000.0, near_future=None,
                                            far_future=None, chains=tuple(chains)), CAL)
    assert [e.lot_size for e in view.expiries] == [65, 75]
    with pytest.raises(StructureRefused, match="lot sizes differ"):
        _one_sd(view)
    d = dc.decide(_inp(view), PARAMS)
    assert not d.entries and "lot sizes differ" in d.reasons[0]


# ---------------------------------------------------------------------------- richness
def test_richness_in_trading_time_across_a_weekend() -> None:
    """Same variance per trading session in both expiries: calendar time calls the front
    rich (the 13 Feb expiry spans a weekend the 6 Feb one does not), trading time does not."""
    sigma_tr = 0.12
    cal_iv = [sigma_tr * math.sqrt(trading_years(CAL, MON, e) / year_fraction(MON, e))
              for e in (NEAR, NEXT, MONTHLY)]
    assert cal_iv[0] > cal_iv[1] + 0.02
    view = _view(ivs=cal_iv)
    s = _one_sd(view)
    assert dc.calendar_time_richness(view, s) == pytest.approx(100 * (cal_iv[0] - cal_iv[1]))
    assert dc.calendar_time_richness(view, s) > 2.0            # "rich" in calendar time
    assert dc.richness(view, s) == pytest.approx(0.0, abs=1e-9)  # flat in trading time
    problems = dc.entry_problems(_inp(view), view, s, PARAMS)
    assert any(p.startswith("front not rich: near − far IV +0.00") for p in problems)
    # the base chain (15 % near / 12 % far, calendar) is rich in trading time too
    base = _view()
    assert dc.richness(base, _one_sd(base)) == pytest.approx(
        100 * (0.15 * math.sqrt(base.near.t / base.near.t_trading)
               - 0.12 * math.sqrt(base.expiry(NEXT).t / base.expiry(NEXT).t_trading)))


# ---------------------------------------------------------------------------- filters
def test_base_case_passes_every_filter_and_decide_enters() -> None:
    view = _view()
    s = _default(view)
    assert dc.entry_problems(_inp(view), view, s, PARAMS) == []
    d = dc.decide(_inp(view), PARAMS)
    assert d.eligible and d.reasons == () and len(d.entries) == 1
    entry = d.entries[0]
    assert entry.tag == "DC-20250203-100000" and len(entry.tag) <= 20
    assert entry.legs == s.to_legs()
    ctx = json.loads(json.dumps(entry.context))            # JSON-able, as the trade store keeps it
    lo, hi = ctx["breakevens"]
    assert lo < 23000 < hi and float(s.put_strike) - 400 < lo and hi < float(s.call_strike) + 400
    assert ctx["planned_exit"] == "2025-02-05T15:00:00+05:30"
    assert ctx["near_dte_at_entry"] == 3 and ctx["far_kind"] == "next_weekly"
    assert Decimal(ctx["debit"]) == s.debit
    assert d.metrics["richness_vol_pts"] > 0.25


FILTERS = [
    ("window", {"DC_ENTRY_START": "10:15"}, {}, "outside the entry window 10:15–15:00 IST (now 10:00)"),
    ("dte", {"DC_MIN_NEAR_DTE": 4}, {}, "near DTE 3 outside [4, 5]"),
    ("iv band", {"DC_NEAR_IV_MAX": Decimal("14")}, {}, "near ATM IV 15.00 outside [9, 14]"),
    ("realized range", {"DC_MAX_REALIZED_RANGE_PCT": Decimal("0.003")}, {},
     "realized range 80 pts > 0.3 % of spot (69 pts)"),
    ("risk pause", {}, {"paused": "daily loss cap hit"}, "risk paused: daily loss cap hit"),
    ("slot", {}, {"slots": {"dc_family": {"used": 1, "limit": 1}}}, "dc_family slots full (1/1)"),
    ("own slot", {}, {"slots": {"dc_family": {"used": 1, "limit": 2}, "DC": {"used": 1, "limit": 1}}},
     "DC slots full (1/1)"),
    ("no slots", {}, {"slots": {}}, "dc_family slot use unknown (no slots in the input)"),
    ("richness", {"DC_MIN_IV_EDGE": Decimal("2")}, {}, "front not rich"),
    ("volume", {"DC_MIN_VOLUME": 30_000}, {}, "13 Feb 23150 CE: volume 20000 < 30000 contracts"),
    ("oi", {"DC_MIN_OI": 30_000}, {}, "13 Feb 23150 CE: OI 20000 < 30000 contracts"),
    ("spread", {"DC_MAX_SPREAD_OF_TARGET": Decimal("0.1")}, {}, "round-trip spread ₹150.00 > 0.1 × target"),
    ("breakeven buffer", {"DC_BREAKEVEN_BUFFER_SD": Decimal("1")}, {}, "spot 23000.00 only "),
]


@pytest.mark.parametrize(("name", "params", "inp_kw", "expected"), FILTERS, ids=[f[0] for f in FILTERS])
def test_each_filter_refuses_with_its_reason(name, params, inp_kw, expected) -> None:
    view = _view()
    s = _default(view)
    problems = dc.entry_problems(_inp(view, **inp_kw), view, s, {**PARAMS, **params})
    assert len(problems) == (4 if name in ("volume", "oi") else 1), problems
    assert problems[0].startswith(expected), problems
    d = dc.decide(_inp(view, **inp_kw), {**PARAMS, **params})
    assert d.entries == () and d.reasons == tuple(problems)


def _event(d: date, hhmm: str | None, impact: str = "HIGH", title: str = "RBI MPC decision",
           kind: str = "RBI_MPC") -> MarketEvent:
    return MarketEvent(date=d, time=None if hhmm is None else time.fromisoformat(hhmm), kind=kind,
                       title=title, impact=impact, country="IN", source="test", source_url="")


def test_event_guard_from_the_view_or_the_input() -> None:
    # Mon 3 Feb 2025, near expiry Thu 6 Feb: the real RBI decision (Fri 7 Feb) is after it
    real_rbi = _event(date(2025, 2, 7), "10:00")
    wpi = _event(date(2025, 2, 4), "12:00", "LOW", "India WPI (Jan 2025)", "IN_WPI")
    view = _view(events=(real_rbi, wpi))
    s = _default(view)
    assert dc.entry_problems(_inp(view), view, s, PARAMS) == []
    # an RBI day tomorrow: blocked from 1 trading day before (DC_EVENT_BLOCK_DAYS_BEFORE)
    tomorrow = _event(date(2025, 2, 4), "10:00")
    assert dc.entry_problems(_inp(_view(events=(tomorrow,))), view, s, PARAMS) == [
        "blocked: RBI MPC decision 2025-02-04 10:00 IST (HIGH) within 1 day "
        "(DC_EVENT_BLOCK_DAYS_BEFORE=1)"]
    # two sessions ahead but before the near expiry: the short near legs would span it
    wed = {"date": "2025-02-05", "time": "10:00", "kind": "RBI_MPC", "title": "RBI MPC decision",
           "impact": "HIGH"}
    plain = _view()
    assert dc.entry_problems(_inp(plain, extra={"events": (wed,)}), plain, s, PARAMS) == [
        "blocked: RBI MPC decision 2025-02-05 10:00 IST (HIGH) before the near expiry 2025-02-06 "
        "(DC_EVENT_BLOCK_NEAR_EXPIRY=true)"]
    off = {**PARAMS, "DC_EVENT_BLOCK_NEAR_EXPIRY": False}
    assert dc.entry_problems(_inp(plain, extra={"events": (wed,)}), plain, s, off) == []
    # MEDIUM events do not block a double calendar by default
    cpi = _event(date(2025, 2, 3), "16:00", "MEDIUM", "India CPI (Jan 2025)", "IN_CPI")
    assert dc.entry_problems(_inp(plain, extra={"events": (cpi,)}), plain, s, PARAMS) == []
    d = dc.decide(_inp(_view(events=(tomorrow,))), PARAMS)
    assert d.entries == () and d.reasons[0].startswith("blocked: RBI MPC decision 2025-02-04")


def test_realized_range_too_wide_and_unknown() -> None:
    wide = _view(realized_range=400.0)
    assert dc.entry_problems(_inp(wide), wide, _default(wide), PARAMS) == [
        "realized range 400 pts > 1.2 % of spot (276 pts)"]
    unknown = _view(realized_range=None)      # no range in the source: the filter cannot judge
    assert dc.entry_problems(_inp(unknown), unknown, _default(unknown), PARAMS) == []


def test_top_of_book_quantity_below_the_order() -> None:
    view = _view()
    s = _default(view)
    far_ce, near_pe = s.legs[0].option, s.legs[3].option
    thin = _with_option(_with_option(view, far_ce.security_id, ask_qty=50, bid_qty=5000),
                        near_pe.security_id, bid_qty=25, ask_qty=10)
    problems = dc.entry_problems(_inp(thin), thin, _default(thin), PARAMS)
    assert problems == ["13 Feb 23150 CE: top-of-book ask quantity 50 < order 75",
                        "06 Feb 22850 PE: top-of-book bid quantity 25 < order 75"]
    deep = _with_option(view, far_ce.security_id, ask_qty=75)   # exactly the order: fine
    assert dc.entry_problems(_inp(deep), deep, _default(deep), PARAMS) == []


def test_single_leg_volume_and_oi_floors() -> None:
    view = _view()
    s = _default(view)
    near_ce = s.legs[2].option
    thin = _with_option(view, near_ce.security_id, volume=40, oi=75 * 300)
    assert dc.entry_problems(_inp(thin), thin, _default(thin), PARAMS) == [
        "06 Feb 23150 CE: volume 40 < 100 contracts", "06 Feb 23150 CE: OI 300 < 500 contracts"]


def test_same_structure_already_open_is_refused() -> None:
    view = _view()
    s = _default(view)
    held = OpenTradeView(tag="MDC-20250203-0930-1SD", strategy="MDC", opened_at=MON,
                         direction="LONG_CALENDAR", legs=s.to_legs())
    problems = dc.entry_problems(_inp(view, open_trades=(held,)), view, s, PARAMS)
    assert problems == ["the same structure is already open (MDC-20250203-0930-1SD)"]


def test_planned_exit_today_refuses_entry_and_uses_the_calendar() -> None:
    wed = _view(datetime(2025, 2, 5, 10, 0, tzinfo=IST))   # near 6 Feb: DTE 1
    s = _default(wed)
    problems = dc.entry_problems(_inp(wed), wed, s, {**PARAMS, "DC_MIN_NEAR_DTE": 1})
    assert problems[0].startswith("near DTE 1: the planned exit (1 session(s) before expiry) is today")
    # 26 Feb 2025 is a holiday: the session before the 27 Feb expiry is 25 Feb
    mon = datetime(2025, 2, 24, 10, 0, tzinfo=IST)
    view = _view(mon, expiries=(MONTHLY, date(2025, 3, 6), date(2025, 3, 27)))
    s = _default(view)
    assert dc.planned_exit(view, s, PARAMS) == datetime(2025, 2, 25, 15, 0, tzinfo=IST)
    assert dc.planned_exit(view, s, {**PARAMS, "DC_EXIT_DAYS_BEFORE_EXPIRY": 0}) == datetime(
        2025, 2, 27, 15, 0, tzinfo=IST)
    assert dc.planned_exit(view, s, {**PARAMS, "DC_EXIT_TIME": "15:15", "_calendar": CAL}) == datetime(
        2025, 2, 25, 15, 15, tzinfo=IST)


def test_disabled_and_no_market() -> None:
    view = _view()
    assert dc.decide(_inp(view), {**PARAMS, "DC_ENABLED": False}).reasons == ("disabled (DC_ENABLED=false)",)
    d = dc.decide(replace(_inp(view), market=None), PARAMS)
    assert not d.eligible and d.reasons == ("no option chains in the market data",)


# ---------------------------------------------------------------------------- model
def test_model_breakevens_are_zero_crossings_and_bracket_the_best_spot() -> None:
    view = _view()
    s = _default(view)
    at = dc.planned_exit(view, s, PARAMS)
    lo, hi = dc.breakevens(view, s, at)
    pnl = dc.model_pnl(view, s, at, [lo, hi, lo - 50, hi + 50])
    assert abs(pnl[0]) < 1.0 and abs(pnl[1]) < 1.0 and pnl[2] < 0 and pnl[3] < 0
    best = dc.best_case(view, s, at)
    assert lo < best["best_spot"] < hi and best["best_pnl"] >= best["mid_pnl"]
    assert best["best_pct"] == pytest.approx(best["best_pnl"] / float(s.debit), abs=1e-4)
    # far from every strike only discounted intrinsic value on each expiry's forward is left
    # (deep ITM puts: the far put is worth less than the near one by the carry between them)
    costs = float(s.debit + s.round_trip_charges - s.entry_charges + s.round_trip_spread / 2)
    for far_spot in (15000.0, 31000.0):
        value = 0.0
        for x in s.legs:
            e = view.expiry(x.option.expiry)
            t = year_fraction(at, e.expiry)
            fwd = far_spot * math.exp(math.log(e.forward / 23000.0) / e.t * t)
            w = 1 if x.option.option_type == "CE" else -1
            intrinsic = max(w * (fwd - float(x.option.strike)), 0.0) * math.exp(-R * t)
            value += (1 if x.side == "BUY" else -1) * intrinsic * 75
        assert dc.model_pnl(view, s, at, [far_spot])[0] == pytest.approx(value - costs, rel=1e-6)
    # at the near expiry close the near legs are intrinsic: the P&L at the call strike is the
    # far call's and far put's model value minus the costs
    close = datetime(2025, 2, 6, 15, 30, tzinfo=IST)
    k = float(s.call_strike)
    e = view.expiry(NEXT)
    at_k = dc.model_pnl(view, s, close, [k], sticky="strike")[0]
    t_cal, t_tr = year_fraction(close, NEXT), trading_years(CAL, close, NEXT)
    fwd = k * math.exp(math.log(e.forward / 23000.0) / e.t * t_cal)
    sig = 0.12 * math.sqrt(e.t / e.t_trading)
    far_value = (black76_price(fwd, k, t_tr, sig, True, 0.0)
                 + black76_price(fwd, float(s.put_strike), t_tr, sig, False, 0.0)) * math.exp(-R * t_cal)
    near_intrinsic = 0.0 + max(float(s.put_strike) - k, 0.0)
    assert at_k == pytest.approx((far_value - near_intrinsic) * 75 - costs, rel=1e-6)
    with pytest.raises(ValueError, match="sticky"):
        dc.model_pnl(view, s, at, [23000.0], sticky="delta")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- exits
def _trade(view: MarketView, params=PARAMS) -> Trade:
    d = dc.decide(_inp(view), params)
    assert d.entries, d.reasons
    e = d.entries[0]
    legs = tuple(OpenLeg(leg, leg.price, order_charges(kind="OPT", side=leg.side.value,
                                                        price=leg.price, quantity=leg.quantity,
                                                        on=view.today).total) for leg in e.legs)
    return Trade(tag=e.tag, strategy="DC", mode="paper", trade_date=view.today,
                 opened_at=view.now, legs=legs, direction=e.direction,
                 context=json.loads(json.dumps(dict(e.context))))


def _debit(trade: Trade) -> Decimal:
    return sum((x.entry_price * x.leg.quantity * (1 if x.leg.side is Side.BUY else -1)
                for x in trade.legs), Decimal(0)) + trade.entry_charges


def _shift_far_bids(view: MarketView, trade: Trade, rupees: Decimal) -> MarketView:
    for x in trade.legs:
        if x.leg.side is Side.BUY:
            o = view.option_by_id(x.leg.security_id)
            view = _with_option(view, o.security_id, bid=o.bid + rupees, ask=o.ask + rupees)
    return view


def test_exit_profit_target_and_stop_loss_net_of_costs() -> None:
    view = _view()
    trade = _trade(view)
    assert dc.exit_rule(trade, view, MON, PARAMS) is None      # just opened: nothing fires
    debit = _debit(trade)
    per_leg = ((Decimal("0.15") * debit + 400) / (2 * 75)).quantize(Decimal("0.05"))
    up = _shift_far_bids(view, trade, per_leg)
    assert dc.exit_rule(trade, up, MON, PARAMS) == (
        f"profit target: P&L ₹{_net(trade, up)} (net of costs) ≥ 0.15 × debit ₹{debit}")
    # the monthly target applies when the far leg was the monthly
    monthly_ctx = replace(trade, context={**trade.context, "far_kind": "monthly"})
    assert dc.exit_rule(monthly_ctx, up, MON, {**PARAMS, "DC_PROFIT_TARGET_PCT_MONTHLY": Decimal("5")}) is None
    down = _shift_far_bids(view, trade, -((Decimal("0.30") * debit) / (2 * 75)).quantize(Decimal("0.05")))
    why = dc.exit_rule(trade, down, MON, PARAMS)
    assert why == f"stop loss: P&L ₹{_net(trade, down)} (net of costs) ≤ −0.30 × debit ₹{debit}"
    assert dc.exit_rule(trade, down, MON, {**PARAMS, "DC_STOP_LOSS_PCT": Decimal("0.5")}) is None
    # the exit charges count: a loss that reaches the stop only with them still fires
    gross = _net(trade, down, exit_charges=False)
    edge = (-_net(trade, down) / debit).quantize(Decimal("0.000001"), rounding=ROUND_DOWN)
    assert -gross < edge * debit <= -_net(trade, down)
    assert dc.exit_rule(trade, down, MON, {**PARAMS, "DC_STOP_LOSS_PCT": edge}).startswith("stop loss")


def _net(trade: Trade, view: MarketView, *, exit_charges: bool = True) -> Decimal:
    """P&L closing every leg at its exit-side mark, after entry (and exit) charges."""
    pnl = -trade.entry_charges
    for x in trade.legs:
        o = view.option_by_id(x.leg.security_id)
        buy = x.leg.side is Side.BUY
        mark = o.bid if buy else o.ask
        pnl += (mark - x.entry_price) * x.leg.quantity * (1 if buy else -1)
        if exit_charges:
            pnl -= order_charges(kind="OPT", side="SELL" if buy else "BUY", price=mark,
                                 quantity=x.leg.quantity, on=view.today).total
    return pnl.quantize(Decimal("0.01"))


def test_exit_spot_beyond_the_model_breakevens_from_entry() -> None:
    view = _view()
    trade = _trade(view)
    lo, hi = trade.context["breakevens"]
    above = replace(view, spot=Decimal(str(round(hi + 5, 2))))
    assert dc.exit_rule(trade, above, MON, PARAMS) == (
        f"spot {hi + 5:.2f} above the upper model breakeven {hi:.2f}")
    below = replace(view, spot=Decimal(str(round(lo - 5, 2))))
    assert dc.exit_rule(trade, below, MON, PARAMS).startswith("spot ") and "below the lower" in (
        dc.exit_rule(trade, below, MON, PARAMS))
    inside = replace(view, spot=Decimal(str(round((lo + hi) / 2, 2))))
    assert dc.exit_rule(trade, inside, MON, PARAMS) is None


def test_stale_mark_fires_no_price_rule() -> None:
    view = _view()
    trade = _trade(view)
    crash = _shift_far_bids(view, trade, Decimal("-50"))
    crash = replace(crash, spot=Decimal("21000"))
    assert dc.exit_rule(trade, crash, MON, PARAMS).startswith("stop loss")
    near_ce = next(x for x in trade.legs if x.leg.side is Side.SELL)
    stale = _with_option(crash, near_ce.leg.security_id, ask=None)
    assert dc.exit_rule(trade, stale, MON, PARAMS) is None
    gone = replace(crash, expiries=tuple(replace(e, calls={k: o for k, o in e.calls.items()
                                                           if o.security_id != near_ce.leg.security_id})
                                         for e in crash.expiries))
    assert dc.exit_rule(trade, gone, MON, PARAMS) is None


NO_PRICE_RULES = {**PARAMS, "DC_PROFIT_TARGET_PCT": Decimal("5"), "DC_STOP_LOSS_PCT": Decimal("1")}


def _timed(trade: Trade) -> Trade:
    """The trade without breakevens: only the time rules can fire."""
    return replace(trade, context={k: v for k, v in trade.context.items() if k != "breakevens"})


def test_exit_planned_session_before_near_expiry() -> None:
    trade = _timed(_trade(_view()))
    before = datetime(2025, 2, 5, 14, 59, tzinfo=IST)
    at = datetime(2025, 2, 5, 15, 0, tzinfo=IST)
    assert dc.exit_rule(trade, _view(before), before, NO_PRICE_RULES) is None
    assert dc.exit_rule(trade, _view(at), at, NO_PRICE_RULES) == (
        "planned exit: 1 session(s) before near expiry 06 Feb, 15:00")
    # missed it (engine down): on the expiry day it closes at once
    thu = datetime(2025, 2, 6, 9, 20, tzinfo=IST)
    assert dc.exit_rule(trade, _view(thu), thu, NO_PRICE_RULES).startswith(
        "near expiry 2025-02-06 is 0 session(s) away: past the planned exit")
    # without a market view the calendar counts the sessions
    assert dc.exit_rule(trade, None, at, NO_PRICE_RULES).startswith("planned exit")
    fri = datetime(2025, 2, 7, 10, 0, tzinfo=IST)
    assert dc.exit_rule(trade, _view(fri), fri, NO_PRICE_RULES).startswith("past the near expiry 2025-02-06")


def test_expiry_day_exit_only_when_configured() -> None:
    trade = _timed(_trade(_view()))
    zero = {**NO_PRICE_RULES, "DC_EXIT_DAYS_BEFORE_EXPIRY": 0, "EXPIRY_DAY_EXIT_TIME": "15:10"}
    wed = datetime(2025, 2, 5, 15, 0, tzinfo=IST)
    assert dc.exit_rule(trade, _view(wed), wed, zero) is None
    early = datetime(2025, 2, 6, 15, 5, tzinfo=IST)
    assert dc.exit_rule(trade, _view(early), early, zero) is None
    late = datetime(2025, 2, 6, 15, 10, tzinfo=IST)
    assert dc.exit_rule(trade, _view(late), late, zero) == (
        "expiry-day exit at 15:10 (DC_EXIT_DAYS_BEFORE_EXPIRY=0)")


def test_exit_max_hold_in_sessions() -> None:
    trade = _timed(_trade(_view()))
    tue = datetime(2025, 2, 4, 10, 0, tzinfo=IST)
    assert dc.exit_rule(trade, _view(tue), tue, NO_PRICE_RULES) is None
    assert dc.exit_rule(trade, _view(tue), tue, {**NO_PRICE_RULES, "DC_MAX_HOLD_DAYS": 1}) == (
        "max hold: 1 session(s) held ≥ DC_MAX_HOLD_DAYS 1")
    legacy = replace(trade, context={})       # no entry DTE stored: the calendar counts it
    assert dc.exit_rule(legacy, _view(tue), tue, {**NO_PRICE_RULES, "DC_MAX_HOLD_DAYS": 1}).startswith("max hold")


def test_decide_emits_exits_for_its_own_trades() -> None:
    view = _view()
    trade = _trade(view)
    debit = _debit(trade)
    down = _shift_far_bids(view, trade, -((Decimal("0.40") * debit) / (2 * 75)).quantize(Decimal("0.05")))
    other = replace(trade, tag="MDC-20250203-0930-1SD", strategy="MDC")
    d = dc.decide(_inp(down, open_trades=(trade, other),
                       slots={"dc_family": {"used": 2, "limit": 2}}), PARAMS)
    assert [x.tag for x in d.exits] == [trade.tag] and d.exits[0].reason.startswith("stop loss")
    assert "dc_family slots full (2/2)" in d.reasons


def test_knobs_grid_and_param_keys() -> None:
    keys = [k.key for k in dc.KNOBS]
    assert len(keys) == len(set(keys)) and set(dc.PARAM_KEYS) == {*keys, "EXPIRY_DAY_EXIT_TIME"}
    for k in dc.KNOBS:
        assert k.coerce(k.render(k.default)) == k.default and k.description
    by_key = {k.key: k for k in dc.KNOBS}
    for key, values in dc.GRID_SPACE.items():
        assert all(by_key[key].coerce(by_key[key].render(v)) == v for v in values)
    assert dc.sd_code(0) == "ATM" and dc.sd_code(1.0) == "1SD" and dc.sd_code(1.5) == "15SD"


# ---------------------------------------------------------------------------- real file
def _bhav_view(path, expiries) -> MarketView:
    """2025-02-03 closes as a snapshot at 15:30 IST with bid = ask = ClsPric (no spread
    model: the close is the only price the file has), volume = TtlTradgVol (contracts),
    OI = OpnIntrst (units)."""
    rows: dict[date, dict[float, dict[str, dict[str, str]]]] = defaultdict(dict)
    spot = None
    for r in nifty_options(path):
        e = date.fromisoformat(r["XpryDt"])
        if e in expiries:
            spot = float(r["UndrlygPric"])
            rows[e].setdefault(float(r["StrkPric"]), {})[r["OptnTp"]] = r
    chains = []
    for e, by_k in rows.items():
        ks = sorted(k for k, d in by_k.items() if len(d) == 2)

        def side(kind: str, ks=ks, by_k=by_k) -> ChainSide:
            rr = [by_k[k][kind] for k in ks]
            px = np.array([float(x["ClsPric"]) for x in rr])
            return ChainSide(security_id=[int(x["FinInstrmId"]) for x in rr], ltp=px, bid=px, ask=px,
                             iv=np.full(len(rr), np.nan), oi=[int(x["OpnIntrst"]) for x in rr],
                             volume=[int(x["TtlTradgVol"]) for x in rr],
                             prev_close=[float(x["PrvsClsgPric"]) for x in rr])

        chains.append(OptionChain(expiry=e, strikes=np.array(ks), ce=side("CE"), pe=side("PE")))
    snap = MarketSnapshot(time=datetime(2025, 2, 3, 15, 30, tzinfo=IST), spot=spot,
                          near_future=None, far_future=None, chains=tuple(chains))
    return build_market_view(snap, CAL)


def test_real_bhavcopy_20250203_structure_strikes_and_debit() -> None:
    path = require_shared_data("BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip")
    view = _bhav_view(path, {NEAR, NEXT, date(2025, 2, 20), MONTHLY})
    assert float(view.spot) == 23361.05 and view.near.expiry == NEAR and view.near.dte == 3
    # the expected move from the ATM IV matches the ATM straddle: 23350 CE 134.85 + PE 96.85
    # = 231.70 ≈ 0.798 σ√t F  →  σ√t·spot ≈ 231.70 · √(π/2) = 290.4
    em = view.near.expected_move(23361.05)
    assert em == pytest.approx(231.70 * math.sqrt(math.pi / 2), rel=0.02)
    # ±1 SD: targets 23361.05 ± em ≈ 23649 / 23073 → 23650 CE and 23050 PE (nearest listed)
    assert abs(23361.05 + em - 23650) < 25 and abs(23361.05 - em - 23050) < 25
    s = _one_sd(view)
    assert (s.put_strike, s.call_strike, s.near, s.far) == (Decimal("23050.00"), Decimal("23650.00"), NEAR, NEXT)
    # file rows (ClsPric): 13-Feb 23650 CE 106.95, 13-Feb 23050 PE 97.05 (bought);
    #                      06-Feb 23650 CE  25.90, 06-Feb 23050 PE 30.10 (sold)
    # premium = (106.95 + 97.05 − 25.90 − 30.10) × 75 = 148.00 × 75 = ₹11 100.00
    rows = [("BUY", "106.95"), ("BUY", "97.05"), ("SELL", "25.90"), ("SELL", "30.10")]
    assert [(x.side, str(x.entry_price)) for x in s.legs] == rows
    assert [x.option.security_id for x in s.legs] == ["51237", "51193", "44970", "44923"]
    charges = sum(order_charges(kind="OPT", side=side, price=Decimal(p), quantity=75,
                                on=date(2025, 2, 3)).total for side, p in rows)
    assert s.premium == Decimal("11100.00") and s.debit == Decimal("11100.00") + charges
    assert s.round_trip_spread == 0                         # bid = ask = close
    # with the monthly (27-Feb 23650 CE 223.50, 23050 PE 181.30):
    # (223.50 + 181.30 − 25.90 − 30.10) × 75 = 348.80 × 75 = ₹26 160.00
    m = _one_sd(view, {**PARAMS, "DC_FAR_EXPIRY": "monthly"})
    assert m.far == MONTHLY and m.premium == Decimal("26160.00")
    # the front is not rich in trading time (it looks rich in calendar time)
    assert dc.richness(view, s) < 0 < dc.calendar_time_richness(view, s)
    at = dc.planned_exit(view, s, PARAMS)
    assert at == datetime(2025, 2, 5, 15, 0, tzinfo=IST)
    lo, hi = dc.breakevens(view, s, at)
    best = dc.best_case(view, s, at)
    assert lo < best["best_spot"] < hi and best["best_pct"] > 0
    assert float(s.put_strike) < lo < float(view.spot) + 100 and float(s.call_strike) < hi
    inp = StrategyInput(now=view.now, spot=view.spot, near=None, far=None, market=view, slots=SLOTS)
    # ±1 SD: with the put skew the lower model breakeven sits above spot, so the breakeven
    # exit would fire at once: refused
    assert f"spot 23361.05 outside the model breakevens {lo:.0f}–{hi:.0f} at the planned exit: " \
        "the structure loses if spot stays" in dc.entry_problems(inp, view, s, PARAMS)
    # the default ±0.5 SD: targets 23361.05 ± em/2 ≈ 23505 / 23217 → 23500 CE, 23200 PE;
    # (13-Feb 23500 CE 167.20 + 23200 PE 138.80 − 06-Feb 23500 CE 60.85 − 23200 PE 53.45) × 75
    # = 191.70 × 75 = ₹14 377.50
    half = _default(view)
    assert (half.put_strike, half.call_strike) == (Decimal("23200.00"), Decimal("23500.00"))
    half_rows = [("BUY", "167.20"), ("BUY", "138.80"), ("SELL", "60.85"), ("SELL", "53.45")]
    assert [(x.side, str(x.entry_price)) for x in half.legs] == half_rows
    assert half.debit == Decimal("14377.50") + sum(
        order_charges(kind="OPT", side=side, price=Decimal(p), quantity=75, on=date(2025, 2, 3)).total
        for side, p in half_rows)
    d = dc.decide(inp, PARAMS)
    assert d.entries == () and d.eligible and d.metrics["call_strike"] == "23500.00"
    assert d.reasons[0] == "outside the entry window 09:30–15:00 IST (now 15:30)"
    assert d.reasons[1].startswith("front not rich: near − far IV -") and len(d.reasons) == 2
