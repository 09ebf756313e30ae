"""Dhan's multi-order margin calculator: the simulator's endpoint (the engine's documented
approximation, hedge benefit included) and the live service that asks it, over HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.broker.dhan.errors import DhanError
from engine.broker.dhan.margin import DhanMarginCalculator, parse_multi_margin
from engine.messages.legs import Leg, Side
from engine.risk.margin import EXPOSURE_PCT, estimate_margin


def _condor(sim) -> list[Leg]:
    """Short CE/PE 200 points out, wings 200 further, nearest expiry, one lot, at the LTP."""
    market = sim.sim.market
    expiry = market.expiries()[0]
    chain = market.option_chain(expiry)
    atm = min(chain, key=lambda k: abs(k - market.spot()))
    legs = []
    for side, strike, ot in (("SELL", atm + 200, "CE"), ("BUY", atm + 400, "CE"),
                             ("SELL", atm - 200, "PE"), ("BUY", atm - 400, "PE")):
        entry = chain[strike][ot]
        lot = sim.sim.exchange.row(str(entry.security_id)).lot_size
        legs.append(Leg(security_id=str(entry.security_id), side=Side(side), quantity=lot,
                        option_type=ot, expiry=expiry, strike=Decimal(str(strike)),
                        price=Decimal(str(entry.ltp))))
    return legs


def test_simulator_prices_the_basket_together_with_the_approximation(sim, client):
    legs = _condor(sim)
    live = DhanMarginCalculator(client).basket(legs)
    market = sim.sim.market
    expected = estimate_margin(legs, Decimal(str(market.spot())), market.today(),
                               market.calendar, expiry_day=False)
    assert live.total == expected.total and live.span == expected.span
    assert live.exposure == expected.exposure == EXPOSURE_PCT * Decimal(str(market.spot())) \
        * 2 * legs[0].quantity
    assert live.hedge_benefit == expected.hedge_benefit > 0
    # leg by leg the single-order calculator sees two naked shorts: far more
    summed = sum(client.margin(security_id=x.security_id, exchange_segment="NSE_FNO",
                               transaction_type=x.side.value, quantity=x.quantity,
                               product_type="MARGIN", price=x.price)["totalMargin"]
                 for x in legs)
    assert summed > 2 * live.total


def test_multi_margin_refuses_an_unknown_contract_and_an_unpriced_leg(sim, client):
    calc = DhanMarginCalculator(client)
    bad = Leg(security_id="99999999", side=Side.SELL, quantity=75, option_type="CE",
              expiry=sim.sim.market.expiries()[0], strike=Decimal(24000), price=Decimal(10))
    with pytest.raises(DhanError):
        calc.basket([bad])
    unpriced = Leg(security_id="1", side=Side.SELL, quantity=75, option_type="CE")
    with pytest.raises(ValueError, match="leg 1: the margin calculator needs its price"):
        calc.scripts([unpriced])


def test_parse_accepts_both_documented_spellings() -> None:
    snake = parse_multi_margin({"total_margin": "150000.00", "span_margin": "50000.00",
                                "exposure_margin": "30000.00", "hedge_benefit": "",
                                "currency": "INR"})
    assert snake.total == Decimal("150000.00") and snake.span == Decimal("50000.00")
    assert snake.exposure == Decimal("30000.00") and snake.hedge_benefit is None
    camel = parse_multi_margin({"totalMargin": Decimal("15929.34"), "spanMargin": 9000,
                                "exposure": Decimal("6929.34"), "hedgeBenefit": 0.0})
    assert camel.total == Decimal("15929.34") and camel.exposure == Decimal("6929.34")
    assert camel.to_json()["hedge_benefit"] == "0.0"
    with pytest.raises(DhanError, match="no usable total margin"):
        parse_multi_margin({"status": "failed", "data": {"805": "bad"}})
