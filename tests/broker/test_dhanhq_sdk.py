"""The official ``dhanhq`` SDK (2.3.0) against the Dhan simulator: what a third-party client
sends (its URLs, headers and payloads, e.g. ``dhanClientId`` injected into every body, ``GET
/trades/`` with a trailing slash, the kill switch POST without a body) must be understood.

The SDK has no base-URL option: ``DhanHTTP.base_url`` (shared by every REST mixin through
the context) and ``DhanLogin.API_BASE_URL`` (renew token, profile) are set on the instances.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pytest

from engine.dhan_sim import SimServer
from tests.broker.conftest import atm_option, wait_for

dhanhq_sdk = pytest.importorskip("dhanhq")


def _sdk(sim: SimServer, token: str) -> Any:
    ctx = dhanhq_sdk.DhanContext(sim.sim.account.client_id, token)
    ctx.get_dhan_http().base_url = sim.api_base
    ctx.get_dhan_login().API_BASE_URL = sim.api_base
    return dhanhq_sdk.dhanhq(ctx), ctx.get_dhan_login()


def _ok(reply: dict[str, Any]) -> Any:
    assert reply["status"] == "success", reply
    return reply["data"]


def _order(dhan: Any, order_id: str) -> dict[str, Any]:
    data = _ok(dhan.get_order_by_id(order_id))
    return data[0] if isinstance(data, list) else data


def _until(dhan: Any, order_id: str, status: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        time.sleep(0.06)  # well inside the 20/s non-trading limit
        got = _order(dhan, order_id)
        return got if got["orderStatus"] == status else None

    return wait_for(check, timeout=5)


def test_dhanhq_sdk_account_market_data_orders_and_token(make_sim) -> None:
    sim: SimServer = make_sim(deep_pockets=True)
    token = sim.sim.issue_token()
    dhan, login = _sdk(sim, token)
    client_id = sim.sim.account.client_id
    sid, lot = atm_option(sim)

    funds = _ok(dhan.get_fund_limits())
    assert funds["dhanClientId"] == client_id and funds["availabelBalance"] == 1e10
    assert _ok(dhan.get_positions()) == [] and _ok(dhan.get_order_list()) == []

    expiries = _ok(dhan.expiry_list(13, "IDX_I"))["data"]
    assert expiries == [e.isoformat() for e in sim.sim.market.expiries()]
    chain = _ok(dhan.option_chain(13, "IDX_I", expiries[0]))["data"]
    assert chain["last_price"] == sim.sim.market.spot()
    assert all(key.endswith(".000000") for key in chain["oc"])
    assert int(sid) in {side["ce"]["security_id"] for side in chain["oc"].values()}
    quote = _ok(dhan.quote_data({"NSE_FNO": [int(sid)]}))["data"]["NSE_FNO"][sid]
    book = sim.sim.market.quote(sid)
    assert quote["depth"]["sell"][0]["price"] == book.ask and quote["last_price"] == book.ltp

    # MARKET: traded at the ask, in the trade book and the positions
    placed = _ok(dhan.place_order(security_id=sid, exchange_segment=dhan.NSE_FNO,
                                  transaction_type=dhan.BUY, quantity=lot,
                                  order_type=dhan.MARKET, product_type=dhan.INTRA, price=0,
                                  tag="sdk-mkt"))
    assert placed["orderStatus"] == "TRANSIT"
    traded = _until(dhan, placed["orderId"], "TRADED")
    assert traded["averageTradedPrice"] == book.ask and traded["correlationId"] == "sdk-mkt"
    trades = _ok(dhan.get_trade_book())
    assert [(t["orderId"], t["tradedQuantity"]) for t in trades] == [(placed["orderId"], lot)]
    assert _ok(dhan.get_trade_book(placed["orderId"]))[0]["tradedPrice"] == book.ask
    (position,) = _ok(dhan.get_positions())
    assert (position["securityId"], position["netQty"], position["positionType"]) == (
        sid, lot, "LONG")
    found = _ok(dhan.get_order_by_correlationID("sdk-mkt"))
    assert found["orderId"] == placed["orderId"] and found["orderStatus"] == "TRADED"

    # LIMIT far below the bid rests; cancel
    limit = _ok(dhan.place_order(security_id=sid, exchange_segment=dhan.NSE_FNO,
                                 transaction_type=dhan.BUY, quantity=lot,
                                 order_type=dhan.LIMIT, product_type=dhan.INTRA, price=0.05,
                                 tag="sdk-lmt"))
    _until(dhan, limit["orderId"], "PENDING")
    assert _ok(dhan.get_fund_limits())["utilizedAmount"] > traded["averageTradedPrice"] * lot
    cancelled = _ok(dhan.cancel_order(limit["orderId"]))
    assert cancelled == {"orderId": limit["orderId"], "orderStatus": "CANCELLED"}
    assert _order(dhan, limit["orderId"])["orderStatus"] == "CANCELLED"
    assert {o["orderId"] for o in _ok(dhan.get_order_list())} == {placed["orderId"],
                                                                   limit["orderId"]}
    missing = dhan.get_order_by_correlationID("no-such-tag")
    assert missing["status"] == "failure" and missing["remarks"]["error_code"] == "DH-906"

    # slicing above the freeze quantity: one SDK call, freeze-sized orders
    sliced = _ok(dhan.place_slice_order(security_id=sid, exchange_segment=dhan.NSE_FNO,
                                        transaction_type=dhan.SELL, quantity=1755 + lot,
                                        order_type=dhan.MARKET, product_type=dhan.INTRA,
                                        price=0, tag="sdk-slice"))
    assert [int(sim.sim.exchange.orders[s["orderId"]].body["quantity"]) for s in sliced] == [
        1755, lot]
    too_big = dhan.place_order(security_id=sid, exchange_segment=dhan.NSE_FNO,
                               transaction_type=dhan.SELL, quantity=1755 + lot,
                               order_type=dhan.MARKET, product_type=dhan.INTRA, price=0)
    assert too_big["status"] == "failure" and too_big["remarks"]["error_code"] == "DH-906"

    # kill switch: POST with the status in the query and no body; Dhan activates it only
    # with no open position and no pending order
    busy = dhan.kill_switch("activate")
    assert busy["status"] == "failure" and "open position" in busy["remarks"]["error_message"]
    sim.sim.exchange.positions.clear()
    for o in sim.sim.exchange.orders.values():
        if o.status in ("TRANSIT", "PENDING", "PART_TRADED"):
            sim.sim.exchange.cancel(o)
    assert "activated" in _ok(dhan.kill_switch("activate"))["killSwitchStatus"]
    refused = dhan.place_order(security_id=sid, exchange_segment=dhan.NSE_FNO,
                               transaction_type=dhan.BUY, quantity=lot, order_type=dhan.MARKET,
                               product_type=dhan.INTRA, price=0)
    assert refused["status"] == "failure" and refused["remarks"]["error_code"] == "DH-906"
    assert _ok(dhan.status_kill_switch())["killSwitchStatus"] == "ACTIVATE"
    assert "deactivated" in _ok(dhan.kill_switch("deactivate"))["killSwitchStatus"]

    # an endpoint the simulator does not serve answers in Dhan's error shape
    ledger = dhan.ledger_report(date.today().isoformat(), date.today().isoformat())
    assert ledger["status"] == "failure" and ledger["remarks"]["error_code"] == "DH-905"

    # profile, then renew: the old token is refused at once, the new one works
    profile = login.user_profile(token)
    assert profile["dhanClientId"] == client_id and profile["dataPlan"] == "Active"
    renewed = login.renew_token(token)
    assert renewed["token"] != token and renewed["expiryTime"]
    old = dhan.get_fund_limits()
    assert old["status"] == "failure" and old["remarks"]["error_message"] == "Invalid Token"
    fresh, _ = _sdk(sim, renewed["token"])
    assert _ok(fresh.get_fund_limits())["dhanClientId"] == client_id
