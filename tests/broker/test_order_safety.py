"""Place-order is never blindly retried: lost responses and timeouts end in exactly one order."""

from __future__ import annotations

import time

import pytest

from engine.broker.dhan.correlation import make_correlation_id
from engine.broker.dhan.errors import OrderStateUnknownError
from tests.broker.conftest import atm_option, order


def _orders(sim, cid):
    return [o for o in sim.sim.exchange.orders.values() if o.body.get("correlationId") == cid]


def test_order_safety_dropped_response_found_by_correlation_id_placed_once(sim, client):
    sid, lot = atm_option(sim)
    cid = make_correlation_id("IC-20261120-001", "short_ce")
    sim.sim.faults.add("drop", method="POST", path="/v2/orders")
    ack = client.place_order(order(sid, lot, cid))
    placed = _orders(sim, cid)
    assert len(placed) == 1 and ack.order_id == placed[0].order_id
    assert len(sim.sim.requests("POST", "/v2/orders")) == 1
    assert sim.sim.requests("GET", f"/v2/orders/external/{cid}")


def test_order_safety_502_without_body_after_placing_found_once(sim, client):
    sid, lot = atm_option(sim)
    sim.sim.faults.add("drop_502", method="POST", path="/v2/orders")
    ack = client.place_order(order(sid, lot, "lost-502"))
    assert [o.order_id for o in _orders(sim, "lost-502")] == [ack.order_id]
    assert len(sim.sim.requests("POST", "/v2/orders")) == 1


def test_order_safety_timeout_on_place_lookup_exactly_one_order(sim, make_client):
    client = make_client(sim, timeout=0.4)
    sid, lot = atm_option(sim)
    sim.sim.faults.add("timeout", method="POST", path="/v2/orders", seconds=1.5)
    ack = client.place_order(order(sid, lot, "slow-1"))
    assert [o.order_id for o in _orders(sim, "slow-1")] == [ack.order_id]
    assert len(sim.sim.requests("POST", "/v2/orders")) == 1


def test_order_safety_lost_while_in_transit_found_in_order_book(make_sim, make_client):
    sim = make_sim(transit_sec=30.0)  # lookup by correlationId answers 404 in TRANSIT
    client = make_client(sim)
    sid, lot = atm_option(sim)
    sim.sim.faults.add("drop", method="POST", path="/v2/orders")
    ack = client.place_order(order(sid, lot, "transit-1"))
    assert ack.status == "TRANSIT"
    assert [o.order_id for o in _orders(sim, "transit-1")] == [ack.order_id]
    assert sim.sim.requests("GET", "/v2/orders")


def test_order_safety_5xx_not_found_is_unknown_never_resent(sim, client):
    # A 5xx without proof of absence: the order may exist (or appear later). It used to be
    # re-sent once the lookups said "not found"; now it is never re-sent from the client.
    sid, lot = atm_option(sim)
    sim.sim.faults.add("status", method="POST", path="/v2/orders", status=503)
    with pytest.raises(OrderStateUnknownError) as info:
        client.place_order(order(sid, lot, "retry-1"))
    assert info.value.correlation_id == "retry-1"
    assert [r["status"] for r in sim.sim.requests("POST", "/v2/orders")] == [503]
    assert _orders(sim, "retry-1") == []


def test_order_safety_server_processing_late_gets_one_order_never_two(sim, make_client):
    # Issue 11 §3, scaled down: the server processes the order 1.3 s after receiving it, the
    # client times out at 0.5 s and looks it up for 0.2 s (TRANSIT/unknown: 404, not in the
    # book). The old client re-sent it: two orders with one correlation id.
    client = make_client(sim, timeout=0.5, lookup_grace=0.2)
    sid, lot = atm_option(sim)
    sim.sim.faults.add("latency", method="POST", path="/v2/orders", seconds=1.3)
    with pytest.raises(OrderStateUnknownError):
        client.place_order(order(sid, lot, "late-1"))
    found = None
    for _ in range(60):  # the caller keeps looking it up: the first order appears, alone
        found = client.find_order("late-1")
        if found is not None:
            break
        time.sleep(0.05)
    assert found is not None
    time.sleep(0.3)
    assert [o.order_id for o in _orders(sim, "late-1")] == [found.order_id]
    assert len(sim.sim.requests("POST", "/v2/orders")) == 1


def test_order_safety_lookups_failing_raise_state_unknown_without_resend(sim, client):
    sid, lot = atm_option(sim)
    sim.sim.faults.add("drop", method="POST", path="/v2/orders")
    sim.sim.faults.add("status", method="GET", path="/v2/orders.*", status=500, count=None)
    with pytest.raises(OrderStateUnknownError) as info:
        client.place_order(order(sid, lot, "dark-1"))
    assert info.value.correlation_id == "dark-1"
    assert len(sim.sim.requests("POST", "/v2/orders")) == 1
    assert len(_orders(sim, "dark-1")) == 1


def test_order_safety_correlation_id_deterministic_and_fits():
    a = make_correlation_id("IRON-CONDOR-2026-11-20-NIFTY-weekly#7", "short_call")
    assert a == make_correlation_id("IRON-CONDOR-2026-11-20-NIFTY-weekly#7", "short_call")
    assert a != make_correlation_id("IRON-CONDOR-2026-11-20-NIFTY-weekly#7", "short_put")
    assert a != make_correlation_id("IRON-CONDOR-2026-11-20-NIFTY-weekly#7", "short_call", 1)
    assert len(a) <= 25 and all(c.isalnum() or c in "_-" for c in a)
    assert make_correlation_id("T42", "ce") == "T42-ce"
    assert make_correlation_id("T42", "ce", 2) == "T42-ce-2"
    with pytest.raises(ValueError, match="trade tag"):
        make_correlation_id(" ", "ce")
