"""The trade-journal row (engine.execution.journal): hand-built trades and markets, every
column computed by hand."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D

import pytest

from engine.execution.charges import order_charges
from engine.execution.journal import (
    build_journal_row,
    capture_market,
    entry_context,
    event_label,
    leg_slippage,
    rejected_variant_delta,
    skew_25d,
)
from engine.execution.paper import Fill
from engine.execution.trades import OpenLeg, Trade
from engine.market.pricing import black76_price
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.strategies.base import Decision
from engine.strategies.market_view import ExpiryView, MarketView, OptionView
from engine.timeutil import IST

NEAR, FAR = date(2025, 2, 6), date(2025, 2, 13)
T0 = datetime(2025, 2, 4, 14, 30, tzinfo=IST)
T1 = datetime(2025, 2, 5, 11, 0, tzinfo=IST)
UNITS = 75
STRIKES = (D("23400"), D("23500"), D("23600"))


def _sid(expiry: date, strike: D, kind: str) -> str:
    return f"{expiry:%d}{int(strike)}{kind}"


def _opt(expiry, strike, kind, bid, ask, iv, delta) -> OptionView:
    return OptionView(security_id=_sid(expiry, strike, kind), expiry=expiry, strike=strike,
                      option_type=kind, bid=None if bid is None else D(bid),
                      ask=None if ask is None else D(ask), ltp=None, iv=iv, delta=delta,
                      lot_size=UNITS)


def _expiry(expiry, dte, t, forward, prices, atm_iv) -> ExpiryView:
    """prices: strike -> (ce bid, ce ask, ce iv, ce delta, pe bid, pe ask, pe iv, pe delta)."""
    calls = {k: _opt(expiry, k, "CE", *p[0:4]) for k, p in prices.items()}
    puts = {k: _opt(expiry, k, "PE", *p[4:8]) for k, p in prices.items()}
    return ExpiryView(expiry=expiry, dte=dte, t=t, t_trading=t, forward=forward,
                      atm_strike=D("23500"), atm_iv=atm_iv, lot_size=UNITS, monthly=False,
                      strikes=STRIKES, calls=calls, puts=puts)


def _entry_view() -> MarketView:
    near = _expiry(NEAR, 2, 0.006, 23500.0, {
        D("23400"): ("160.00", "160.50", 0.150, 0.70, "50.00", "50.50", 0.160, -0.30),
        D("23500"): ("100.00", "100.50", 0.140, 0.50, "99.00", "99.50", 0.140, -0.50),
        D("23600"): ("55.00", "55.50", 0.120, 0.30, "150.00", "150.50", 0.130, -0.70),
    }, 0.14)
    # one more OTM strike each side for the 25-delta interpolation
    near.calls[D("23700")] = _opt(NEAR, D("23700"), "CE", "20.00", "20.50", 0.110, 0.10)
    near.puts[D("23300")] = _opt(NEAR, D("23300"), "PE", "15.00", "15.50", 0.200, -0.10)
    far = _expiry(FAR, 7, 0.025, 23520.0, {
        D("23400"): ("260.00", "261.00", 0.135, 0.6, "140.00", "141.00", 0.140, -0.4),
        D("23500"): ("200.00", "201.00", 0.130, 0.5, "180.00", "181.00", 0.130, -0.5),
        D("23600"): ("150.00", "151.00", 0.125, 0.4, "230.00", "231.00", 0.125, -0.6),
    }, 0.13)
    return MarketView(now=T0, spot=D("23490.00"), expiries=(near, far))


def _exit_view() -> MarketView:
    near = _expiry(NEAR, 1, 0.003, 23550.0, {
        D("23400"): ("190.00", "190.50", 0.15, 0.8, None, None, None, None),  # PE unquoted
        D("23500"): ("110.00", "110.50", 0.15, 0.6, "58.00", "58.50", 0.15, -0.4),
        D("23600"): ("45.00", "45.50", 0.13, 0.4, "120.00", "120.50", 0.13, -0.6),
    }, 0.15)
    far = _expiry(FAR, 6, 0.022, 23570.0, {
        D("23400"): ("290.00", "291.00", 0.14, 0.7, "120.00", "121.00", 0.145, -0.3),
        D("23500"): ("220.00", "221.00", 0.135, 0.6, "150.00", "151.00", 0.135, -0.4),
        D("23600"): ("160.00", "161.00", 0.13, 0.5, "200.00", "201.00", 0.13, -0.5),
    }, 0.135)
    return MarketView(now=T1, spot=D("23560.00"), expiries=(near, far))


def _leg(expiry, strike, kind, side) -> Leg:
    return Leg(security_id=_sid(expiry, D(strike), kind), side=side, quantity=UNITS,
               kind=InstrumentKind.OPT, option_type=OptionType(kind), expiry=expiry,
               strike=D(strike))


def _fill(leg: Leg, price: str, on: date, cid: str = "c") -> Fill:
    return Fill(leg=leg, price=D(price), charges=order_charges(
        kind="OPT", side=leg.side.value, price=D(price), quantity=leg.quantity, on=on),
        order_id="o", correlation_id=cid)


#: the chosen ATM calendar: BUY far 23500 CE/PE, SELL near 23500 CE/PE
ENTRY_LEGS = (_leg(FAR, "23500", "CE", Side.BUY), _leg(FAR, "23500", "PE", Side.BUY),
              _leg(NEAR, "23500", "CE", Side.SELL), _leg(NEAR, "23500", "PE", Side.SELL))
#: entry fills: one tick beyond the touch (the paper broker's slippage) on every leg
ENTRY_PX = ("201.05", "181.05", "99.95", "98.95")
#: the rejected variant (strikes 23400 PE / 23600 CE), as MDC's score row records it
REJECTED_SCORE = {"code": "1SD", "near": NEAR.isoformat(), "far": FAR.isoformat(),
                  "put_strike": "23400", "call_strike": "23600", "far_put_strike": "23400",
                  "far_call_strike": "23600", "units": UNITS, "edge_after_pct": -1.5,
                  "rejected": ["edge -1.50 % after costs < MDC_MIN_EDGE_PCT 2 %"]}


def _trade(strategy: str, context: dict) -> Trade:
    fills = [_fill(leg, px, T0.date()) for leg, px in zip(ENTRY_LEGS, ENTRY_PX, strict=True)]
    return Trade(tag=f"{strategy}-T", strategy=strategy, mode="paper", trade_date=T0.date(),
                 opened_at=T0, legs=tuple(OpenLeg(f.leg, f.price, f.charges.total) for f in fills),
                 mfe=D("120.00"), mae=D("-80.00"), context=context)


def _exit_fills() -> list[Fill]:
    closing = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}
    prices = ("219.95", "149.95", "110.55", "58.55")  # one tick beyond the exit touch
    return [_fill(Leg(security_id=x.security_id, side=closing[x.side], quantity=UNITS,
                      kind=x.kind, option_type=x.option_type, expiry=x.expiry, strike=x.strike),
                  px, T1.date())
            for x, px in zip(ENTRY_LEGS, prices, strict=True)]


def _decisions() -> dict[str, Decision]:
    return {"DC": Decision(strategy="DC", eligible=True, reasons=("front not rich",)),
            "MDC": Decision(strategy="MDC", eligible=True, metrics={"mdc_selected": "ATM"}),
            "IC": Decision(strategy="IC", eligible=False, reasons=("MDC selected MDC-T",))}


def _mdc_entry() -> dict:
    ctx = {"variant": "ATM", "score": {"code": "ATM", "edge_after_pct": 2.5},
           "rejected_variants": [REJECTED_SCORE, {"code": "DD", "rejected": ["not built: x"]}]}
    return entry_context(_entry_view(), strategy="MDC", legs=ENTRY_LEGS, reason="MDC selected ATM",
                         context=ctx, decisions=_decisions())


# ---------------------------------------------------------------------------- slippage
def test_a_buy_filled_half_a_rupee_above_mid_costs_ten_ticks() -> None:
    s = leg_slippage("BUY", UNITS, D("100.25"), {"bid": "99.50", "ask": "100.00", "mid": "99.75"})
    assert s["vs_mid"] == {"per_unit": "0.50", "ticks": "10.00", "rupees": "37.50"}
    assert s["vs_touch"] == {"per_unit": "0.25", "ticks": "5.00", "rupees": "18.75"}


def test_a_sell_filled_below_the_bid_pays_against_both() -> None:
    s = leg_slippage("SELL", 50, D("99.40"), {"bid": "99.50", "ask": "100.50", "mid": "100.00"})
    assert s["vs_mid"] == {"per_unit": "0.60", "ticks": "12.00", "rupees": "30.00"}
    assert s["vs_touch"] == {"per_unit": "0.10", "ticks": "2.00", "rupees": "5.00"}


def test_no_quote_leaves_the_reference_null() -> None:
    s = leg_slippage("BUY", 1, D("10"), None)
    assert s["vs_mid"]["rupees"] is None and s["vs_touch"]["ticks"] is None


# ---------------------------------------------------------------------------- market
def test_skew_is_25_delta_put_minus_call_interpolated_in_delta() -> None:
    near = _entry_view().near
    # puts (−0.30, 16 %), (−0.10, 20 %) → 17 % at −0.25; calls (0.10, 11 %), (0.30, 12 %)
    # → 11.75 % at +0.25 (ITM strikes are not used)
    assert skew_25d(near) == pytest.approx(0.17 - 0.1175, abs=1e-12)


def test_capture_market_records_spot_atm_iv_skew_and_quotes() -> None:
    m = capture_market(_entry_view(), [ENTRY_LEGS[0].security_id, "unknown"])
    assert m["spot"] == "23490.00" and m["atm_iv"] == "14.0000" and m["skew"] == "5.2500"
    assert m["near_expiry"] == NEAR.isoformat()
    assert m["quotes"] == {ENTRY_LEGS[0].security_id: {
        "expiry": FAR.isoformat(), "strike": "23500", "option_type": "CE", "bid": "200.00",
        "ask": "201.00", "mid": "200.50", "iv": "13.0000"}}
    assert m["expiries"][FAR.isoformat()]["forward"] == 23520.0


def test_event_label() -> None:
    assert event_label(()) == "none"
    assert event_label([{"impact": "HIGH", "kind": "central_bank", "title": "RBI policy"}]) == (
        "HIGH central_bank: RBI policy")


# ---------------------------------------------------------------------------- the row
def test_mdc_row_has_every_column_computed_by_hand() -> None:
    entry = _mdc_entry()
    trade = _trade("MDC", {"variant": "ATM", "journal_entry": entry})
    exit_market = capture_market(_exit_view(), [x.security_id for x in ENTRY_LEGS] + [
        leg["security_id"] for v in entry["rejected_variants"] for leg in v["legs"] or ()])
    fills = _exit_fills()
    row = build_journal_row(trade, fills, T1, exit_market)

    assert row["entry_spot"] == D("23490.00") and row["exit_spot"] == D("23560.00")
    assert row["entry_iv"] == D("14.0000") and row["exit_iv"] == D("15.0000")
    assert row["skew"] == D("5.2500")
    # gross: far CE +18.90, far PE −31.10, near CE −10.60, near PE +40.40 per unit
    gross = (D("219.95") - D("201.05") + D("149.95") - D("181.05") - (D("110.55") - D("99.95"))
             - (D("58.55") - D("98.95"))) * UNITS
    entry_charges = sum((x.entry_charges for x in trade.legs), D(0))
    exit_charges = sum((f.charges.total for f in fills), D(0))
    net = (gross - entry_charges - exit_charges).quantize(D("0.01"))
    final_mark = (gross - entry_charges).quantize(D("0.01"))
    assert row["mfe"] == max(D("120.00"), final_mark) and row["mae"] == min(D("-80.00"), final_mark)

    # slippage: entry one tick beyond the touch; the touch is 0.50 (far) / 0.25 (near)
    # from mid, so vs mid = 0.55 / 0.30 per unit at entry and at exit
    slip = row["slippage"]
    first = slip["legs"][0]
    assert first["entry"]["vs_touch"] == {"per_unit": "0.05", "ticks": "1.00", "rupees": "3.75"}
    assert first["entry"]["vs_mid"] == {"per_unit": "0.55", "ticks": "11.00", "rupees": "41.25"}
    assert first["exit"]["vs_mid"] == {"per_unit": "0.55", "ticks": "11.00", "rupees": "41.25"}
    assert slip["total"]["entry_vs_touch"] == str(D("0.05") * UNITS * 4)
    assert slip["total"]["vs_mid"] == str((D("0.55") * 2 + D("0.30") * 2) * UNITS * 2)

    ctx = row["selection_context"]
    assert ctx["variant"] == "ATM" and [s["code"] for s in ctx["scores"]] == ["ATM", "1SD", "DD"]
    assert ctx["exit_skew"] == exit_market["skew"]
    assert [r["strategy"] for r in row["rejected_strategies"]] == ["DC", "IC"]
    assert row["rejected_strategies"][0]["reasons"] == ["front not rich"]
    assert row["event_risk_label"] == "none"

    delta = row["rejected_strategy_delta"]
    assert delta["chosen"] == {"variant": "ATM", "net_pnl": str(net)}
    one, dd = delta["variants"]
    assert dd == {"code": "DD", "priced": False, "why": "no legs to price (not built: x)"}
    # 1SD: BUY far 23600 CE at 151.00 → bid 160.00; BUY far 23400 PE at 141.00 → 120.00;
    # SELL near 23600 CE at 55.00 → ask 45.50; SELL near 23400 PE at 50.00 → unquoted at
    # close: Black-76 at the expiry's ATM IV (15 %) on its forward
    model = D(repr(round(float(black76_price(23550.0, 23400.0, 0.003, 0.15, False, 0.065)), 2)))
    by_leg = {(x["option_type"], x["side"]): x for x in one["legs"]}
    assert by_leg[("PE", "SELL")]["exit_method"] == "surface_model"
    assert D(by_leg[("PE", "SELL")]["exit_price"]) == model
    assert by_leg[("CE", "BUY")]["exit_method"] == "exit_touch"
    v_gross = (D("160.00") - D("151.00") + D("120.00") - D("141.00")
               - (D("45.50") - D("55.00")) - (model - D("50.00"))) * UNITS
    v_charges = sum((order_charges(kind="OPT", side=s, price=D(p), quantity=UNITS, on=d).total
                     for s, p, d in (("BUY", "151.00", T0.date()), ("BUY", "141.00", T0.date()),
                                     ("SELL", "55.00", T0.date()), ("SELL", "50.00", T0.date()),
                                     ("SELL", "160.00", T1.date()), ("SELL", "120.00", T1.date()),
                                     ("BUY", "45.50", T1.date()), ("BUY", str(model), T1.date()))),
                    D(0))
    assert D(one["gross_pnl"]) == v_gross
    assert D(one["charges"]) == v_charges.quantize(D("0.01"))
    assert D(one["net_pnl"]) == (v_gross - v_charges).quantize(D("0.01"))
    assert D(one["delta_vs_chosen"]) == D(one["net_pnl"]) - net
    assert one["units"] == UNITS and one["scored_edge_after_pct"] == -1.5


def test_an_expired_variant_leg_is_worth_its_intrinsic_value() -> None:
    leg = {"security_id": "x", "side": "SELL", "units": 10, "expiry": NEAR.isoformat(),
           "strike": "23400", "option_type": "CE", "entry_price": "100.00"}
    v = rejected_variant_delta({"code": "X", "legs": [leg]}, {"spot": "23450.00", "quotes": {}},
                               T0.date(), date(2025, 2, 7), D("0"))
    assert v["legs"][0]["exit_method"] == "intrinsic" and v["legs"][0]["exit_price"] == "50.00"
    entry = order_charges(kind="OPT", side="SELL", price=D("100.00"), quantity=10,
                          on=T0.date()).total
    assert D(v["gross_pnl"]) == D("500.00")  # sold at 100, worth 50 at expiry
    assert D(v["net_pnl"]) == (D("500") - entry).quantize(D("0.01"))  # no exit order


def test_non_mdc_row_lists_the_other_strategies_and_no_variants() -> None:
    entry = entry_context(_entry_view(), strategy="DC", legs=ENTRY_LEGS, reason="DC 0SD",
                          context={"code": "ATM"}, decisions=_decisions(),
                          events=[{"impact": "HIGH", "kind": "fomc", "title": "FOMC"}])
    trade = _trade("DC", {"journal_entry": entry})
    row = build_journal_row(trade, _exit_fills(), T1,
                            capture_market(_exit_view(), [x.security_id for x in ENTRY_LEGS]))
    assert row["rejected_strategy_delta"] == {"method": "DC scores no alternative variants",
                                              "variants": []}
    assert [r["strategy"] for r in row["rejected_strategies"]] == ["MDC", "IC"]
    assert row["selection_context"]["reason"] == "DC 0SD"
    assert row["event_risk_label"] == "HIGH fomc: FOMC"
    assert all(row[k] is not None for k in ("entry_spot", "exit_spot", "entry_iv", "exit_iv",
                                            "skew", "mfe", "mae"))


def test_a_trade_without_entry_context_still_gets_its_exit_half() -> None:
    trade = _trade("CAL_ARB", {"reason": "z 2.1"})
    row = build_journal_row(trade, _exit_fills(), T1, capture_market(_exit_view(), ()))
    assert row["entry_spot"] is None and row["exit_spot"] == D("23560.00")
    assert row["selection_context"]["metrics"] == {"reason": "z 2.1"}
    assert row["slippage"]["legs"][0]["entry"]["vs_mid"]["rupees"] is None
    assert row["rejected_strategies"] == [] and row["event_risk_label"] == "none"
