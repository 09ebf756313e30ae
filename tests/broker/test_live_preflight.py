"""Before an order leaves: the margin preflight, the live-entry gate (static IP, DH-911) and
freeze-quantity slicing, against the real Dhan simulator over loopback HTTP."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from engine.broker.dhan.instruments import InstrumentMaster
from engine.broker.dhan.ip_check import StaticIpCheck
from engine.broker.dhan.live_broker import DhanLiveBroker, OrderRejectedError
from engine.broker.dhan.margin import DhanMarginCalculator
from engine.broker.dhan.slicing import MasterOrderLimits
from engine.clock import RealClock
from engine.dhan_sim import SimServer
from engine.execution.intents import IntentStore
from engine.execution.preflight import LiveGate, LivePreflight
from engine.messages.legs import InstrumentKind, Leg, Side
from tests.rehearsal.conftest import sim_client, sim_quotes

NEAR, FAR = "35000", "35001"  # BuiltinMarket's near / far NIFTY futures
DAY = date(2025, 2, 3)
ELSEWHERE = "203.0.113.7"  # TEST-NET-3: never this machine


def _calendar(sim: SimServer) -> tuple[Leg, Leg]:
    lot = sim.sim.exchange.row(NEAR).lot_size
    return (Leg(security_id=NEAR, side=Side.SELL, quantity=lot, kind=InstrumentKind.FUT),
            Leg(security_id=FAR, side=Side.BUY, quantity=lot, kind=InstrumentKind.FUT))


def _setup(sim: SimServer, pool, *, util: str = "0.8", **kw):
    client = sim_client(sim, get_retries=1)
    alerts: list[str] = []
    gate = LiveGate(alerts.append)
    preflight = LivePreflight(calculator=DhanMarginCalculator(client), funds=client.fund_limits,
                              max_util=lambda: Decimal(util), gate=gate)
    kw.setdefault("quotes", sim_quotes(sim))
    broker = DhanLiveBroker(client, RealClock(), intents=IntentStore(pool), fill_timeout_s=3.0,
                            poll_interval_s=0.02, resolve_window_s=2.0, preflight=preflight,
                            **kw)
    return client, broker, gate, alerts


def _orders_sent(sim: SimServer) -> int:
    return len(sim.sim.requests("POST", "/v2/orders"))


def _intents(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM order_intents ORDER BY id").fetchall()


def test_margin_refusal_names_the_figures_and_sends_nothing(make_sim, pool) -> None:
    sim = make_sim()
    client, broker, _, _ = _setup(sim, pool)
    legs = _calendar(sim)
    need = DhanMarginCalculator(client).basket(
        [replace(x, price=Decimal(str(sim.sim.market.quote(x.security_id).ltp)))
         for x in legs]).total
    sim.sim.account.sod_limit = float(need)  # available = need, but only 80% may be used

    with pytest.raises(OrderRejectedError) as info:
        broker.execute(legs, correlation_base="DC-M1", trade_date=DAY)

    err = info.value
    assert err.status == "NOT_SENT" and err.order_id is None
    text = str(err)
    assert "margin preflight" in text and "whole structure" in text
    assert "LIVE_MAX_MARGIN_UTIL 0.8" in text
    figures = [Decimal(x.replace(",", "")) for x in re.findall(r"₹([0-9.]+)", text)]
    available = client.fund_limits().available_balance
    assert available in figures and (available * Decimal("0.8")).quantize(Decimal("0.01")) \
        in figures, text
    assert _orders_sent(sim) == 0, "refused before any order left"
    assert _intents(pool) == [], "not even an intent was written"


def test_expiry_day_margin_is_added_when_held_into_the_jump(make_sim, pool) -> None:
    sim = make_sim()
    _, broker, _, _ = _setup(sim, pool, util="1")
    context = {"params": {"margin": {"held_into_jump": True, "approximation": {
        "expiry_day_extra": "2000000000", "jump_day": "2025-02-06"}}}}

    with pytest.raises(OrderRejectedError) as info:
        broker.execute(_calendar(sim), correlation_base="DC-M2", trade_date=DAY,
                       context=context)

    assert "expiry-day margin ₹2000000000 (held into 2025-02-06)" in str(info.value)
    assert _orders_sent(sim) == 0


@pytest.mark.parametrize("fault", [
    {"kind": "rate_limit", "count": None},
    {"kind": "timeout", "seconds": 3.0, "count": None},
    {"kind": "status", "status": 200, "body": {"unexpected": True}, "count": None},
], ids=["429", "timeout", "no-total"])
def test_margin_calculator_fault_refuses_the_entry_never_sent_blind(make_sim, pool,
                                                                     fault) -> None:
    sim = make_sim()
    _, broker, _, _ = _setup(sim, pool)
    kind = fault.pop("kind")
    sim.sim.faults.add(kind, method="POST", path="/v2/margincalculator/multi", **fault)

    with pytest.raises(OrderRejectedError) as info:
        broker.execute(_calendar(sim), correlation_base="DC-M3", trade_date=DAY)

    assert "margin preflight failed" in str(info.value)
    assert "entry not sent" in str(info.value)
    assert sim.sim.requests("POST", "/v2/margincalculator/multi"), "it did ask"
    assert _orders_sent(sim) == 0 and _intents(pool) == []


def test_entry_within_the_margin_goes_out_with_its_figures_recorded(make_sim, pool) -> None:
    sim = make_sim()
    _, broker, _, _ = _setup(sim, pool)
    fills = broker.execute(_calendar(sim), correlation_base="DC-M4", trade_date=DAY)

    assert len(fills) == 2 and _orders_sent(sim) == 2
    checked = _intents(pool)[0]["payload"]["preflight"]
    assert Decimal(checked["required"]) <= Decimal(checked["cap"])
    assert checked["max_util"] == "0.8" and Decimal(checked["dhan_margin"]) > 0


def test_dh911_from_an_order_pauses_live_entries_with_one_alert(make_sim, pool) -> None:
    sim = make_sim()
    _, broker, gate, alerts = _setup(sim, pool)
    sim.sim.set_static_ip(sim.sim.account.client_id, ELSEWHERE)

    with pytest.raises(OrderRejectedError) as info:
        broker.execute(_calendar(sim), correlation_base="DC-I1", trade_date=DAY)
    assert "DH-911" in str(info.value) or "Invalid IP" in str(info.value)
    assert gate.blocked("ip")
    sent = _orders_sent(sim)
    assert sent == 1, "the first (BUY) leg was refused; nothing else went out"

    with pytest.raises(OrderRejectedError, match="live entries paused: ip"):
        broker.execute(_calendar(sim), correlation_base="DC-I2", trade_date=DAY)
    assert _orders_sent(sim) == sent, "paused: the second entry sent nothing"
    assert len([a for a in alerts if "LIVE ENTRIES PAUSED" in a]) == 1


def test_static_ip_preflight_mismatch_pauses_then_match_resumes(make_sim, pool) -> None:
    sim = make_sim()
    client, broker, gate, alerts = _setup(sim, pool)
    check = StaticIpCheck(client, lambda: f"{sim.url}/ip-echo", gate)
    with pytest.raises(Exception, match="No static IP"):
        client.static_ips()  # Dhan's error array (HTTP 200) is an error

    sim.sim.set_static_ip(sim.sim.account.client_id, ELSEWHERE)
    first, again = check.run(), check.run()
    assert first.status == again.status == "mismatch"
    assert first.egress == "127.0.0.1" and first.whitelisted == (ELSEWHERE,)
    assert ELSEWHERE in first.detail and "DH-911" in first.detail
    assert len(alerts) == 1, "one alert for one problem"
    with pytest.raises(OrderRejectedError, match=r"egress IP is 127\.0\.0\.1"):
        broker.execute(_calendar(sim), correlation_base="DC-I3", trade_date=DAY)
    assert _orders_sent(sim) == 0

    sim.sim.set_static_ip(sim.sim.account.client_id, "127.0.0.1", "SECONDARY")
    assert check.run().status == "match" and not gate.blocked("ip")
    assert "resumed" in alerts[-1] and len(alerts) == 2
    assert len(broker.execute(_calendar(sim), correlation_base="DC-I4", trade_date=DAY)) == 2


def test_static_ip_check_that_cannot_be_made_changes_nothing(make_sim, pool) -> None:
    sim = make_sim()
    client, _, gate, alerts = _setup(sim, pool)
    result = StaticIpCheck(client, lambda: f"{sim.url}/no-such-echo", gate).run()
    assert result.status == "unknown" and "egress IP not read" in result.detail
    assert not gate.blocked("ip") and alerts == []


def test_sim_ip_endpoints_follow_dhan_rules(make_sim) -> None:
    sim = make_sim()
    client = sim_client(sim)
    t = client.transport
    body = {"dhanClientId": client.client_id, "ip": "198.51.100.4", "ipFlag": "PRIMARY"}
    assert t.call("PUT", "/ip/modifyIP", klass=None, body=body)[0]["status"] == "ERROR"
    assert t.call("POST", "/ip/setIP", klass=None, body=body)["status"] == "SUCCESS"
    assert t.call("POST", "/ip/setIP", klass=None, body=body)[0]["status"] == "ERROR"
    assert t.call("POST", "/ip/setIP", klass=None,
                  body={**body, "ip": "not-an-ip", "ipFlag": "SECONDARY"})[0]["status"] == "ERROR"
    assert client.static_ips()["primaryIP"] == "198.51.100.4"
    assert sim.sim.account.allowed_ips == {"198.51.100.4"}


def test_leg_above_the_freeze_quantity_each_slice_is_its_own_tracked_intent(make_sim, pool
                                                                          ) -> None:
    sim = make_sim()
    market = sim.sim.market
    chain = market.option_chain(market.expiries()[0])
    sid = str(chain[min(chain, key=lambda k: abs(k - market.spot()))]["CE"].security_id)
    limits = MasterOrderLimits(lambda day: InstrumentMaster.download(sim.instruments_url,
                                                                     as_of=day))
    biggest, lot = limits(sid, DAY), sim.sim.exchange.row(sid).lot_size
    _, broker, _, _ = _setup(sim, pool, max_order_qty=limits)
    leg = Leg(security_id=sid, side=Side.BUY, quantity=2 * biggest + lot, kind=InstrumentKind.OPT)
    (fill,) = broker.execute((leg,), correlation_base="IC-F1", trade_date=DAY)

    rows = _intents(pool)
    parent = [r for r in rows if r["sliced"]]
    children = [r for r in rows if not r["sliced"]]
    assert len(parent) == 1 and parent[0]["quantity"] == leg.quantity
    assert [r["quantity"] for r in children] == [biggest, biggest, lot]
    assert all(r["parent_id"] == parent[0]["id"] for r in children)
    assert all(r["state"] == "TRADED" and r["filled_qty"] == r["quantity"] and r["order_id"]
               for r in children), "every slice tracked to its fill"
    assert [r["order_id"] for r in children] == fill.order_id.split(",")
    assert sorted(int(o.body["quantity"]) for o in sim.sim.exchange.orders.values()) == \
        sorted([biggest, biggest, lot])
