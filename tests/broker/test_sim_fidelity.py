"""Dhan simulator fidelity (issue 10): contract terms from the exchange calendar, HTTP
behaviour under load, cost per request, Dhan's own correlation ids, freeze quantity, margin
blocked by pending orders, market hours / AMO, kill switch and order slicing. Every test talks
HTTP to a real simulator on loopback."""

from __future__ import annotations

import csv
import io
import re
import statistics
import threading
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from engine.broker.dhan.errors import OrderError
from engine.broker.dhan.ratelimit import RateLimits
from engine.dhan_sim import BuiltinMarket, SnapshotMarket
from engine.market.calendar import NseCalendar
from engine.timeutil import IST
from tests.broker.conftest import atm_option, order, wait_for

NO_LIMITS = RateLimits(windows={}, unique_interval=0.0)


def _headers(sim) -> dict[str, str]:
    return {"access-token": sim.sim.issue_token(), "client-id": sim.sim.account.client_id}


def _body(security_id: str, qty: int, **kw: Any) -> dict[str, Any]:
    body = {"transactionType": "BUY", "exchangeSegment": "NSE_FNO", "productType": "INTRADAY",
            "orderType": "MARKET", "validity": "DAY", "securityId": security_id,
            "quantity": qty, "price": 0.0}
    body.update(kw)
    return body


def _status(sim, order_id: str) -> str:
    return sim.sim.exchange.orders[order_id].status


class Clock:
    """A settable market clock (aware IST datetimes)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


# ----------------------------------------------------------------------- lot and freeze
def test_sim_lot_size_per_contract_from_calendar_one_lot_of_65_trades(make_sim, make_client):
    sim = make_sim()
    market, cal = sim.sim.market, NseCalendar()
    today = market.today()
    for row in market.instruments():
        if row.expiry is not None:
            assert row.lot_size == cal.lot_size(today, row.expiry), row.trading_symbol
    sid, lot = atm_option(sim)
    assert lot == 65, "NIFTY contracts listed since 2025-10-29 trade in lots of 65"
    client = make_client(sim)
    ack = client.place_order(order(sid, lot, "one-lot"))
    assert wait_for(lambda: client.get_order(ack.order_id).status == "TRADED")
    rows = list(csv.DictReader(io.StringIO(requests.get(sim.instruments_url, timeout=5).text)))
    mine = next(r for r in rows if r["SECURITY_ID"] == sid)
    assert mine["LOT_SIZE"] == "65.0" and mine["SM_FREEZE_QTY"] == "1756"


def test_sim_lot_sizes_coexist_on_a_revision_day(make_sim, make_client):
    # 2025-12-29: the 30-Dec contracts keep 75 to expiry, the January ones trade in 65
    sim = make_sim(market=BuiltinMarket(today=date(2025, 12, 29)), deep_pockets=True)
    lots = {r.expiry: r.lot_size for r in sim.sim.market.instruments()
            if r.instrument == "OPTIDX"}
    assert lots[date(2025, 12, 30)] == 75 and lots[date(2026, 1, 6)] == 65
    freeze = {r.lot_size: r.freeze_qty for r in sim.sim.market.instruments() if r.freeze_qty}
    assert freeze == {75: 1801, 65: 1756}
    client = make_client(sim)
    old = next(r for r in sim.sim.market.instruments() if r.expiry == date(2025, 12, 30))
    new = next(r for r in sim.sim.market.instruments() if r.expiry == date(2026, 1, 6))
    good = client.place_order(order(str(new.security_id), 65, "new-lot"))
    bad = client.place_order(order(str(old.security_id), 65, "old-lot"))
    assert wait_for(lambda: client.get_order(good.order_id).status == "TRADED")
    rejected = wait_for(lambda: (o := client.get_order(bad.order_id)).status == "REJECTED" and o)
    assert "multiple of lot size 75" in rejected.oms_error_description


def test_sim_snapshot_market_lot_and_freeze_per_contract():
    simulator = pytest.importorskip("engine.market.simulator")
    sm = simulator.SimulatedMarket(seed=7, start=datetime(2025, 12, 29, 10, 0, tzinfo=IST))
    market = SnapshotMarket.over_simulated(sm)
    rows = [r for r in market.instruments() if r.expiry is not None]
    cal = NseCalendar()
    assert {(r.expiry, r.lot_size) for r in rows} == {
        (r.expiry, cal.lot_size(date(2025, 12, 29), r.expiry)) for r in rows}
    assert {r.lot_size for r in rows} == {65, 75}
    assert all(r.freeze_qty == (1801 if r.lot_size == 75 else 1756) for r in rows)
    assert market.now() == datetime(2025, 12, 29, 10, 0, tzinfo=IST)


def test_sim_refuses_orders_above_freeze_and_modify_above_freeze(make_sim, make_client):
    sim = make_sim(deep_pockets=True)
    client = make_client(sim)
    sid, lot = atm_option(sim)
    with pytest.raises(OrderError, match="freeze limit of 1755") as info:
        client.place_order(order(sid, 1755 + lot, "too-big"))
    assert info.value.status == 400 and info.value.code == "DH-906"
    assert not sim.sim.exchange.orders, "nothing was accepted"
    ack = client.place_order(order(sid, 1755, "at-limit"))
    assert wait_for(lambda: client.get_order(ack.order_id).status == "TRADED")
    rest = client.place_order(order(sid, lot, "rest", order_type="LIMIT", price=Decimal("0.05")))
    wait_for(lambda: client.get_order(rest.order_id).status == "PENDING")
    resp = requests.put(f"{sim.api_base}/orders/{rest.order_id}", headers=_headers(sim),
                        json={"orderId": rest.order_id, "orderType": "LIMIT",
                              "quantity": 1755 + lot, "price": 0.05, "validity": "DAY"},
                        timeout=5)
    assert resp.status_code == 400 and resp.json()["errorCode"] == "DH-906"
    assert sim.sim.exchange.orders[rest.order_id].body["quantity"] == lot


def test_sim_slicing_endpoint_places_freeze_sized_orders(make_sim):
    sim = make_sim(deep_pockets=True)
    sid, lot = atm_option(sim)
    qty = 2 * 1755 + lot
    resp = requests.post(f"{sim.api_base}/orders/slicing", headers=_headers(sim), timeout=5,
                         json=_body(sid, qty, correlationId="big-1"))
    assert resp.status_code == 200
    answer = resp.json()
    assert isinstance(answer, list) and len(answer) == 3
    assert all(set(a) == {"orderId", "orderStatus"} for a in answer)
    ids = [a["orderId"] for a in answer]
    assert [int(sim.sim.exchange.orders[i].body["quantity"]) for i in ids] == [1755, 1755, lot]
    assert {sim.sim.exchange.orders[i].body["correlationId"] for i in ids} == {"big-1"}
    wait_for(lambda: requests.get(f"{sim.api_base}/orders", headers=_headers(sim), timeout=5)
             and all(_status(sim, i) == "TRADED" for i in ids))
    net = sum(p.net for p in sim.sim.exchange.positions.values())
    assert net == qty


# ------------------------------------------------------------------ HTTP under load
def _burst(url: str, headers: dict[str, str], body: dict[str, Any], n: int) -> list[object]:
    """``n`` threads POST at once, each on a fresh connection: status codes or errors."""
    gate = threading.Barrier(n)
    outcomes: list[object] = []

    def one() -> None:
        gate.wait()
        try:
            outcomes.append(requests.post(url, headers=headers, json=body, timeout=10).status_code)
        except requests.ConnectionError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_sim_concurrent_order_burst_has_no_connection_resets(make_sim):
    sim = make_sim(limits=NO_LIMITS, deep_pockets=True)
    sid, lot = atm_option(sim)
    body = _body(sid, lot, orderType="LIMIT", price=0.05)
    for _ in range(2):  # a listen backlog of 5 reset 8-22 of 60 here
        outcomes = _burst(f"{sim.api_base}/orders", _headers(sim), body, 60)
        assert outcomes == [200] * 60, [o for o in outcomes if o != 200][:3]


def test_sim_keep_alive_requests_do_not_stall_on_delayed_ack(make_sim):
    sim = make_sim(limits=NO_LIMITS)
    headers = _headers(sim)
    with requests.Session() as session:
        session.get(f"{sim.api_base}/fundlimit", headers=headers, timeout=5).raise_for_status()
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            r = session.get(f"{sim.api_base}/fundlimit", headers=headers, timeout=5)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200
    # a 40 ms delayed-ACK stall per request (Nagle) would put the median at ~44 ms
    assert statistics.median(times) < 0.015, f"median {statistics.median(times) * 1000:.1f} ms"


class CountingMarket:
    """A BuiltinMarket that counts quote look-ups (what re-pricing costs)."""

    def __init__(self, market: BuiltinMarket) -> None:
        self.market, self.quotes = market, 0

    def quote(self, security_id: str):
        self.quotes += 1
        return self.market.quote(security_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.market, name)


def test_sim_request_cost_does_not_grow_with_resting_orders(make_sim):
    market = CountingMarket(BuiltinMarket())
    sim = make_sim(market=market, limits=NO_LIMITS, deep_pockets=True)
    sid, lot = atm_option(sim)
    headers = _headers(sim)
    with requests.Session() as session:
        for _ in range(60):  # far below the bid: they rest
            session.post(f"{sim.api_base}/orders", headers=headers, timeout=5,
                         json=_body(sid, lot, orderType="LIMIT", price=0.05)).raise_for_status()
        orders = sim.sim.exchange.orders
        wait_for(lambda: session.get(f"{sim.api_base}/fundlimit", headers=headers, timeout=5)
                 and [o.status for o in orders.values()] == ["PENDING"] * 60)
        before = market.quotes
        for _ in range(30):
            session.get(f"{sim.api_base}/fundlimit", headers=headers, timeout=5)
        assert market.quotes == before, "a request must not re-price the resting orders"
        requests.post(f"{sim.url}/__admin/spot", json={"spot": 24010}, timeout=5)
        for _ in range(5):
            session.get(f"{sim.api_base}/fundlimit", headers=headers, timeout=5)
        assert market.quotes - before == 60, "each resting order re-priced once per tick"
    assert [o.status for o in orders.values()] == ["PENDING"] * 60


# ------------------------------------------------------------------- correlation ids
def test_sim_generated_correlation_ids_are_epoch_ms_unique_and_findable(make_sim):
    sim = make_sim(limits=NO_LIMITS)
    sid, lot = atm_option(sim)
    headers = _headers(sim)
    client_id = sim.sim.account.client_id
    t0 = int(time.time() * 1000)
    ids = [requests.post(f"{sim.api_base}/orders", headers=headers, json=_body(sid, lot),
                         timeout=5).json()["orderId"] for _ in range(5)]
    cids = []
    for oid in ids:
        got = wait_for(lambda oid=oid: (o := requests.get(
            f"{sim.api_base}/orders/{oid}", headers=headers, timeout=5).json()[0])
            ["orderStatus"] == "TRADED" and o)
        cids.append(got["correlationId"])
    assert len(set(cids)) == 5, cids
    for cid, oid in zip(cids, ids, strict=True):
        assert re.fullmatch(rf"{client_id}-\d{{13}}", cid), cid
        assert t0 <= int(cid.split("-")[1]) <= int(time.time() * 1000) + 10
        found = requests.get(f"{sim.api_base}/orders/external/{cid}", headers=headers, timeout=5)
        assert found.status_code == 200 and found.json()["orderId"] == oid


# --------------------------------------------------------------------------- funds
def test_sim_pending_orders_block_margin_until_cancel_or_fill(make_sim, make_client):
    sim = make_sim()
    client = make_client(sim)
    sid, lot = atm_option(sim)
    ask = Decimal(str(sim.sim.market.quote(sid).ask))
    price = (ask / 2).quantize(Decimal("0.05"))  # half the ask: the buy rests
    sod = price * lot * 10
    sim.sim.account.sod_limit = float(sod)
    rest = client.place_order(order(sid, lot, "blk-1", order_type="LIMIT", price=price))
    wait_for(lambda: client.get_order(rest.order_id).status == "PENDING")
    funds = client.fund_limits()
    assert funds.utilized_amount == price * lot
    assert funds.available_balance == sod - price * lot
    client.cancel_order(rest.order_id)
    assert client.fund_limits().utilized_amount == 0
    assert client.fund_limits().available_balance == sod
    # two resting buys that each need 60% of the limit: the second is refused
    first = client.place_order(order(sid, 6 * lot, "blk-2", order_type="LIMIT", price=price))
    wait_for(lambda: client.get_order(first.order_id).status == "PENDING")
    second = client.place_order(order(sid, 6 * lot, "blk-3", order_type="LIMIT", price=price))
    got = wait_for(lambda: (o := client.get_order(second.order_id)).status == "REJECTED" and o)
    assert "Insufficient Funds" in got.oms_error_description
    assert client.fund_limits().utilized_amount == price * 6 * lot
    # a fill moves the block into the position's margin, never both
    client.modify_order(_modify(first.order_id, ask, 6 * lot))
    wait_for(lambda: client.get_order(first.order_id).status == "TRADED")
    traded = client.get_order(first.order_id).average_traded_price
    assert client.fund_limits().utilized_amount == (traded * 6 * lot).quantize(Decimal("0.01"))


def _modify(order_id: str, price: Decimal, qty: int):
    from engine.broker.dhan.models import ModifyRequest

    return ModifyRequest(order_id=order_id, order_type="LIMIT", quantity=qty, price=price)


# ----------------------------------------------------------------------- market hours
def test_sim_outside_market_hours_only_amo_and_amo_fills_at_next_open(make_sim):
    clock = Clock(datetime(2026, 12, 2, 8, 30, tzinfo=IST))
    sim = make_sim(market=BuiltinMarket(today=date(2026, 12, 2), clock=clock),
                   limits=NO_LIMITS)
    sid, lot = atm_option(sim)
    headers = _headers(sim)

    def place(**kw: Any) -> requests.Response:
        return requests.post(f"{sim.api_base}/orders", headers=headers, timeout=5,
                             json=_body(sid, lot, **kw))

    def poke() -> None:  # past TRANSIT, then any request advances the book
        time.sleep(0.06)
        requests.get(f"{sim.api_base}/fundlimit", headers=headers, timeout=5)

    closed = place()
    assert closed.status_code == 400 and closed.json() == {
        "errorType": "Order_Error", "errorCode": "DH-906",
        "errorMessage": "Market is Closed! Want to place an offline order?"}
    amo = place(afterMarketOrder=True, amoTime="OPEN").json()["orderId"]
    amo30 = place(afterMarketOrder=True, amoTime="OPEN_30").json()["orderId"]
    poke()
    assert _status(sim, amo) == _status(sim, amo30) == "PENDING"
    clock.at = datetime(2026, 12, 2, 9, 15, tzinfo=IST)
    poke()
    assert _status(sim, amo) == "TRADED" and _status(sim, amo30) == "PENDING"
    assert place().status_code == 200, "in session: a regular order is accepted"
    clock.at = datetime(2026, 12, 2, 9, 45, tzinfo=IST)
    poke()
    assert _status(sim, amo30) == "TRADED"
    traded = sim.sim.exchange.orders[amo]
    assert traded.exchange_time == "2026-12-02 09:15:00"
    clock.at = datetime(2026, 12, 2, 15, 30, tzinfo=IST)
    assert place().json()["errorMessage"].startswith("Market is Closed")
    clock.at = datetime(2026, 12, 5, 11, 0, tzinfo=IST)  # a Saturday
    assert place().status_code == 400
    weekend = place(afterMarketOrder=True, amoTime="OPEN").json()["orderId"]
    poke()
    assert _status(sim, weekend) == "PENDING"
    clock.at = datetime(2026, 12, 7, 9, 15, 1, tzinfo=IST)  # Monday's open
    poke()
    assert _status(sim, weekend) == "TRADED"


# ----------------------------------------------------------------------- kill switch
def test_sim_kill_switch_refuses_orders_while_active(make_sim):
    sim = make_sim()
    sid, lot = atm_option(sim)
    headers = _headers(sim)
    url = f"{sim.api_base}/killswitch"
    on = requests.post(url, params={"killSwitchStatus": "ACTIVATE"}, headers=headers, timeout=5)
    assert on.status_code == 200 and "activated" in on.json()["killSwitchStatus"]
    assert requests.get(url, headers=headers, timeout=5).json()["killSwitchStatus"] == "ACTIVATE"
    refused = requests.post(f"{sim.api_base}/orders", headers=headers, json=_body(sid, lot),
                            timeout=5)
    assert refused.status_code == 400 and refused.json()["errorCode"] == "DH-906"
    assert "Kill Switch" in refused.json()["errorMessage"]
    bad = requests.post(url, params={"killSwitchStatus": "MAYBE"}, headers=headers, timeout=5)
    assert bad.status_code == 400 and bad.json()["errorCode"] == "DH-905"
    off = requests.post(url, params={"killSwitchStatus": "DEACTIVATE"}, headers=headers,
                        timeout=5)
    assert off.status_code == 200 and "deactivated" in off.json()["killSwitchStatus"]
    assert requests.post(f"{sim.api_base}/orders", headers=headers, json=_body(sid, lot),
                         timeout=5).status_code == 200
