"""IC, the iron-condor fallback (engine.strategies.iron_condor): pure, on hand-built chains
and on the real 2025-02-03 bhavcopy."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from datetime import date, datetime, time
from decimal import Decimal

import numpy as np
import pytest

from engine.execution.charges import order_charges
from engine.execution.trades import OpenLeg, Trade
from engine.market.calendar import NseCalendar
from engine.market.iv import implied_vol_black76
from engine.market.pricing import black76_greeks, black76_price, year_fraction
from engine.market.snapshot import ChainSide, MarketSnapshot, OptionChain
from engine.messages.legs import OptionType, Side
from engine.strategies import iron_condor as ic
from engine.strategies.base import OpenTradeView, StrategyInput
from engine.strategies.market_view import MarketView, OptionView, build_market_view
from engine.timeutil import IST
from tests.market.bhav import nifty_options
from tests.shared_data import SHARED_DATA, require_shared_data

CAL = NseCalendar()
R = 0.065
NOW = datetime(2025, 2, 3, 11, 0, tzinfo=IST)       # Monday: the 6 Feb weekly is DTE 3
NEAR, NEXT = date(2025, 2, 6), date(2025, 2, 13)
STRIKES = [float(k) for k in range(22000, 24001, 50)]
WHY = "no DC variant with edge"                      # MDC's early-return reason


def _params(**over) -> dict:
    p = ic.defaults()
    p.update(over)
    return p


def _closes(rv: float, n: int = 20) -> list[float]:
    """n+1 closes whose n log returns alternate ±a: sample stdev a·√(n/(n−1)), so RV = rv."""
    a = rv / math.sqrt(252) * math.sqrt((n - 1) / n)
    px = [23000.0]
    for i in range(n):
        px.append(px[-1] * math.exp(a if i % 2 == 0 else -a))
    return px


def _tick(x: np.ndarray) -> np.ndarray:
    return np.round(x / 0.05) * 0.05


def _side(base: int, expiry: date, now: datetime, spot: float, iv: float, call: bool,
          spread: float, strikes: list[float]) -> ChainSide:
    t = year_fraction(now, expiry)
    k = np.array(strikes)
    price = black76_price(spot * math.exp(R * t), k, t, iv, call, R)
    bid = np.maximum(0.05, _tick(price - spread / 2))
    ask = bid + spread
    n = k.size
    return ChainSide(security_id=np.arange(base, base + n), ltp=(bid + ask) / 2, bid=bid,
                     ask=ask, iv=np.full(n, np.nan), oi=np.full(n, 75 * 5000),
                     volume=np.full(n, 50_000), prev_close=bid)


def _view(now: datetime = NOW, spot: float = 23000.0, iv: float = 0.13, spread: float = 0.1,
          strikes: list[float] = STRIKES, events=()) -> MarketView:
    """Both weeklies priced by Black-76 at a flat IV on F = spot·e^{rt}; security ids are
    stable across calls (same strikes), so a later view marks an earlier entry."""
    chains = []
    for j, e in enumerate((NEAR, NEXT)):
        if e < now.astimezone(IST).date():
            continue
        base = 10_000 * (j + 1)
        chains.append(OptionChain(
            expiry=e, strikes=np.array(strikes),
            ce=_side(base, e, now, spot, iv, True, spread, strikes),
            pe=_side(base + 5000, e, now, spot, iv, False, spread, strikes)))
    snap = MarketSnapshot(time=now, spot=spot, near_future=None, far_future=None,
                          chains=tuple(chains))
    return build_market_view(snap, CAL, events=events)


def _input(view: MarketView, *, rv: float = 0.08, **kw) -> StrategyInput:
    extra = kw.pop("extra", {"daily_closes": _closes(rv)})
    return StrategyInput(now=view.now, spot=view.spot, near=None, far=None, market=view,
                         extra=extra, **kw)


def _patched(view: MarketView, strike: Decimal, kind: str, **changes) -> MarketView:
    """``view`` with one near-expiry option changed (e.g. its volume or lot size)."""
    exps = []
    for e in view.expiries:
        if e.expiry == view.near.expiry:
            book = dict(e.calls if kind == "CE" else e.puts)
            book[strike] = replace(book[strike], **changes)
            e = replace(e, **({"calls": book} if kind == "CE" else {"puts": book}))
        exps.append(e)
    return MarketView(now=view.now, spot=view.spot, expiries=tuple(exps), events=view.events,
                      realized_range=view.realized_range, rate=view.rate)


def _hand_credit(view: MarketView, sc, sp, wc, wp, units: int) -> tuple[Decimal, Decimal]:
    """(gross, net) credit: sells at the bid, buys at the ask, minus each order's charges."""
    n = view.near
    c = lambda k, kind: n.option(Decimal(k), kind)  # noqa: E731
    gross = (c(sc, "CE").bid + c(sp, "PE").bid - c(wc, "CE").ask - c(wp, "PE").ask) * units
    charges = sum((order_charges(kind="OPT", side=side, price=price, quantity=units,
                                 on=view.today).total
                   for side, price in (("SELL", c(sc, "CE").bid), ("SELL", c(sp, "PE").bid),
                                       ("BUY", c(wc, "CE").ask), ("BUY", c(wp, "PE").ask))),
                  Decimal(0))
    return gross, gross - charges


# ---------------------------------------------------------------------------- entry
def test_enters_sells_the_delta_strikes_buys_the_wings_credit_as_by_hand() -> None:
    view = _view()
    d = ic.decide(_input(view), _params(), mdc_selected_nothing=WHY)
    assert d.eligible and d.reasons == () and len(d.entries) == 1, d.reasons
    e = d.entries[0]
    # short strikes: the OTM quoted strikes whose |delta| (Black-76, parity forward, own IV)
    # is nearest 0.15, computed here independently at the flat 13 % IV on F = spot·e^{rt}
    t = year_fraction(NOW, NEAR)
    f = 23000.0 * math.exp(R * t)
    k = np.array(STRIKES)
    dc = black76_greeks(f, k, t, 0.13, True, 0.0).delta
    dp = black76_greeks(f, k, t, 0.13, False, 0.0).delta
    exp_c = k[k > 23000][np.argmin(np.abs(np.abs(dc[k > 23000]) - 0.15))]
    exp_p = k[k < 23000][np.argmin(np.abs(np.abs(dp[k < 23000]) - 0.15))]
    assert (exp_c, exp_p) == (23300.0, 22750.0)
    sides = [(leg.side, leg.option_type, leg.strike) for leg in e.legs]
    assert sides == [(Side.BUY, OptionType.CE, Decimal("23450.00")),
                     (Side.BUY, OptionType.PE, Decimal("22600.00")),
                     (Side.SELL, OptionType.CE, Decimal("23300.00")),
                     (Side.SELL, OptionType.PE, Decimal("22750.00"))]
    n = view.near
    for leg in e.legs:
        o = n.option(leg.strike, leg.option_type.value)
        assert leg.security_id == o.security_id and leg.quantity == 75 and leg.expiry == NEAR
        assert leg.price == (o.ask if leg.side is Side.BUY else o.bid)   # the touch
    gross, net = _hand_credit(view, 23300, 22750, 23450, 22600, 75)
    s = d.metrics["structure"]
    assert Decimal(s["gross_credit"]) == gross and Decimal(s["credit"]) == net
    assert s["credit_pct_of_width"] == pytest.approx(float(100 * net / (150 * 75)), abs=0.01)
    assert d.metrics["iv_rv_ratio"] == pytest.approx(
        d.metrics["near_atm_iv_trading"] / 0.08, rel=1e-3)
    assert e.tag.startswith("IC-20250203-110000") and len(e.tag) <= 20
    assert e.context["structure"]["credit"] == s["credit"] and e.direction == "SHORT_IRON_CONDOR"


def test_short_pick_ties_go_outward() -> None:
    def opt(k: int, kind: str, delta: float) -> OptionView:
        return OptionView(security_id=f"{kind}{k}", expiry=NEAR, strike=Decimal(k),
                          option_type=kind, bid=Decimal(10), ask=Decimal(11), ltp=None,
                          iv=0.13, delta=delta, lot_size=75)
    # |0.10 - 0.15| == |0.20 - 0.15|: the call farther from spot (23400) wins
    calls = [opt(23300, "CE", 0.20), opt(23400, "CE", 0.10), opt(22900, "CE", 0.15)]
    assert ic.pick_short(calls, 0.15, 23000.0).strike == Decimal(23400)  # ITM 22900 ignored
    puts = [opt(22700, "PE", -0.20), opt(22600, "PE", -0.10)]
    assert ic.pick_short(puts, 0.15, 23000.0).strike == Decimal(22600)
    unquoted = replace(puts[1], bid=None)
    assert ic.pick_short([puts[0], unquoted], 0.15, 23000.0).strike == Decimal(22700)


def test_wing_is_the_nearest_strike_farther_out_when_the_exact_one_is_missing() -> None:
    strikes = [k for k in STRIKES if k not in (23450.0, 22600.0)]     # not listed
    view = _view(strikes=strikes)
    d = ic.decide(_input(view), _params(), mdc_selected_nothing=WHY)
    legs = {(leg.side, leg.option_type): leg.strike for leg in d.entries[0].legs}
    assert legs[(Side.BUY, OptionType.CE)] == Decimal("23500.00")
    assert legs[(Side.BUY, OptionType.PE)] == Decimal("22550.00")
    s = d.metrics["structure"]
    assert (s["call_width"], s["put_width"]) == ("200.00", "200.00")
    # listed but unquoted: also the next one out
    dead = _patched(_view(), Decimal("23450.00"), "CE", bid=None, ask=None)
    wing = ic.pick_wing(dead.near, dead.near.option(Decimal("23300.00"), "CE"), 150)
    assert wing.strike == Decimal("23500.00")
    # nothing farther out: refused with the reason
    edge = ic.pick_wing(dead.near, dead.near.option(Decimal("23950.00"), "CE"), 150)
    assert edge is None


# ---------------------------------------------------------------------------- when considered
def test_ic_only_when_mdc_selected_nothing() -> None:
    inp = _input(_view())
    for nothing in (None, ""):
        d = ic.decide(inp, _params(), mdc_selected_nothing=nothing, mdc_selected="MDC-W1")
        assert not d.eligible and d.entries == ()
        assert d.reasons == ("MDC selected MDC-W1: IC not considered",)
    d = ic.decide(inp, _params(), mdc_selected_nothing=WHY)
    assert d.eligible and d.entries and d.metrics["considered_because"] == WHY


def test_never_on_an_expiry_day_or_the_session_before() -> None:
    wide = _params(IC_MAX_NEAR_DTE=5)
    # Thu 6 Feb: today's weekly expires, near is 13 Feb (DTE 5) — still refused
    exp_day = _view(now=datetime(2025, 2, 6, 11, 0, tzinfo=IST))
    d = ic.decide(_input(exp_day), wide, mdc_selected_nothing=WHY)
    assert d.entries == () and d.reasons == (
        "expiry day (2025-02-06): IC never opens on an expiry day",)
    # Wed 5 Feb: near 6 Feb is DTE 1
    before = _view(now=datetime(2025, 2, 5, 11, 0, tzinfo=IST))
    d = ic.decide(_input(before), wide, mdc_selected_nothing=WHY)
    assert d.entries == () and d.reasons == (
        "near expiry 2025-02-06 is 1 session away: IC never opens on the session before "
        "expiry",)
    with pytest.raises(ValueError, match="IC_MIN_NEAR_DTE"):
        ic.resolve_params(_params(IC_MIN_NEAR_DTE=1))


class _Event:  # any object with the event attributes (a row, a namespace) is read
    date = date(2025, 2, 4)
    time = time(10, 0)
    kind = "RBI_MPC"
    title = "RBI MPC decision"
    impact = "HIGH"


def _reasons(inp: StrategyInput, **over) -> tuple[str, ...]:
    d = ic.decide(inp, _params(**over), mdc_selected_nothing=WHY)
    assert d.entries == () and d.eligible
    assert "structure" in d.metrics          # the structure is still shown
    return d.reasons


def test_each_entry_filter_records_its_reason() -> None:
    view = _view()
    base = _input(view)
    early = _input(_view(now=datetime(2025, 2, 3, 9, 20, tzinfo=IST)))
    assert _reasons(early) == ("outside the IC entry window 09:45-14:30 IST (now 09:20)",)
    assert _reasons(base, IC_MAX_NEAR_DTE=2) == (
        "near DTE 3 outside [IC_MIN_NEAR_DTE 2, IC_MAX_NEAR_DTE 2]",)
    assert _reasons(_input(_view(events=(_Event(),)))) == (
        "blocked: RBI MPC decision 2025-02-04 10:00 IST (HIGH) within 1 day "
        "(IC_EVENT_BLOCK_DAYS_BEFORE=1)",)
    # a MEDIUM event on the day blocks the short-gamma IC (IC_EVENT_BLOCK_MEDIUM)
    assert _reasons(_input(view, extra={"daily_closes": _closes(0.08), "events": [
        {"date": "2025-02-03", "time": "14:00", "kind": "US_CPI", "title": "US CPI (Jan 2025)",
         "impact": "MEDIUM"}]})) == (
        "blocked: US CPI (Jan 2025) 2025-02-03 14:00 IST (MEDIUM) today "
        "(IC_EVENT_BLOCK_MEDIUM=true: short gamma)",)
    # IC does not refuse a near expiry that spans a HIGH event (DC/MDC do) by default
    wed = {"date": "2025-02-05", "time": "10:00", "kind": "RBI_MPC", "title": "RBI MPC decision",
           "impact": "HIGH"}
    assert _reasons(_input(view, extra={"daily_closes": _closes(0.08), "events": [wed]}),
                    IC_EVENT_BLOCK_NEAR_EXPIRY=True) == (
        "blocked: RBI MPC decision 2025-02-05 10:00 IST (HIGH) before the near expiry "
        "2025-02-06 (IC_EVENT_BLOCK_NEAR_EXPIRY=true)",)
    assert _reasons(_input(view, slots={"IC": {"used": 1, "limit": 1}})) == (
        "IC slots full (1/1)",)
    assert _reasons(_input(view, entries_paused_reason="daily loss cap")) == (
        "risk paused: daily loss cap",)
    (why,) = _reasons(_input(view, rv=0.12))
    assert why.startswith("near ATM IV 10.0% (trading time) is 0.83 x the 20-session "
                          "realized vol 12.0%, below IC_MIN_IV_RV_RATIO 1.10"), why
    assert _reasons(_input(view, extra={})) == (
        "realized vol needs 21 daily closes in inp.extra['daily_closes'], got 0",)
    # IV-rank rule: current near ATM IV 13 % against a history of 11-21 %
    hist = [0.11 + 0.10 * i / 29 for i in range(30)]
    (why,) = _reasons(_input(view, extra={"iv_history": hist}), IC_VOL_RULE="IV_RANK")
    assert why == "near ATM IV 13.0% ranks 20 in 30 samples, below IC_MIN_IV_RANK 50"
    d = ic.decide(_input(view, extra={"iv_history": hist}), _params(
        IC_VOL_RULE="IV_RANK", IC_MIN_IV_RANK="10"), mdc_selected_nothing=WHY)
    assert d.entries and d.metrics["iv_rank"] == pytest.approx(20.0, abs=0.5)


def test_liquidity_filters_and_spread_bound() -> None:
    view = _view()
    sc = Decimal("23300.00")
    assert _reasons(_input(_patched(view, sc, "CE", volume=10))) == (
        "short CE 23300 volume 10 below IC_MIN_VOLUME 1000",)
    assert _reasons(_input(_patched(view, sc, "CE", oi=75 * 10))) == (
        "short CE 23300 OI 10 lots below IC_MIN_OI_LOTS 1000",)
    assert _reasons(_input(_patched(view, Decimal("22600.00"), "PE", ask_qty=50))) == (
        "wing PE 22600 top ask quantity 50 below the order's 75",)
    assert ic.decide(_input(_patched(view, sc, "CE", bid_qty=75)), _params(),
                     mdc_selected_nothing=WHY).entries        # enough at the touch
    wide = _input(_view(spread=2.0))
    reasons = _reasons(wide)
    assert any(r.startswith("round-trip spread ₹600.00 exceeds IC_MAX_SPREAD_OF_TARGET 0.25 x")
               for r in reasons), reasons
    assert ic.decide(wide, _params(IC_MAX_SPREAD_OF_TARGET="5"),
                     mdc_selected_nothing=WHY).entries


def test_credit_floor_at_the_boundary() -> None:
    view = _view()
    _, net = _hand_credit(view, 23300, 22750, 23450, 22600, 75)
    pct = net / (150 * 75)
    above = (pct + Decimal("0.001")).quantize(Decimal("0.001"))
    below = (pct - Decimal("0.001")).quantize(Decimal("0.001"))
    (why,) = _reasons(_input(view), IC_MIN_CREDIT_PCT=str(above))
    assert why == (f"credit ₹{net} is {100 * float(pct):.1f} % of the ₹11250.00 wing width, "
                   f"below IC_MIN_CREDIT_PCT {100 * above:.0f} %")
    assert ic.decide(_input(view), _params(IC_MIN_CREDIT_PCT=str(below)),
                     mdc_selected_nothing=WHY).entries


def test_lot_mismatch_is_refused() -> None:
    view = _patched(_view(), Decimal("23450.00"), "CE", lot_size=65)
    (why,) = _reasons_no_structure(_input(view))
    assert why.startswith("structure refused: lot sizes differ across the legs (06 Feb 23450")
    assert "refused rather than left partly unhedged" in why


def _reasons_no_structure(inp: StrategyInput) -> tuple[str, ...]:
    d = ic.decide(inp, _params(), mdc_selected_nothing=WHY)
    assert d.entries == () and "structure" not in d.metrics
    return d.reasons


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="IC parameters missing: IC_LOTS"):
        ic.decide(_input(_view()), {k: v for k, v in _params().items() if k != "IC_LOTS"},
                  mdc_selected_nothing=WHY)
    with pytest.raises(ValueError, match=r"IC_SHORT_DELTA='0\.9' refused"):
        ic.resolve_params(_params(IC_SHORT_DELTA="0.9"))
    with pytest.raises(ValueError, match="entry window is empty"):
        ic.resolve_params(_params(IC_ENTRY_START="14:30", IC_ENTRY_END="10:00"))
    with pytest.raises(ValueError, match="daily close #3 -1 is not a positive"):
        ic.close_to_close_vol([23000, 23100, 23050, -1, 23000], 4)
    assert ic.close_to_close_vol(_closes(0.11), 20) == pytest.approx(0.11, rel=1e-12)


# ---------------------------------------------------------------------------- exits
def _trade(opened: datetime = NOW) -> Trade:
    view = _view(now=opened)
    e = ic.decide(_input(view), _params(), mdc_selected_nothing=WHY).entries[0]
    legs = tuple(OpenLeg(leg, leg.price, order_charges(
        kind="OPT", side=leg.side.value, price=leg.price, quantity=leg.quantity,
        on=opened.date()).total) for leg in e.legs)
    return Trade(tag=e.tag, strategy="IC", mode="paper", trade_date=opened.date(),
                 opened_at=opened, legs=legs, direction=e.direction, context=dict(e.context))


TUE = datetime(2025, 2, 4, 11, 0, tzinfo=IST)       # DTE 2


def _hand_pnl(trade: Trade, view: MarketView) -> Decimal:
    """Exit-side marks (a long at the bid, a short at the ask) less entry and exit charges."""
    pnl = -trade.entry_charges
    for ol in trade.legs:
        o = view.option_by_id(ol.leg.security_id)
        long = ol.leg.side is Side.BUY
        mark = o.bid if long else o.ask
        pnl += (mark - ol.entry_price) * ol.leg.quantity * (1 if long else -1)
        pnl -= order_charges(kind="OPT", side="SELL" if long else "BUY", price=mark,
                             quantity=ol.leg.quantity, on=view.today).total
    return pnl


def test_exit_profit_target_and_stop_on_exit_side_marks() -> None:
    trade = _trade()
    credit = -trade.entry_price * 75 - trade.entry_charges
    assert ic.exit_rule(trade, _view(), NOW, _params()) is None      # just opened
    decayed = _view(now=TUE, iv=0.10)
    pnl = _hand_pnl(trade, decayed)
    assert pnl >= credit / 2
    assert ic.exit_rule(trade, decayed, TUE, _params()) == (
        f"profit target: ₹{pnl} >= 0.50 x the ₹{credit} credit")
    # the same marks under a 95 % target: no exit
    assert ic.exit_rule(trade, decayed, TUE, _params(IC_PROFIT_TARGET_PCT="0.95")) is None
    spiked = _view(now=TUE, iv=0.40)
    loss = -_hand_pnl(trade, spiked)
    assert ic.exit_rule(trade, spiked, TUE, _params()) == (
        f"stop loss: loss ₹{loss} >= 2.0 x the ₹{credit} credit")
    assert ic.exit_rule(trade, _view(now=TUE, iv=0.30), TUE, _params()) is None  # loss < 2x


def test_stop_multiple_is_clamped_to_the_maximum_loss() -> None:
    trade = _trade()
    credit = -trade.entry_price * 75 - trade.entry_charges
    ceiling = (150 * 75 - credit) / credit
    # spot far past the call wing: the condor is at its maximum loss; a 20x stop could never
    # be reached, the clamped one fires
    why = ic.exit_rule(trade, _view(now=TUE, spot=24200.0), TUE, _params(IC_STOP_LOSS_MULT="20"))
    assert why.startswith("stop loss") and (
        f"IC_STOP_LOSS_MULT 20 clamped to the maximum possible loss, "
        f"{ceiling.quantize(Decimal('0.01'))} x" in why), why


def test_exit_spot_through_a_short_strike() -> None:
    trade = _trade()
    p = _params(IC_STOP_LOSS_MULT="6")
    assert ic.exit_rule(trade, _view(now=TUE, spot=23250.0), TUE, p) is None
    assert ic.exit_rule(trade, _view(now=TUE, spot=23300.0), TUE, p) == (
        "spot 23300.00 at or through the short 23300 CE")
    assert ic.exit_rule(trade, _view(now=TUE, spot=22740.0), TUE, p) == (
        "spot 22740.00 at or through the short 22750 PE")


def test_time_and_expiry_exits_fire_without_marks_others_do_not() -> None:
    trade = _trade()
    wed = datetime(2025, 2, 5, 9, 20, tzinfo=IST)
    sc = Decimal("23300.00")
    stale_wed = _patched(_view(now=wed), sc, "CE", bid=None, ask=None)
    assert ic.exit_rule(trade, stale_wed, wed, _params()) == (
        "session before expiry: 2025-02-06 is DTE 1 (IC exits at DTE <= 1)")
    thu = datetime(2025, 2, 6, 9, 20, tzinfo=IST)
    assert ic.exit_rule(trade, _view(now=thu), thu, _params()).startswith("expiry day 2025-02-06")
    fri = datetime(2025, 2, 7, 9, 20, tzinfo=IST)
    assert ic.exit_rule(trade, None, fri, _params()).startswith("past expiry")
    stale_tue = _patched(_view(now=TUE, iv=0.10), sc, "CE", bid=None, ask=None)
    assert ic.exit_rule(trade, stale_tue, TUE, _params()) is None        # target, but stale
    stale_through = _patched(_view(now=TUE, spot=23300.0), sc, "CE", bid=None, ask=None)
    assert ic.exit_rule(trade, stale_through, TUE, _params()) is None
    assert ic.exit_rule(trade, stale_tue, TUE, _params(IC_MAX_HOLD_MINUTES=60)) == (
        "max hold: open 60 minutes or more")
    broken = replace(trade, legs=trade.legs[:3])
    with pytest.raises(ValueError, match="does not have the four legs of an iron condor"):
        ic.exit_rule(broken, _view(now=TUE), TUE, _params())


def test_decide_exits_its_open_trades_on_the_rules_that_need_no_fills() -> None:
    trade = _trade()
    views = (OpenTradeView(tag=trade.tag, strategy="IC", opened_at=trade.opened_at,
                           direction=trade.direction, legs=tuple(x.leg for x in trade.legs)),
             OpenTradeView(tag="MDC-x", strategy="MDC", opened_at=trade.opened_at,
                           direction="", legs=tuple(x.leg for x in trade.legs)))
    wed = _view(now=datetime(2025, 2, 5, 10, 0, tzinfo=IST))
    d = ic.decide(_input(wed, open_trades=views), _params(), mdc_selected_nothing=None,
                  mdc_selected="MDC-x")
    assert [(x.tag, x.reason) for x in d.exits] == [
        (trade.tag, "session before expiry: 2025-02-06 is DTE 1 (IC exits at DTE <= 1)")]
    d = ic.decide(_input(_view(now=TUE, spot=22700.0), open_trades=views), _params(),
                  mdc_selected_nothing=WHY)
    assert [x.reason for x in d.exits] == ["spot 22700.00 at or through the short 22750 PE"]
    assert "IC slots full (1/1)" in d.reasons
    # an IC trade that is not a four-leg condor does not stop the cycle; it is reported
    odd = replace(views[0], tag="IC-odd", legs=views[0].legs[:3])
    d = ic.decide(_input(_view(), open_trades=(odd,)), _params(), mdc_selected_nothing=WHY)
    assert d.exits == () and "IC slots full (1/1)" in d.reasons
    assert d.metrics["exit_check_errors"][0].startswith(
        "IC trade IC-odd does not have the four legs of an iron condor")


# ---------------------------------------------------------------------------- real file
BHAV = "BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip"
CLOSES = "DERIVED_nifty_banknifty_underlying_close_from_udiff_2024-2026.csv"


@pytest.fixture(scope="module")
def real_0203():
    path = require_shared_data(BHAV)
    rows = [r for r in nifty_options(path)
            if (date.fromisoformat(r["XpryDt"]) - date(2025, 2, 3)).days <= 45]
    by: dict[date, dict[float, dict[str, dict]]] = {}
    for r in rows:
        by.setdefault(date.fromisoformat(r["XpryDt"]), {}).setdefault(
            float(r["StrkPric"]), {})[r["OptnTp"]] = r

    def side(ks: dict, strikes: list[float], kind: str) -> ChainSide:
        rr = [ks[k][kind] for k in strikes]
        # bid = ask = the close for traded rows; untraded rows carry a stale close: unquoted
        px = np.array([float(x["ClsPric"]) if int(x["TtlTradgVol"]) > 0 else np.nan for x in rr])
        return ChainSide(security_id=np.array([int(x["FinInstrmId"]) for x in rr]), ltp=px,
                         bid=px, ask=px, iv=np.full(len(rr), np.nan),
                         oi=np.array([int(x["OpnIntrst"]) for x in rr]),
                         volume=np.array([int(x["TtlTradgVol"]) for x in rr]),
                         prev_close=np.array([float(x["PrvsClsgPric"]) for x in rr]))

    chains = []
    for e, ks in by.items():
        strikes = sorted(k for k, d in ks.items() if len(d) == 2)
        chains.append(OptionChain(expiry=e, strikes=np.array(strikes),
                                  ce=side(ks, strikes, "CE"), pe=side(ks, strikes, "PE")))
    now = datetime(2025, 2, 3, 15, 25, tzinfo=IST)   # the closes stand for 15:25 quotes
    snap = MarketSnapshot(time=now, spot=float(rows[0]["UndrlygPric"]), near_future=None,
                          far_future=None, chains=tuple(chains))
    named = {r["FinInstrmNm"]: r for r in rows}
    closes_path = SHARED_DATA / CLOSES
    closes = []
    if closes_path.exists():
        with closes_path.open(encoding="utf-8", newline="") as fh:
            closes = [Decimal(r["nifty_undrlyg_pric"]) for r in csv.DictReader(fh)
                      if date.fromisoformat(r["date"]) < now.date()][-21:]
    return build_market_view(snap, CAL), named, closes


def test_real_bhavcopy_20250203_structure_strikes_and_credit(real_0203) -> None:
    """2025-02-03 close (spot 23361.05), near = 6 Feb weekly (DTE 3), lot 75, quotes = the
    official close on both sides (so the round-trip spread is 0), realized vol from the 20
    daily closes before the day (the derived UndrlygPric file)."""
    view, named, closes = real_0203
    if len(closes) < 21:
        pytest.skip(f"{CLOSES} not found in {SHARED_DATA}")
    inp = StrategyInput(now=view.now, spot=view.spot, near=None, far=None, market=view,
                        extra={"daily_closes": closes})
    window = {"IC_ENTRY_END": "15:30"}
    d = ic.decide(inp, _params(**window), mdc_selected_nothing=WHY)
    # the front was not rich against realized vol that day: IC declines, and says why
    (why,) = d.reasons
    assert why.startswith("near ATM IV 11.3% (trading time) is 0.87 x the 20-session "
                          "realized vol 13.0%"), why
    d = ic.decide(inp, _params(IC_MIN_IV_RV_RATIO="0.80", **window), mdc_selected_nothing=WHY)
    assert d.reasons == () and len(d.entries) == 1
    # the file's rows, by hand (6 Feb weekly, ClsPric):
    #   short CE 23700 19.85 (neighbours 23650 25.90, 23750 15.40); wing CE 23850 9.60
    #   short PE 23050 30.10 (neighbours 23000 24.95, 23100 36.50); wing PE 22900 16.80
    px = {n: named[f"NIFTY25206{n}"]["ClsPric"] for n in (
        "23650CE", "23700CE", "23750CE", "23850CE", "23000PE", "23050PE", "23100PE",
        "22900PE")}
    assert list(px.values()) == ["25.90", "19.85", "15.40", "9.60", "24.95", "30.10", "36.50",
                                 "16.80"]
    sid = {n: named[f"NIFTY25206{n}"]["FinInstrmId"] for n in px}
    legs = d.entries[0].legs
    assert [(leg.side, leg.strike, leg.option_type, leg.price, leg.security_id)
            for leg in legs] == [
        (Side.BUY, Decimal("23850.00"), OptionType.CE, Decimal("9.60"), sid["23850CE"]),
        (Side.BUY, Decimal("22900.00"), OptionType.PE, Decimal("16.80"), sid["22900PE"]),
        (Side.SELL, Decimal("23700.00"), OptionType.CE, Decimal("19.85"), sid["23700CE"]),
        (Side.SELL, Decimal("23050.00"), OptionType.PE, Decimal("30.10"), sid["23050PE"])]
    assert all(leg.quantity == 75 and leg.expiry == date(2025, 2, 6) for leg in legs)
    # the deltas, independently: parity forward K + (C - P)e^{rT} (median over the 3 strikes
    # nearest spot: 23350, 23400, 23300), Black-76 IV from each close, delta at that IV
    t = year_fraction(view.now, date(2025, 2, 6))
    fwd = float(np.median([k + (float(named[f"NIFTY25206{k}CE"]["ClsPric"])
                                - float(named[f"NIFTY25206{k}PE"]["ClsPric"])) * math.exp(R * t)
                           for k in (23350, 23400, 23300)]))
    deltas = {}
    for names, call in ((("23650CE", "23700CE", "23750CE"), True),
                        (("23000PE", "23050PE", "23100PE"), False)):
        ks = np.array([float(n[:5]) for n in names])
        prices = np.array([float(px[n]) for n in names])
        iv = implied_vol_black76(prices, fwd, ks, t, np.full(3, call), R).iv
        deltas[call] = black76_greeks(fwd, ks, t, iv, call, 0.0).delta
        assert np.argmin(np.abs(np.abs(deltas[call]) - 0.15)) == 1   # the middle one
    s = d.metrics["structure"]
    assert s["short_call"]["delta"] == pytest.approx(float(deltas[True][1]), abs=1e-4)
    assert s["short_put"]["delta"] == pytest.approx(float(deltas[False][1]), abs=1e-4)
    assert (s["short_call"]["delta"], s["short_put"]["delta"]) == pytest.approx(
        (0.1385, -0.1625), abs=5e-4)
    # credit: (19.85 + 30.10 - 9.60 - 16.80) x 75 = 23.55 x 75 = 1766.25, less the four orders'
    # charges at the 2025-02-03 rates
    gross = (Decimal("19.85") + Decimal("30.10") - Decimal("9.60") - Decimal("16.80")) * 75
    assert gross == Decimal("1766.25") == Decimal(s["gross_credit"])
    charges = sum((order_charges(kind="OPT", side=sd, price=Decimal(px_), quantity=75,
                                 on=date(2025, 2, 3)).total
                   for sd, px_ in (("BUY", "9.60"), ("BUY", "16.80"), ("SELL", "19.85"),
                                   ("SELL", "30.10"))), Decimal(0))
    assert Decimal(s["credit"]) == gross - charges == Decimal("1666.45")
    assert s["width_rupees"] == "11250.00" and s["credit_pct_of_width"] == 14.81
    assert s["round_trip_spread"] == "0.00" and s["max_loss"] == "9583.55"
