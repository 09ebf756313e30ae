"""MDC, the double-calendar selector (engine.strategies.mdc): pure tests.

Hand-built chains: Monday 2025-02-03 10:00 IST, spot 23400; near 6 Feb (DTE 3), next weekly
13 Feb, monthly 27 Feb; 50-point strikes 21000–26000. Each expiry is priced with Black-76 on
its forward at a stated ATM IV *per trading year* (converted to the IV's calendar basis)
with one smile in standardized moneyness z = ln(K/F)/(σ√τ) for every expiry,
σ(z) = σ·(1 − 0.04 z + 0.025 z²), so "rich" (the near ATM IV higher) and "no richness" are
exact in trading time; mids on the 0.05 tick, bid/ask = mid ∓ 0.05
(0.05, or 0.1 % of the mid rounded to the tick, the larger), 20 000 contracts traded and 1.5 M units OI per option.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pytest

from engine.execution.trades import OpenLeg, Trade
from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_price, year_fraction
from engine.market.snapshot import ChainSide, MarketSnapshot, OptionChain
from engine.strategies import double_calendar as dc
from engine.strategies import mdc
from engine.strategies import structure_value as sv
from engine.strategies.base import OpenTradeView, StrategyInput
from engine.strategies.market_view import MarketView, StructureRefused, build_market_view, trading_years
from engine.timeutil import IST
from tests.market.bhav import nifty_options
from tests.shared_data import require_shared_data

CAL = NseCalendar()
R = 0.065
MON = datetime(2025, 2, 3, 10, 0, tzinfo=IST)
NEAR, NEXT, MONTHLY = date(2025, 2, 6), date(2025, 2, 13), date(2025, 2, 27)
STRIKES = np.arange(21000.0, 26001.0, 50.0)
SLOTS = {"dc_family": {"used": 0, "limit": 1}}
PARAMS: dict = {}          # every knob at its default (MDC's and DC's)


def _chain(expiry: date, now: datetime, spot: float, iv_trading: float, base: int, *,
           volume: int = 20_000, oi: int = 1_500_000) -> OptionChain:
    t, tt = year_fraction(now, expiry), trading_years(CAL, now, expiry)
    fwd = spot * math.exp(R * t)
    z = np.log(STRIKES / fwd) / (iv_trading * math.sqrt(tt))     # standardized moneyness
    iv = iv_trading * (1 - 0.04 * z + 0.025 * z * z) * math.sqrt(tt / t)

    def side(call: bool, first: int) -> ChainSide:
        mid = np.maximum(np.round(black76_price(fwd, STRIKES, t, iv, call, R) / 0.05) * 0.05, 0.10)
        half = np.maximum(0.05, np.round(0.001 * mid / 0.05) * 0.05)
        return ChainSide(security_id=first + np.arange(STRIKES.size), ltp=mid,
                         bid=np.maximum(mid - half, 0.05), ask=mid + half,
                         iv=np.full(STRIKES.size, np.nan), oi=np.full(STRIKES.size, oi),
                         volume=np.full(STRIKES.size, volume), prev_close=mid)

    return OptionChain(expiry=expiry, strikes=STRIKES, ce=side(True, base), pe=side(False, base + 500))


def _view(near_iv: float, far_iv: float, *, now: datetime = MON, spot: float = 23400.0,
          far_volume: int = 20_000, events=()) -> MarketView:
    chains = (_chain(NEAR, now, spot, near_iv, 1000), _chain(NEXT, now, spot, far_iv, 2000,
                                                             volume=far_volume),
              _chain(MONTHLY, now, spot, far_iv, 3000, volume=far_volume))
    snap = MarketSnapshot(time=now, spot=spot, near_future=None, far_future=None, chains=chains)
    return build_market_view(snap, CAL, realized_range=60.0, events=events)


def _inp(view: MarketView, *, slots=SLOTS, open_trades=(), extra=None, paused=None) -> StrategyInput:
    return StrategyInput(now=view.now, spot=view.spot, near=None, far=None, market=view, slots=slots,
                         open_trades=open_trades, extra=extra or {}, entries_paused_reason=paused)


def _scores(d) -> dict[str, dict]:
    return {v["code"]: v for v in d.metrics["variants"]}


def _built(d) -> dict[str, dict]:
    """The scored variants (a variant DC's builder refused has only its reason)."""
    return {c: v for c, v in _scores(d).items() if "edge_before_pct" in v}


RICH = _view(0.16, 0.13)     # the front 3 vol points rich (ATM, trading time)
FLAT = _view(0.14, 0.14)     # the same smile and ATM IV per trading year in every expiry


@pytest.fixture(scope="module")
def rich():
    """MDC's decision on the rich front with every knob at its default (shared: pure)."""
    return mdc.decide(_inp(RICH), PARAMS)


# ---------------------------------------------------------------------------- selection
def test_rich_front_selects_the_best_variant_net_of_costs(rich) -> None:
    d = rich
    assert list(_scores(d)) == ["ATM", "1SD", "15SD", "DD"]       # every variant recorded
    # with the front this rich, the diagonal's far wings cost less than its near legs
    assert _scores(d)["DD"]["rejected"] == ["not built: not a debit at the touch (net premium ₹-1338.75)"]
    scores = _built(d)
    assert set(scores) == {"ATM", "1SD", "15SD"}
    for code, v in scores.items():
        assert v["edge_before_pct"] > v["edge_after_pct"], code    # costs always count
        cost_pct = 100 * (float(v["round_trip_charges"]) + float(v["round_trip_spread"])) / float(v["debit"])
        assert v["edge_before_pct"] - v["edge_after_pct"] == pytest.approx(cost_pct, abs=0.01)
    passing = {c: v["edge_after_pct"] for c, v in scores.items() if not v["rejected"]}
    assert passing and all(e >= 2.0 for e in passing.values())
    best = max(passing, key=passing.get)
    (entry,) = d.entries
    assert d.metrics["mdc_selected"] == best and d.metrics["early_return"] is None
    assert mdc.selected_nothing_reason(d) is None
    assert entry.strategy == "MDC" and entry.direction == "LONG_CALENDAR"
    code = {"ATM": "A", "DD": "DD"}.get(best, best[:-2])
    assert entry.tag == f"MDC-250203-100000-{code}" and len(entry.tag) <= 20
    # legs: BUY (far) legs before SELL (near) legs, every leg the same units, at the touch
    assert [x.side.value for x in entry.legs] == ["BUY", "BUY", "SELL", "SELL"]
    assert {x.quantity for x in entry.legs} == {75}
    s = scores[best]
    by = {(x.expiry, x.option_type.value, x.side.value): x for x in entry.legs}
    assert by[(NEAR, "CE", "SELL")].strike == Decimal(s["call_strike"])
    assert by[(NEXT, "PE", "BUY")].strike == Decimal(s["far_put_strike"])
    for x in entry.legs:
        o = RICH.option_by_id(x.security_id)
        assert x.price == (o.ask if x.side.value == "BUY" else o.bid)
    # the context DC's exit rule reads, and the MDC selection context for the journal
    ctx = entry.context
    assert ctx["variant"] == best and ctx["far_kind"] == "next_weekly"
    assert ctx["breakevens"] == s["dc_breakevens"] and ctx["near_dte_at_entry"] == 3
    assert {v["code"] for v in ctx["rejected_variants"]} == {"ATM", "1SD", "15SD", "DD"} - {best}
    assert "MDC_MIN_EDGE_PCT" in ctx["params"] and "DC_STOP_LOSS_PCT" in ctx["params"]
    json.dumps(d.metrics)
    json.dumps(ctx)                             # battle log and trade context are JSON


def test_flat_surface_selects_nothing_and_records_every_score() -> None:
    d = mdc.decide(_inp(FLAT), PARAMS)
    assert d.entries == () and d.eligible and d.metrics["mdc_selected"] is None
    scores = _built(d)
    assert set(scores) == {"ATM", "1SD", "15SD", "DD"}
    for code, v in scores.items():
        # known answer: no richness, no edge before costs (the exits cannot make one either)
        assert abs(v["edge_before_pct"]) < 0.15, (code, v["edge_before_pct"])
        assert v["edge_after_pct"] < 0
        assert any(r.startswith(f"{code} ") for r in d.reasons[1:])   # one battle-log line each
    # DC's strike-by-strike richness sees the smile (the same strike is further out in the
    # near's standard deviations) and passes 15SD; the model gives it no edge for it
    assert abs(scores["ATM"]["richness_vol_pts"]) < 0.1 and scores["15SD"]["richness_vol_pts"] > 0.25
    assert not any(r.startswith("front not rich") for r in scores["15SD"]["rejected"])
    assert any(r.startswith("front not rich") for r in scores["ATM"]["rejected"])
    assert d.metrics["early_return"] == "no_edge"
    assert d.reasons[0].startswith("no variant with edge ≥ MDC_MIN_EDGE_PCT 2 % after costs (best ")
    assert mdc.selected_nothing_reason(d) == d.reasons[0]
    # a variant list where no front is rich: the early return says so
    d = mdc.decide(_inp(FLAT), {"MDC_VARIANTS": "ATM"})
    assert d.metrics["early_return"] == "no_richness"
    assert d.reasons[0].startswith("no variant with a rich front (near − far IV, trading time, vol pts: ATM ")


def _widened(view: MarketView, rupees: int) -> MarketView:
    """``view`` with every bid ``rupees`` lower and every ask ``rupees`` higher."""
    def wide(o):
        return replace(o, ask=o.ask + rupees, bid=max(o.bid - rupees, Decimal("0.05")))

    return replace(view, expiries=tuple(
        replace(e, calls={k: wide(o) for k, o in e.calls.items()},
                puts={k: wide(o) for k, o in e.puts.items()}) for e in view.expiries))


def test_edge_shrinks_as_costs_grow_until_nothing_is_selected() -> None:
    params = {"DC_MAX_SPREAD_OF_TARGET": Decimal("5")}     # let the spread through to the score
    runs = [mdc.decide(_inp(_widened(RICH, r)), params) for r in (0, 2, 4)]
    assert runs[0].entries and runs[0].metrics["mdc_selected"] == "ATM"
    for code in ("ATM", "1SD", "15SD"):
        after = [_built(d)[code]["edge_after_pct"] for d in runs]
        spread = [float(_built(d)[code]["round_trip_spread"]) for d in runs]
        assert spread == sorted(spread) and after == sorted(after, reverse=True), (code, after)
        assert after[-1] < after[0] - 5, code
    assert runs[-1].entries == () and runs[-1].metrics["early_return"] == "no_edge"


@pytest.mark.parametrize(("case", "expected", "text"), [
    ("window", "outside_window", "outside the entry window 09:30–15:00 IST (now 09:20)"),
    ("slots", "slots_full", "dc_family slots full (1/1)"),
    ("event", "event_block", "blocked: RBI MPC decision 2025-02-04 10:00 IST (HIGH) within 1 day"),
    ("paused", "risk_paused", "risk paused: 3 losses in a row"),
    ("liquidity", "liquidity", "liquidity: "),
    ("dte", "filters", "DC filters: ATM: near DTE 1 outside [3, 5]"),
])
def test_early_returns_name_the_reason_and_keep_every_score(case: str, expected: str, text: str) -> None:
    view, kw, params = RICH, {}, PARAMS
    if case == "window":
        view = _view(0.16, 0.13, now=datetime(2025, 2, 3, 9, 20, tzinfo=IST))
    elif case == "slots":
        kw = {"slots": {"dc_family": {"used": 1, "limit": 1}}}
    elif case == "event":
        kw = {"extra": {"events": ({"date": "2025-02-04", "time": "10:00", "kind": "RBI_MPC",
                                    "title": "RBI MPC decision", "impact": "HIGH"},)}}
    elif case == "paused":
        kw = {"paused": "3 losses in a row"}
    elif case == "dte":   # Wednesday, the session before the near expiry
        view = _view(0.16, 0.13, now=datetime(2025, 2, 5, 11, 0, tzinfo=IST))
    else:
        view = _view(0.16, 0.13, far_volume=40)
    d = mdc.decide(_inp(view, **kw), params)
    assert d.entries == () and d.metrics["early_return"] == expected
    assert d.reasons[0].startswith(text), d.reasons[0]
    assert mdc.selected_nothing_reason(d) == d.metrics["early_return_reason"]
    assert set(_scores(d)) == {"ATM", "1SD", "15SD", "DD"}
    scores = _built(d)
    assert {"ATM", "1SD", "15SD"} <= set(scores) and all(v["edge_before_pct"] > 2 for v in scores.values())
    if case == "liquidity":
        assert all(any("volume 40 < 100 contracts" in r for r in v["rejected"]) for v in scores.values())
    elif case == "dte":
        assert all("the planned exit (1 session(s) before expiry) is today or past" in " ".join(v["rejected"])
                   for v in scores.values())
    else:   # only the gate stopped them (DC's filters name it the same way)
        assert any(v["rejected"] and all(r in d.reasons[0] for r in v["rejected"])
                   for v in scores.values())


def test_never_opens_a_structure_dc_already_holds(rich) -> None:
    first = rich
    (entry,) = first.entries
    chosen = first.metrics["mdc_selected"]
    held = OpenTradeView(tag="DC-20250203-093000", strategy="DC", opened_at=MON,
                         direction="LONG_CALENDAR", legs=entry.legs)
    d = mdc.decide(_inp(RICH, open_trades=(held,), slots={"dc_family": {"used": 1, "limit": 2}}),
                   PARAMS)
    scores = _built(d)
    assert "DC already holds this structure (DC-20250203-093000)" in scores[chosen]["rejected"]
    passing = {c: v["edge_after_pct"] for c, v in scores.items() if not v["rejected"]}
    assert chosen not in passing
    if passing:
        assert d.metrics["mdc_selected"] == max(passing, key=passing.get) != chosen
        assert {(x.security_id, x.side) for x in d.entries[0].legs} != {
            (x.security_id, x.side) for x in entry.legs}
    else:
        assert d.entries == () and d.metrics["early_return"] in ("held", "no_edge")
    # a DC trade on other strikes does not block it
    other = replace(held, legs=tuple(replace(x, security_id=str(int(x.security_id) + 1),
                                             strike=x.strike + 50) for x in entry.legs))
    again = mdc.decide(_inp(RICH, open_trades=(other,), slots={"dc_family": {"used": 1, "limit": 2}}),
                       PARAMS)
    assert again.metrics["mdc_selected"] == chosen


def test_exit_rule_is_dcs_and_fires_on_the_planned_exit(rich) -> None:
    (entry,) = rich.entries
    trade = Trade(tag=entry.tag, strategy="MDC", mode="paper", trade_date=MON.date(), opened_at=MON,
                  legs=tuple(OpenLeg(x, x.price, Decimal("10")) for x in entry.legs),
                  direction=entry.direction, context=dict(entry.context))
    before = datetime(2025, 2, 4, 11, 0, tzinfo=IST)
    assert mdc.exit_rule(trade, None, before, PARAMS) is None        # no mark: no exit
    at = datetime(2025, 2, 5, 15, 0, tzinfo=IST)
    why = mdc.exit_rule(trade, None, at, PARAMS)
    assert why == dc.exit_rule(trade, None, at, PARAMS) and why.startswith("planned exit")


def test_variants_knob_parses_and_refuses_bad_codes() -> None:
    vs = mdc.parse_variants({})
    assert [(v.code, v.call_sd, v.far_extra_sd, v.tag_code) for v in vs] == [
        ("ATM", 0, 0, "A"), ("1SD", 1, 0, "1"), ("15SD", 1.5, 0, "15"), ("DD", 1, 0.5, "DD")]
    assert [v.code for v in mdc.parse_variants({"MDC_VARIANTS": "05sd, 2SD,dd"})] == ["05SD", "2SD", "DD"]
    for bad, why in (("", "no variant listed"), ("1.5SD", "unknown variant"), ("1SD,1SD", "listed twice"),
                     ("ATM,0SD", "listed twice")):
        with pytest.raises(ValueError, match=why):
            mdc.parse_variants({"MDC_VARIANTS": bad})
    d = mdc.decide(_inp(RICH), {"MDC_VARIANTS": "3.5SD"})
    assert not d.eligible and "unknown variant" in d.reasons[0]
    keys = [k.key for k in mdc.KNOBS]
    assert set(keys) <= set(mdc.PARAM_KEYS) and set(dc.PARAM_KEYS) <= set(mdc.PARAM_KEYS)
    for k in mdc.KNOBS:
        assert k.coerce(k.render(k.default)) == k.default and k.description
    by_key = {k.key: k for k in mdc.KNOBS}
    for key, values in mdc.GRID_SPACE.items():
        assert all(by_key[key].coerce(by_key[key].render(v)) == v for v in values)


# ---------------------------------------------------------------------------- real file
def _bhav_view(path, now: datetime) -> MarketView:
    """2025-02-03 closes as quotes at ``now`` with bid = ask = ClsPric (the file has no
    spread: the close is its only price), volume = TtlTradgVol, OI = OpnIntrst."""
    rows: dict[date, dict[float, dict[str, dict[str, str]]]] = {}
    spot = None
    for r in nifty_options(path):
        e = date.fromisoformat(r["XpryDt"])
        if e in (NEAR, NEXT, MONTHLY):
            spot = float(r["UndrlygPric"])
            rows.setdefault(e, {}).setdefault(float(r["StrkPric"]), {})[r["OptnTp"]] = r
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
    snap = MarketSnapshot(time=now, spot=spot, near_future=None, far_future=None, chains=tuple(chains))
    return build_market_view(snap, CAL)


@pytest.fixture(scope="module")
def bhav() -> MarketView:
    path = require_shared_data("BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip")
    # the closes, read as quotes one minute before the close (inside an entry window to 15:30)
    return _bhav_view(path, datetime(2025, 2, 3, 15, 29, tzinfo=IST))


def _naive_calendar_time(view: MarketView, s: dc.Structure, exit_at: datetime) -> float:
    """The naive score the issue quotes, by hand: spot lognormal at the near ATM IV in
    calendar time, near legs repriced at that flat IV, far legs at their own IV, entered at
    the mids; % of the debit, before costs."""
    near = view.expiry(s.near)
    sig, te = near.atm_iv, near.t - year_fraction(exit_at, s.near)
    z = np.linspace(-9, 9, 4001)
    w = np.exp(-z * z / 2)
    w /= w.sum()
    x = -0.5 * sig * sig * te + sig * math.sqrt(te) * z
    total = 0.0
    for leg in s.legs:
        e = view.expiry(leg.option.expiry)
        k, call = float(leg.option.strike), leg.option.option_type == "CE"
        rest = year_fraction(exit_at, e.expiry)
        iv = sig if e.expiry == s.near else leg.option.iv
        val = black76_price(e.forward * np.exp(x), k, rest, iv, call, 0.0) * math.exp(-R * e.t)
        total += (1 if leg.side == "BUY" else -1) * leg.units * float(w @ val - float(leg.option.mid))
    return 100 * total / float(s.debit)


def test_real_bhavcopy_20250203_scores_and_no_width_bias(bhav: MarketView) -> None:
    view = bhav
    assert float(view.spot) == 23361.05 and view.near.expiry == NEAR and view.near.dte == 3
    params = {"DC_ENTRY_END": "15:30"}
    d = mdc.decide(_inp(view), params)
    scores = _scores(d)
    # strikes and premiums from the file's rows (ClsPric), 75 units, next weekly far:
    #   ATM  23350: 13-Feb CE 246.45 + PE 194.40 − 06-Feb CE 134.85 − PE 96.85 = 209.15 → ₹15 686.25
    #   1SD  23050 PE / 23650 CE: 97.05 + 106.95 − 30.10 − 25.90 = 148.00          → ₹11 100.00
    #   15SD 22950 PE / 23800 CE: 74.90 + 65.30 − 20.50 − 12.10 = 107.60           → ₹8 070.00
    #   DD   near 23050/23650 sold, far 22950 PE / 23800 CE: 74.90 + 65.30 − 30.10 − 25.90 = 84.20 → ₹6 315.00
    hand = {"ATM": ("23350.00", "23350.00", "23350.00", "23350.00", "15686.25"),
            "1SD": ("23050.00", "23650.00", "23050.00", "23650.00", "11100.00"),
            "15SD": ("22950.00", "23800.00", "22950.00", "23800.00", "8070.00"),
            "DD": ("23050.00", "23650.00", "22950.00", "23800.00", "6315.00")}
    structs = {}
    for code, (kp, kc, fkp, fkc, premium) in hand.items():
        v = scores[code]
        assert (v["put_strike"], v["call_strike"], v["far_put_strike"], v["far_call_strike"]) == (kp, kc, fkp, fkc)
        variant = next(x for x in mdc.parse_variants(params) if x.code == code)
        s = dc.build(view, params, code=code, call_sd=variant.call_sd, put_sd=variant.put_sd,
                     far_extra_sd=variant.far_extra_sd)
        assert s.premium == Decimal(premium) and v["debit"] == str(s.debit)
        assert s.round_trip_spread == 0 and v["round_trip_spread"] == "0.00"   # bid = ask
        structs[code] = s
    # the front is cheap in trading time on 3 Feb (near 11.2 vs next weekly 13.1 ATM per
    # trading year): no variant has edge, nothing is selected, every score is recorded
    assert d.entries == () and d.metrics["mdc_selected"] is None
    assert d.metrics["early_return"] == "no_richness"
    assert d.reasons[0] == ("no variant with a rich front (near − far IV, trading time, vol pts: "
                            "ATM -1.936, 1SD -0.997, 15SD -0.178, DD -0.997)")
    json.dumps(d.metrics)                       # the battle log stores it as JSON
    for v in scores.values():
        assert v["edge_after_pct"] < v["edge_before_pct"] < 1.0
    # held to the planned exit (no target/stop path), the smile does not make width win: the
    # model's edges are within a point of each other, while the naive flat-ATM score the
    # issue quotes (−2.1 / +4.4 / +9.7 %) rises with width by construction
    held = _scores(mdc.decide(_inp(view), {**params, "MDC_SCORE_EXITS": False}))
    model = [held[c]["edge_before_pct"] for c in ("ATM", "1SD", "15SD")]
    assert max(model) - min(model) < 1.0 and all(-4 < e < 0 for e in model), model
    exit_at = dc.planned_exit(view, structs["ATM"], params)
    naive = [_naive_calendar_time(view, structs[c], exit_at) for c in ("ATM", "1SD", "15SD")]
    assert naive[0] < 0 < naive[1] < naive[2] and naive[2] - naive[0] > 10, naive
    assert naive == pytest.approx([-2.1, 4.4, 9.7], abs=1.5)   # their exact exit time is not stated
    # the near legs carry no edge under the model (their expected exit value is their mid)
    near_q = sv.quotes_from_view(view.near)
    surf = sv.fit_surface(near_q, [sv.quotes_from_view(view.expiry(NEXT))], rate=view.rate)
    tau = trading_years(CAL, view.now, NEAR) - trading_years(CAL, exit_at, NEAR)
    for code, s in structs.items():
        val = sv.value_structure(mdc._legs_for_score(s), surf, tau_exit=tau, debit=float(s.debit))
        assert val.edge_before_pct == pytest.approx(held[code]["edge_before_pct"], abs=0.01)
        near_edges = [e for e, x in zip(val.leg_edges, s.legs, strict=True) if x.option.expiry == NEAR]
        assert sum(abs(e) for e in near_edges) < 1.0, (code, near_edges)
    print("\n2025-02-03 MDC scores (% of debit; before / after costs):")
    for c in hand:
        print(f"  {c:>4}: with exits {scores[c]['edge_before_pct']:+.2f} / {scores[c]['edge_after_pct']:+.2f}"
              f"   held to exit {held[c]['edge_before_pct']:+.2f} / {held[c]['edge_after_pct']:+.2f}")
    print("  naive flat-ATM (calendar time) ATM/1SD/15SD:", [round(x, 2) for x in naive])


# ---------------------------------------------------------------------------- fast paths
def _structures(view: MarketView, params: dict) -> list[dc.Structure]:
    out = []
    for v in mdc.parse_variants(params):
        try:
            out.append(dc.build(view, params, code=v.code, call_sd=v.call_sd, put_sd=v.put_sd,
                                far_extra_sd=v.far_extra_sd))
        except StructureRefused:
            continue
    return out


def _root_breakevens(view: MarketView, s: dc.Structure, at: datetime
                     ) -> tuple[float | None, float | None]:
    """The outer zero crossings of DC's model P&L found by a root finder (test-local)."""
    from scipy.optimize import brentq

    def f(x: float) -> float:
        return float(dc.model_pnl(view, s, at, [x], calendar=CAL)[0])

    for scale in (1.0, 2.0, 4.0):
        grid = dc._grid(view, s, scale)
        positive = np.flatnonzero(dc.model_pnl(view, s, at, grid, calendar=CAL) > 0)
        if not positive.size:
            return None, None
        first, last = int(positive[0]), int(positive[-1])
        if first > 0 and last < grid.size - 1:
            return (brentq(f, float(grid[first - 1]), float(grid[first]), xtol=1e-4),
                    brentq(f, float(grid[last]), float(grid[last + 1]), xtol=1e-4))
    return None, None


def _breakevens_agree(view: MarketView, params: dict) -> int:
    """DC's breakevens (two vectorised model calls, interpolated) against a root finder."""
    n = 0
    for s in _structures(view, params):
        at = dc.planned_exit(view, s, params)
        ours, roots = dc.breakevens(view, s, at, calendar=CAL), _root_breakevens(view, s, at)
        for a, b in zip(ours, roots, strict=True):
            assert (a is None) == (b is None), (s.code, ours, roots)
            if a is not None:
                assert abs(a - b) <= 0.011, (s.code, ours, roots)   # the stated tolerance: 0.01
                n += 1
    return n


def test_breakevens_match_a_root_finder() -> None:
    shifted = _view(0.16, 0.13, now=datetime(2025, 2, 4, 13, 0, tzinfo=IST), spot=23550.0)
    assert sum(_breakevens_agree(v, PARAMS) for v in (RICH, FLAT, shifted)) >= 16


def test_breakevens_on_the_real_file_match_a_root_finder(bhav: MarketView) -> None:
    assert _breakevens_agree(bhav, {"DC_ENTRY_END": "15:30"}) >= 6


def test_variants_scored_together_score_as_each_alone(rich) -> None:
    """decide scores every variant in one batch; each alone (DC's breakevens as its spot band,
    its own target and stop) gives the same numbers."""
    view = RICH
    structures = {s.code: s for s in _structures(view, PARAMS)}
    scores = _built(rich)
    exit_at = dc.planned_exit(view, next(iter(structures.values())), PARAMS)
    near = view.expiry(NEAR)
    surf = sv.fit_surface(sv.quotes_from_view(near), [sv.quotes_from_view(view.expiry(NEXT))], rate=view.rate)
    tau = trading_years(CAL, view.now, NEAR) - trading_years(CAL, exit_at, NEAR)
    for code, v in scores.items():
        item, be = mdc._to_value(view, PARAMS, structures[code], exit_at, True)
        assert list(be) == v["dc_breakevens"] and item.exits is not None
        alone = sv.value_structure(item.legs, surf, tau_exit=tau, charges=item.charges, spread=item.spread,
                                   debit=item.debit, spot=float(view.spot), exits=item.exits)
        assert alone.edge_before_pct == pytest.approx(v["edge_before_pct"], abs=0.0011), code
        assert alone.prob_target == pytest.approx(v["prob_target"], abs=1e-4), code
