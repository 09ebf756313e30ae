"""DhanClient against the real simulator over HTTP: every endpoint and response shape."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from engine.broker.dhan.marketdata import strike_key
from engine.broker.dhan.models import ModifyRequest
from engine.timeutil import IST
from tests.broker.conftest import atm_option, order, wait_for


def test_client_place_market_order_traded_at_ask_with_trade_and_position(sim, client):
    sid, lot = atm_option(sim)
    ask = sim.sim.market.quote(sid).ask
    ack = client.place_order(order(sid, lot, "tagA-1"))
    assert ack.status == "TRANSIT" and ack.order_id.isdigit()
    filled = wait_for(lambda: (o := client.get_order(ack.order_id)) and o.status == "TRADED" and o)
    assert filled.correlation_id == "tagA-1"
    assert filled.average_traded_price == Decimal(str(ask))
    assert filled.filled_qty == lot and filled.remaining_quantity == 0
    by_cid = client.get_order_by_correlation_id("tagA-1")
    assert by_cid is not None and by_cid.order_id == ack.order_id
    assert [o.order_id for o in client.order_list()] == [ack.order_id]
    trades = client.trades()
    assert len(trades) == 1 and trades[0].traded_price == Decimal(str(ask))
    assert client.trades(ack.order_id)[0].traded_quantity == lot
    pos = client.positions()
    assert len(pos) == 1 and pos[0].net_qty == lot and pos[0].position_type == "LONG"
    funds = client.fund_limits()
    assert funds.utilized_amount == (Decimal(str(ask)) * lot).quantize(Decimal("0.01"))
    assert funds.available_balance == funds.sod_limit - funds.utilized_amount


def test_client_trades_trailing_slash_path_accepted(sim, client):
    resp = client.transport.session.get(f"{sim.api_base}/trades/",
                                        headers={"access-token": sim.sim.issue_token()})
    assert resp.status_code == 200 and resp.json() == []


def test_client_sell_after_buy_realizes_profit_and_closes(sim, client):
    sid, lot = atm_option(sim)
    buy = client.place_order(order(sid, lot, "rt-1"))
    wait_for(lambda: client.get_order(buy.order_id).status == "TRADED")
    sim.sim.market.set_spot(24200)
    sell = client.place_order(order(sid, lot, "rt-2", transaction_type="SELL"))
    wait_for(lambda: client.get_order(sell.order_id).status == "TRADED")
    pos = client.positions()[0]
    assert pos.net_qty == 0 and pos.position_type == "CLOSED"
    assert pos.realized_profit > 0
    assert client.fund_limits().available_balance > Decimal(1_000_000)


def test_client_limit_order_modify_then_cancel(sim, client):
    sid, lot = atm_option(sim)
    ack = client.place_order(order(sid, lot, "lim-1", order_type="LIMIT", price=Decimal("1.00")))
    wait_for(lambda: client.get_order(ack.order_id).status == "PENDING")
    mod = client.modify_order(ModifyRequest(order_id=ack.order_id, order_type="LIMIT",
                                            quantity=2 * lot, price=Decimal("1.10")))
    assert mod.order_id == ack.order_id and mod.status == "PENDING"
    o = client.get_order(ack.order_id)
    assert o.quantity == 2 * lot and o.price == Decimal("1.1")
    cancel = client.cancel_order(ack.order_id)  # simulator answers 202
    assert cancel.status == "CANCELLED"
    assert client.get_order(ack.order_id).status == "CANCELLED"


def test_client_get_order_accepts_bare_object_and_unknown_is_none(make_sim, make_client):
    sim = make_sim(order_by_id_shape="dict")
    client = make_client(sim)
    sid, lot = atm_option(sim)
    ack = client.place_order(order(sid, lot, "shape-1"))
    assert client.get_order(ack.order_id).order_id == ack.order_id
    assert client.get_order("999") is None
    assert client.get_order_by_correlation_id("nope") is None


def test_client_margin_single_and_multi_both_styles(sim, client):
    sid, lot = atm_option(sim)
    ask = Decimal(str(sim.sim.market.quote(sid).ask))
    one = client.margin(security_id=sid, exchange_segment="NSE_FNO", transaction_type="BUY",
                        quantity=lot, product_type="INTRADAY", price=ask)
    assert one["totalMargin"] == (ask * lot).quantize(Decimal("0.01"))
    assert one["insufficientBalance"] == 0 and isinstance(one["leverage"], str)
    script = {"exchangeSegment": "NSE_FNO", "transactionType": "SELL", "quantity": lot,
              "productType": "INTRADAY", "securityId": sid, "price": float(ask)}
    sdk = client.margin_multi([script, script])
    docs = client.margin_multi([script, script], style="docs")
    assert sdk["totalMargin"] == docs["totalMargin"] > 0


def test_client_profile_and_data_endpoints(sim, client):
    prof = client.profile()
    assert prof["dhanClientId"] == sim.sim.account.client_id
    datetime.strptime(prof["tokenValidity"], "%d/%m/%Y %H:%M")
    expiries = client.expiry_list()
    assert expiries == sorted(expiries) and expiries[0] == sim.sim.market.expiries()[0]
    chain = client.option_chain(expiries[0])
    assert chain.last_price == Decimal("24000.0")
    atm = chain.strikes[Decimal(24000)]
    assert set(atm) == {"CE", "PE"} and atm["CE"].bid < atm["CE"].ask
    assert atm["CE"].security_id == atm_option(sim)[0]
    ce = int(atm["CE"].security_id)
    assert client.ltp({"NSE_FNO": [ce], "IDX_I": [13, 999999]}) == {
        "NSE_FNO": {str(ce): atm["CE"].last_price}, "IDX_I": {"13": Decimal("24000.0")}}
    ohlc = client.ohlc({"IDX_I": [13]})
    assert set(ohlc["IDX_I"]["13"]["ohlc"]) == {"open", "close", "high", "low"}
    quote = client.quote({"NSE_FNO": [ce]})
    assert len(quote["NSE_FNO"][str(ce)]["depth"]["buy"]) == 5
    daily = client.historical("13", "IDX_I", "INDEX", date(2026, 1, 5), date(2026, 1, 10))
    assert len(daily.close) == 5 and len(daily.timestamp) == 5
    start = datetime(2026, 1, 5, 9, 15, tzinfo=IST)
    intraday = client.intraday(str(ce), "NSE_FNO", "OPTIDX", 5, start, start + timedelta(hours=1),
                               oi=True)
    assert len(intraday.close) == 12 and len(intraday.open_interest) == 12
    empty = client.historical("424242", "NSE_FNO", "OPTIDX", date(2026, 1, 5), date(2026, 1, 10))
    assert empty.close == ()


def test_client_strike_key_six_decimals():
    assert strike_key(25000) == "25000.000000"
    assert strike_key(Decimal("24950.5")) == "24950.500000"


def test_client_order_request_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="transaction_type"):
        order("1", 75, "x", transaction_type="HOLD")
    with pytest.raises(ValueError, match="correlation_id"):
        order("1", 75, "x" * 26)
    with pytest.raises(ValueError, match="needs a price"):
        order("1", 75, "x", order_type="LIMIT")


def test_client_place_payload_omits_fields_that_do_not_apply():
    body = order("42", 75, "cid-1").to_payload("1000000001")
    assert "" not in body.values()
    assert not {"triggerPrice", "disclosedQuantity", "amoTime", "boProfitValue"} & set(body)
    assert body["quantity"] == 75 and body["price"] == 0.0 and body["securityId"] == "42"
