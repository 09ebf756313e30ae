"""The margin approximation (engine.risk.margin): hedge benefit, the expiry-day jump, longs,
futures, the holding rule and the caps. Pure: no database."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D

import pytest

from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_price
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.risk.margin import (
    CALENDAR_OFFSET_REMOVED_FROM,
    EXPIRY_DAY_ELM_PCT,
    EXPOSURE_PCT,
    FUTURES_MARGIN_PCT,
    PRICE_SCAN_RANGE,
    entry_margin,
    estimate_margin,
    held_into,
    jump_day,
    margin_denial,
)
from engine.strategies.market_view import dte
from engine.timeutil import IST

CAL = NseCalendar()
SPOT = D("23500")
LOT = 75
IV = 0.13


def _opt(sid: str, side: str, strike: int, ot: str, expiry: date, on: date,
         qty: int = LOT) -> Leg:
    """An option leg priced at 13 % vol on the module's own time basis ((DTE+1)/252)."""
    t = (dte(CAL, on, expiry) + 1) / 252
    price = float(black76_price(float(SPOT), strike, t, IV, ot == "CE"))
    return Leg(security_id=sid, side=Side(side), quantity=qty, option_type=ot, expiry=expiry,
               strike=D(strike), price=D(f"{price:.2f}"))


def _fut(sid: str, side: str, expiry: date, price: str, qty: int = LOT) -> Leg:
    return Leg(security_id=sid, side=Side(side), quantity=qty, kind=InstrumentKind.FUT,
               expiry=expiry, price=D(price))


# Feb 2025: weeklies 06/13/20-Feb, monthly 27-Feb (Thursdays); the calendar offset is
# removed on expiry days from 10-Feb-2025
ON, NEAR, FAR = date(2025, 2, 17), date(2025, 2, 20), date(2025, 2, 27)


def _condor(on: date = ON, expiry: date = NEAR) -> list[Leg]:
    return [_opt("1", "SELL", 23800, "CE", expiry, on), _opt("2", "BUY", 24000, "CE", expiry, on),
            _opt("3", "SELL", 23200, "PE", expiry, on), _opt("4", "BUY", 23000, "PE", expiry, on)]


def _double_calendar(on: date = ON, near: date = NEAR, far: date = FAR) -> list[Leg]:
    return [_opt("1", "SELL", 23800, "CE", near, on), _opt("2", "SELL", 23200, "PE", near, on),
            _opt("3", "BUY", 23800, "CE", far, on), _opt("4", "BUY", 23200, "PE", far, on)]


def test_iron_condor_margin_is_its_max_loss_plus_exposure() -> None:
    legs = _condor()
    est = estimate_margin(legs, SPOT, ON, CAL, expiry_day=False)
    credit = sum((x.price if x.side is Side.SELL else -x.price) for x in legs)
    max_loss = (D(200) - credit) * LOT  # one side's wing width less the credit
    assert credit > 0 and est.premium == 0
    assert abs(est.span - max_loss) <= D("0.03") * max_loss, (est.span, max_loss)
    assert est.exposure == EXPOSURE_PCT * SPOT * 2 * LOT  # both shorts, hedged or not
    assert est.total == est.span + est.exposure and est.expiry_day_extra == 0
    # the wings are the hedge: the two shorts alone would need many times the max loss
    naked = estimate_margin([legs[0], legs[2]], SPOT, ON, CAL, expiry_day=False)
    assert naked.span > 5 * est.span
    assert est.hedge_benefit > 0 and est.hedge_benefit >= naked.span - est.span - 1


def test_double_calendar_normal_day_vs_short_leg_expiry_day() -> None:
    legs = _double_calendar()
    debit = sum((x.price if x.side is Side.BUY else -x.price) * x.quantity for x in legs)
    normal = estimate_margin(legs, SPOT, ON, CAL, expiry_day=False)
    # normal day: the far legs offset the near shorts, the debit is paid upfront
    assert normal.premium == debit.quantize(D("0.01")) > 0
    assert normal.span < D("0.1") * normal.hedge_benefit
    assert normal.exposure == EXPOSURE_PCT * SPOT * 2 * LOT
    assert normal.jump_day == NEAR and normal.expiry_day_extra == 0
    # held into the near expiry: no calendar offset that day (the expiring shorts are scanned
    # alone) and 2 % extra ELM on them
    held = estimate_margin(legs, SPOT, ON, CAL, expiry_day=True)
    extra_elm = EXPIRY_DAY_ELM_PCT * SPOT * 2 * LOT
    assert held.expiry_day_extra > extra_elm + D("0.5") * D(str(PRICE_SCAN_RANGE)) * LOT * SPOT
    assert held.total == normal.total + held.expiry_day_extra
    assert any("no calendar offset" in n for n in held.notes)
    # on the expiry day itself the jump is today's margin, whatever the flag says
    today = estimate_margin(_double_calendar(on=NEAR), SPOT, NEAR, CAL, expiry_day=False)
    assert today.expiry_day_extra > extra_elm
    # before 10-Feb-2025 only the extra ELM applied (the calendar offset survived)
    early = _double_calendar(on=date(2025, 2, 3), near=date(2025, 2, 6), far=date(2025, 2, 13))
    assert date(2025, 2, 6) < CALENDAR_OFFSET_REMOVED_FROM
    before = estimate_margin(early, SPOT, date(2025, 2, 3), CAL, expiry_day=True)
    assert extra_elm <= before.expiry_day_extra < D("1.1") * extra_elm < held.expiry_day_extra


def test_long_options_need_their_premium_only() -> None:
    legs = [_opt("1", "BUY", 23500, "CE", NEAR, ON), _opt("2", "BUY", 23000, "PE", FAR, ON)]
    for held in (False, True):
        est = estimate_margin(legs, SPOT, ON, CAL, expiry_day=held)
        assert est.total == est.premium == sum(x.price * x.quantity for x in legs)
        assert est.span == est.exposure == est.expiry_day_extra == 0
    assert jump_day(legs, ON) is None  # no short, nothing jumps


def test_futures_margin_is_a_stated_share_of_notional() -> None:
    short = _fut("9", "SELL", FAR, "23600")
    est = estimate_margin([short], SPOT, ON, CAL, expiry_day=False)
    assert est.total == FUTURES_MARGIN_PCT * D("23600") * LOT
    # a calendar pair: a third of it on the far leg; held into the near expiry: outright both
    pair = [short, _fut("8", "BUY", date(2025, 3, 27), "23700")]
    spread = estimate_margin(pair, SPOT, ON, CAL, expiry_day=False)
    assert spread.total == (FUTURES_MARGIN_PCT * D("23700") * LOT / 3).quantize(D("0.01"))
    assert spread.hedge_benefit > 0
    held = estimate_margin(pair, SPOT, ON, CAL, expiry_day=True)
    assert held.jump_day == FAR
    assert held.total == FUTURES_MARGIN_PCT * (D("23600") + D("23700")) * LOT


def test_naked_short_is_at_least_its_loss_on_the_scan_move() -> None:
    leg = _opt("1", "SELL", 23500, "CE", NEAR, ON)
    est = estimate_margin([leg], SPOT, ON, CAL, expiry_day=False)
    intrinsic_loss = (D(str(PRICE_SCAN_RANGE)) * SPOT - leg.price) * LOT
    assert intrinsic_loss < est.span < intrinsic_loss + leg.price * LOT
    assert est.hedge_benefit == 0


def test_bad_inputs_name_what_is_wrong() -> None:
    unpriced = Leg(security_id="7", side=Side.SELL, quantity=LOT, option_type="CE", expiry=NEAR,
                   strike=D(23500))
    with pytest.raises(ValueError, match="option leg 7: needs its price"):
        estimate_margin([unpriced], SPOT, ON, CAL, expiry_day=False)
    with pytest.raises(ValueError, match=r"expired on 2025-02-13"):
        estimate_margin([_opt("5", "SELL", 23500, "CE", date(2025, 2, 13), date(2025, 2, 10))],
                        SPOT, ON, CAL, expiry_day=False)
    with pytest.raises(ValueError, match="spot must be a positive"):
        estimate_margin(_condor(), D("0"), ON, CAL, expiry_day=False)
    with pytest.raises(ValueError, match="at least one leg"):
        estimate_margin([], SPOT, ON, CAL, expiry_day=False)


def test_holding_rule_decides_whether_the_jump_applies() -> None:
    now = datetime(2025, 2, 17, 10, 0, tzinfo=IST)
    # DC's default plan: the session before near expiry
    assert not held_into(NEAR, now=now, calendar=CAL, planned_exit="2025-02-19T15:00:00+05:30")
    assert held_into(NEAR, now=now, calendar=CAL, planned_exit="2025-02-20T15:00:00+05:30")
    # IC always exits at DTE 1
    assert not held_into(NEAR, now=now, calendar=CAL, exit_dte=1, max_hold_minutes=10080)
    # a 4-hour max hold never reaches Thursday; nothing known: assumed held
    assert not held_into(NEAR, now=now, calendar=CAL, max_hold_minutes=240)
    assert held_into(NEAR, now=now, calendar=CAL)
    assert not held_into(None, now=now, calendar=CAL)
    with pytest.raises(ValueError, match="planned_exit 'soon'"):
        held_into(NEAR, now=now, calendar=CAL, planned_exit="soon")
    est, held = entry_margin(_double_calendar(), SPOT, now, CAL,
                             planned_exit="2025-02-19T15:00:00+05:30")
    assert not held and est.expiry_day_extra == 0 and "not applied" in est.notes[0]


def test_denial_names_margin_cap_and_capital() -> None:
    capital, pct, total_pct = D("500000"), D("0.5"), D("0.9")
    assert margin_denial(D("250000"), open_margin=D(0), capital=capital, max_pct=pct,
                         max_total_pct=total_pct) is None
    why = margin_denial(D("250000.01"), open_margin=D(0), capital=capital, max_pct=pct,
                        max_total_pct=total_pct)
    assert why == ("margin ₹250000.01 (approximation) exceeds RISK_MAX_MARGIN_PCT 0.5 of "
                   "capital ₹500000 (cap ₹250000.00)")
    why = margin_denial(D("200000"), open_margin=D("300000"), capital=capital, max_pct=pct,
                        max_total_pct=total_pct, source="dhan")
    assert why is not None and "RISK_MAX_TOTAL_MARGIN_PCT 0.9" in why
    assert "open positions' ₹300000" in why and "cap ₹450000.00" in why and "(dhan)" in why
