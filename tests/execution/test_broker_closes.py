"""Pure decisions on closes the broker makes by itself, and on surplus positions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from engine.broker.dhan.models import Trade as WireTrade
from engine.execution.broker_closes import (
    CONFIRM_AFTER,
    KIND_INTRADAY,
    KIND_RMS,
    KIND_SETTLEMENT,
    RESEND_EVERY,
    BrokerFill,
    CloseState,
    close_fills,
    decide,
    settlement_value,
)
from engine.execution.charges import order_charges
from engine.execution.reconcile import (
    CONFIRMED,
    ReconState,
    reconcile,
    surplus_long,
    surplus_short,
)
from engine.execution.settlement import SettlementPrices
from engine.execution.trades import OpenLeg, Trade
from engine.messages.commands import BookBrokerClose, BrokerClosedLeg
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.timeutil import IST

T0 = datetime(2025, 2, 3, 10, 0, tzinfo=IST)
EXPIRY = date(2025, 2, 6)


def _trade(tag: str, *legs: Leg, opened: datetime = T0) -> Trade:
    return Trade(tag=tag, strategy="DC", mode="live", trade_date=opened.date(), opened_at=opened,
                 legs=tuple(OpenLeg(leg, Decimal("100"), Decimal("25")) for leg in legs))


def _fut(sid: str, side: Side, qty: int = 75, expiry: date = EXPIRY) -> Leg:
    return Leg(security_id=sid, side=side, quantity=qty, kind=InstrumentKind.FUT, expiry=expiry)


def _opt(sid: str, side: Side, kind: OptionType, strike: str, qty: int = 75) -> Leg:
    return Leg(security_id=sid, side=side, quantity=qty, option_type=kind, strike=Decimal(strike),
               expiry=EXPIRY)


DC = _trade("DC-1", _fut("FAR", Side.BUY, expiry=date(2025, 2, 27)), _fut("NEAR", Side.SELL))


def _fill(oid: str, sid: str, side: str, qty: int, price: str, at: datetime = T0,
          product: str = "MARGIN") -> BrokerFill:
    return BrokerFill(order_id=oid, security_id=sid, product=product, side=side, quantity=qty,
                      price=Decimal(price), at=at + timedelta(minutes=5))


ENTRY = [_fill("E1", "FAR", "BUY", 75, "100"), _fill("E2", "NEAR", "SELL", 75, "100")]
RMS = [_fill("R1", "FAR", "SELL", 50, "110"), _fill("R1", "FAR", "SELL", 25, "113"),
       _fill("R2", "NEAR", "BUY", 75, "90.5")]


def _checks(n: int, trades, broker, fills, **kw):
    state, out = CloseState(), []
    for _ in range(n):
        result = decide(trades, broker, fills, state, now=kw.get("now", T0 + timedelta(hours=1)),
                        known_order_ids=kw.get("known", {"E1", "E2"}),
                        products=kw.get("products"), busy_tags=kw.get("busy_tags", ()),
                        busy_securities=kw.get("busy_securities", ()),
                        settlement_price=kw.get("settlement_price"))
        state = result.state
        out.append(result)
    return out


def test_rms_square_off_of_both_legs_is_booked_at_the_trade_book_vwap_after_two_checks() -> None:
    first, second, third = _checks(3, [DC], {"FAR": 0, "NEAR": 0}, ENTRY + RMS)
    assert first.closes == () and first.pending == ("DC-1",), "one sighting is not enough"
    (close,) = second.closes
    assert second.decided == ("DC-1",)
    assert close.kind == KIND_RMS and close.reason.startswith("broker square-off (RMS)")
    far, near = close.legs
    assert (far.security_id, far.price, far.how, far.order_ids) == (
        "FAR", Decimal("111.00"), "broker_order", ("R1",))  # (50*110 + 25*113) / 75
    assert far.parts == ((75, Decimal("111.00")),)
    assert (near.security_id, near.price, near.order_ids) == ("NEAR", Decimal("90.50"), ("R2",))
    assert "SELL 75 of security FAR at 111.00 (broker order R1)" in close.reason
    assert third.closes == (), "sent once; again only every few checks while still open"
    results = _checks(CONFIRM_AFTER + RESEND_EVERY, [DC], {"FAR": 0, "NEAR": 0}, ENTRY + RMS)
    assert [bool(r.closes) for r in results].count(True) == 2


def test_our_own_orders_never_count_as_a_broker_close() -> None:
    ours = [_fill("X1", "FAR", "SELL", 75, "110"), _fill("X2", "NEAR", "BUY", 75, "90")]
    (_, second) = _checks(2, [DC], {"FAR": 0, "NEAR": 0}, ENTRY + ours,
                          known={"E1", "E2", "X1", "X2"})
    assert second.closes == ()
    (hold,) = second.holds  # flat with nothing foreign to explain it: no exit may be sent
    assert "no trade in the broker's trade book explains it" in hold.reason


def test_nothing_is_decided_while_an_order_of_the_trade_or_on_its_security_is_unsettled() -> None:
    for kw in ({"busy_tags": {"DC-1"}}, {"busy_securities": {"NEAR"}}):
        results = _checks(3, [DC], {"FAR": 0, "NEAR": 0}, ENTRY + RMS, **kw)
        assert all(not r.closes and not r.holds and not r.pending for r in results)


def test_fills_before_the_trade_opened_do_not_explain_its_close() -> None:
    early = [_fill("R9", "FAR", "SELL", 75, "100", at=T0 - timedelta(hours=1)),
             _fill("R2", "NEAR", "BUY", 75, "90.5")]
    (_, second) = _checks(2, [DC], {"FAR": 0, "NEAR": 0}, ENTRY + early)
    assert second.closes == () and len(second.holds) == 1


def test_intraday_square_off_at_15_20_is_named_so() -> None:
    at = datetime(2025, 2, 3, 15, 15, tzinfo=IST)  # + 5 minutes in _fill
    fills = [_fill("S1", "FAR", "SELL", 75, "120", at=at, product="INTRADAY"),
             _fill("S2", "NEAR", "BUY", 75, "95", at=at, product="INTRADAY")]
    (_, second) = _checks(2, [DC], {("FAR", "INTRADAY"): 0, ("NEAR", "INTRADAY"): 0}, fills,
                          products={"DC-1": "INTRADAY"})
    (close,) = second.closes
    assert close.kind == KIND_INTRADAY
    assert close.reason.startswith("intraday square-off 15:20")


def test_expired_legs_gone_from_positions_settle_at_the_final_settlement_price() -> None:
    ic = _trade("IC-1", _opt("C1", Side.SELL, OptionType.CE, "23400"),
                _opt("C2", Side.BUY, OptionType.CE, "23600"),
                _opt("P1", Side.SELL, OptionType.PE, "23500"), _fut("F1", Side.BUY))
    spot = Decimal("23456.70")
    after = datetime.combine(EXPIRY, datetime.min.time(), IST).replace(hour=15, minute=31)
    before = after.replace(minute=29)
    assert _checks(3, [ic], {}, [], now=before, settlement_price=lambda d: spot)[-1].closes == ()
    still = {"C1": -75, "C2": 75, "P1": -75, "F1": 75}  # the broker has not settled yet
    assert not _checks(3, [ic], still, [], now=after, settlement_price=lambda d: spot)[-1].closes
    (_, second) = _checks(2, [ic], {}, [], now=after, settlement_price=lambda d: spot)
    (close,) = second.closes
    assert close.kind == KIND_SETTLEMENT
    assert close.reason.startswith("expiry settlement at 23,456.70")
    assert [(x.security_id, x.price, x.how) for x in close.legs] == [
        ("C1", Decimal("56.70"), "settlement"), ("C2", Decimal("0"), "settlement"),
        ("P1", Decimal("43.30"), "settlement"), ("F1", spot, "settlement")]
    assert all(x.settlement_spot == spot for x in close.legs)


def test_expired_leg_without_a_settlement_price_is_held_to_settle_by_hand() -> None:
    after = datetime.combine(EXPIRY, datetime.min.time(), IST) + timedelta(days=1, hours=10)
    (_, second) = _checks(2, [DC], {"FAR": 75}, ENTRY, now=after, settlement_price=lambda d: None)
    (hold,) = second.holds
    assert "no settlement price" in hold.reason and "settle it by hand" in hold.reason
    assert "LONG 75 of security FAR" in hold.reason, "what the broker still holds is named"


def test_partial_broker_close_holds_the_trade_naming_the_exposure_once() -> None:
    only_far = [_fill("R1", "FAR", "SELL", 75, "110")]
    results = _checks(4, [DC], {"FAR": 0, "NEAR": -75}, ENTRY + only_far)
    assert [len(r.holds) for r in results] == [0, 1, 0, 0], "held once, not every check"
    (hold,) = results[1].holds
    assert hold.tag == "DC-1" and "partly closed at the broker" in hold.reason
    assert "The broker still holds SHORT 75 of security NEAR for it" in hold.reason
    assert results[1].closes == ()
    part = _checks(2, [DC], {"FAR": 25, "NEAR": -75},
                   [*ENTRY, _fill("R1", "FAR", "SELL", 50, "110")])[-1]
    (hold,) = part.holds
    assert "LONG 25 of security FAR" in hold.reason and "SHORT 75 of security NEAR" in hold.reason


def test_shared_security_whose_netting_cannot_say_whose_quantity_went_holds_both() -> None:
    a = _trade("A-1", _fut("NEAR", Side.SELL))
    b = _trade("B-1", _fut("NEAR", Side.SELL))
    fills = [_fill("R1", "NEAR", "BUY", 75, "90")]
    (_, second) = _checks(2, [a, b], {"NEAR": -75}, fills)
    assert second.closes == ()
    assert sorted(h.tag for h in second.holds) == ["A-1", "B-1"]
    assert all("cannot say whose quantity went" in h.reason for h in second.holds)
    # flat, both on the same side: every holder's leg went, at the key's VWAP
    fills = [_fill("R1", "NEAR", "BUY", 100, "90"), _fill("R2", "NEAR", "BUY", 50, "93")]
    (_, second) = _checks(2, [a, b], {"NEAR": 0}, fills)
    assert sorted(c.tag for c in second.closes) == ["A-1", "B-1"]
    assert {c.legs[0].price for c in second.closes} == {Decimal("91.00")}


def test_a_surplus_at_the_broker_leaves_the_trade_intact() -> None:
    results = _checks(3, [DC], {"FAR": 150, "NEAR": -75}, ENTRY)
    assert all(not r.closes and not r.holds and not r.pending for r in results)


def test_close_fills_use_the_charges_model_per_broker_order_and_none_for_settlement() -> None:
    legs = (BrokerClosedLeg(leg_index=0, security_id="FAR", quantity=75, price=Decimal("111.00"),
                            how="broker_order", order_ids=("R1", "R3"),
                            parts=((50, Decimal("110")), (25, Decimal("113")))),
            BrokerClosedLeg(leg_index=1, security_id="NEAR", quantity=75, price=Decimal("0"),
                            how="settlement", settlement_spot=Decimal("23456.70")))
    far, near = close_fills(DC, legs, T0.date())
    expect = sum((order_charges(kind="FUT", side="SELL", price=px, quantity=q, on=T0.date()).total
                  for q, px in ((50, Decimal("110")), (25, Decimal("113")))), Decimal(0))
    assert far.charges.total == expect and far.charges.brokerage > 0
    assert (far.leg.side, far.price, far.order_id, far.correlation_id) == (
        Side.SELL, Decimal("111.00"), "R1,R3", None)
    assert (near.leg.side, near.charges.total, near.order_id) == (Side.BUY, Decimal(0), "")
    with pytest.raises(ValueError, match="names legs"):
        close_fills(DC, legs[:1], T0.date())
    with pytest.raises(ValueError, match="the trade holds NEAR x75"):
        close_fills(DC, (legs[0], BrokerClosedLeg(leg_index=1, security_id="NEAR", quantity=50,
                                                 price=Decimal("1"), how="settlement")),
                    T0.date())


def test_settlement_value_of_futures_calls_and_puts() -> None:
    spot = Decimal("23456.70")
    assert settlement_value(_fut("F", Side.BUY), spot) == spot
    assert settlement_value(_opt("C", Side.BUY, OptionType.CE, "23400"), spot) == Decimal("56.70")
    assert settlement_value(_opt("C", Side.BUY, OptionType.CE, "23500"), spot) == 0
    assert settlement_value(_opt("P", Side.BUY, OptionType.PE, "23500"), spot) == Decimal("43.30")
    with pytest.raises(ValueError, match="no strike"):
        settlement_value(Leg(security_id="X", side=Side.BUY, quantity=75), spot)


def test_broker_fill_from_the_dhan_trade_book_row() -> None:
    row = {"orderId": "52000000009", "transactionType": "SELL", "securityId": "1000739309",
           "productType": "INTRADAY", "tradedQuantity": 75, "tradedPrice": 23500.05,
           "exchangeTime": "2025-02-03 15:20:00"}
    fill = BrokerFill.from_trade(WireTrade.from_wire(row))
    assert (fill.order_id, fill.product, fill.side, fill.quantity, fill.price) == (
        "52000000009", "INTRADAY", "SELL", 75, Decimal("23500.05"))
    assert fill.at == datetime(2025, 2, 3, 15, 20, tzinfo=IST)


def test_book_broker_close_message_needs_legs_and_a_known_how() -> None:
    with pytest.raises(ValueError, match="no legs"):
        BookBrokerClose(ts=T0, tag="DC-1", reason="x", kind=KIND_RMS, legs=())
    with pytest.raises(ValueError, match="how"):
        BrokerClosedLeg(leg_index=0, security_id="F", quantity=75, price=Decimal(1), how="guess")


def test_settlement_prices_only_after_the_close_and_cached() -> None:
    calls: list[datetime] = []
    now = [datetime(2025, 2, 6, 15, 0, tzinfo=IST)]

    def spot_at(t: datetime) -> float:
        calls.append(t)
        return 23456.704

    prices = SettlementPrices(spot_at=spot_at, now=lambda: now[0])
    assert prices(EXPIRY) is None and calls == [], "not before the expiry session closed"
    now[0] = now[0].replace(hour=16)
    assert prices(EXPIRY) == Decimal("23456.70") == prices(EXPIRY)
    assert calls == [datetime(2025, 2, 6, 15, 30, tzinfo=IST)], "asked at the close, once"
    assert SettlementPrices()(EXPIRY) is None and not SettlementPrices().available


# ------------------------------------------------------------------ surplus (reconcile.py)
def test_surplus_arithmetic() -> None:
    assert surplus_short(-75, -150) == 75 and surplus_long(-75, -150) == 0
    assert surplus_short(75, -75) == 75 and surplus_long(75, -75) == 0
    assert surplus_long(75, 150) == 75 and surplus_short(75, 150) == 0
    assert surplus_short(-75, 0) == 0 and surplus_long(-75, 0) == 0
    assert surplus_long(-75, 25) == 25


def _recon(checks, **kw):
    state, out = ReconState(), []
    for trades, broker in checks:
        result = reconcile(trades, broker, state, **kw)
        state = result.state
        out.append(result)
    return out


def test_confirmed_surplus_short_is_bought_back_once_and_never_while_an_order_is_unsettled() -> None:
    dup = {"FAR": 75, "NEAR": -150}  # a duplicate fill of the short leg
    first, second, third = _recon([([DC], dup)] * 3)
    assert first.buy_backs == (), "a first sighting is only pending"
    assert [f.action for f in second.findings] == [CONFIRMED]
    (bb,) = second.buy_backs
    assert (bb.side, bb.security_id, bb.product, bb.quantity, bb.expected, bb.broker) == (
        "SHORT", "NEAR", "MARGIN", 75, -75, -150)
    assert "surplus SHORT 75" in bb.text()
    assert third.buy_backs == (), "not a second time for the same quantities"
    busy = _recon([([DC], dup)] * 3, busy={"NEAR"})
    assert all(r.buy_backs == () for r in busy)
    # the order settles, the broker still shows the surplus: bought back then
    state = busy[-1].state
    again = reconcile([DC], dup, state)
    assert [b.quantity for b in again.buy_backs] == [75]
    # the quantities change while it stays mismatched: decided again for the new surplus
    more = reconcile([DC], {"FAR": 75, "NEAR": -225}, again.state)
    assert [b.quantity for b in more.buy_backs] == [150]


def test_confirmed_surplus_long_is_alerted_once_and_never_traded() -> None:
    first, second, third = _recon([([DC], {"FAR": 150, "NEAR": -75})] * 3)
    assert first.surplus_longs == () and second.buy_backs == () and third.surplus_longs == ()
    (sl,) = second.surplus_longs
    assert (sl.side, sl.security_id, sl.quantity) == ("LONG", "FAR", 75)
    assert "not traded automatically" in sl.text()


def test_settled_long_option_in_the_money_pays_exercise_stt_and_nothing_else_does() -> None:
    ic = _trade("IC-2", _opt("C1", Side.SELL, OptionType.CE, "23400"),
                _opt("C2", Side.BUY, OptionType.CE, "23300"),
                _opt("P1", Side.BUY, OptionType.PE, "23400"), _fut("F1", Side.BUY))
    spot = Decimal("23456.70")
    legs = tuple(BrokerClosedLeg(leg_index=i, security_id=x.leg.security_id, quantity=75,
                                 price=settlement_value(x.leg, spot), how="settlement",
                                 settlement_spot=spot) for i, x in enumerate(ic.legs))
    short_ce, long_ce, long_put, fut = close_fills(ic, legs, EXPIRY)
    assert long_ce.price == Decimal("156.70")
    # 0.125 % of the settlement value 156.70 x 75 = 14.69 -> ₹15 (2025; 0.15 % from Apr 2026)
    assert (long_ce.charges.stt, long_ce.charges.total) == (Decimal("15"), Decimal("15"))
    assert short_ce.charges.total == 0  # the writer pays no STT on assignment here
    assert long_put.price == 0 and long_put.charges.total == 0  # expired worthless
    assert fut.charges.total == 0
