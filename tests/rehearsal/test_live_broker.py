"""DhanLiveBroker against the real Dhan simulator over loopback HTTP."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from engine.broker.dhan.live_broker import (
    DhanLiveBroker,
    FillTimeoutError,
    OrderRejectedError,
    limit_price,
)
from engine.clock import RealClock
from engine.dhan_sim import SimServer
from engine.execution.paper import Quote
from engine.messages.legs import InstrumentKind, Leg, Side
from tests.rehearsal.conftest import sim_client, sim_quotes

NEAR, FAR = "35000", "35001"  # BuiltinMarket's near / far NIFTY futures
DAY = date(2025, 2, 3)


def _fut(sid: str, side: Side, qty: int = 75) -> Leg:
    return Leg(security_id=sid, side=side, quantity=qty, kind=InstrumentKind.FUT)


def _broker(sim: SimServer, **kw) -> DhanLiveBroker:
    kw.setdefault("quotes", sim_quotes(sim))
    kw.setdefault("fill_timeout_s", 3.0)
    kw.setdefault("poll_interval_s", 0.02)
    return DhanLiveBroker(sim_client(sim), RealClock(), **kw)


def _orders(sim: SimServer) -> list:
    return sorted(sim.sim.exchange.orders.values(), key=lambda o: int(o.order_id))


def test_execute_two_leg_futures_fills_at_touch_one_order_per_leg(sim: SimServer) -> None:
    near_q, far_q = sim.sim.market.quote(NEAR), sim.sim.market.quote(FAR)
    legs = (_fut(NEAR, Side.SELL), _fut(FAR, Side.BUY))
    fills = _broker(sim).execute(legs, correlation_base="DC-T1", trade_date=DAY)

    assert [f.leg for f in fills] == list(legs)
    assert fills[0].price == Decimal(str(near_q.bid)).quantize(Decimal("0.01"))
    assert fills[1].price == Decimal(str(far_q.ask)).quantize(Decimal("0.01"))
    assert all(f.charges.total > 0 for f in fills)
    orders = _orders(sim)
    assert len(orders) == 2, "exactly one order per leg"
    assert [o.body["transactionType"] for o in orders] == ["BUY", "SELL"], "BUY leg first"
    assert {o.order_id: o.body["correlationId"] for o in orders} == {
        f.order_id: f.correlation_id for f in fills}
    assert {f.correlation_id for f in fills} == {"DC-T1-0", "DC-T1-1"}
    assert all(o.status == "TRADED" and o.body["orderType"] == "LIMIT" for o in orders)
    assert all(o.body["productType"] == "MARGIN" for o in orders)


def test_execute_rejected_second_leg_flattens_first_and_raises(sim: SimServer) -> None:
    # 50 is not a multiple of the lot (75): the simulator's RMS rejects the SELL leg
    legs = (_fut(NEAR, Side.SELL, qty=50), _fut(FAR, Side.BUY))
    with pytest.raises(OrderRejectedError) as info:
        _broker(sim).execute(legs, correlation_base="DC-T2", trade_date=DAY)

    err = info.value
    assert err.leg_index == 0 and err.status == "REJECTED"
    assert "lot size" in err.reason
    orders = _orders(sim)
    assert [(o.body["securityId"], o.body["transactionType"], o.status) for o in orders] == [
        (FAR, "BUY", "TRADED"), (NEAR, "SELL", "REJECTED"), (FAR, "SELL", "TRADED")]
    assert orders[2].body["correlationId"] == "DC-T2-U1"
    assert list(err.flattened) == [orders[2].order_id]
    net = {sid: pos.net for (_, sid, _), pos in sim.sim.exchange.positions.items()}
    assert net == {FAR: 0}, "no naked leg left at the broker"


def test_execute_lost_place_response_still_one_order(sim: SimServer) -> None:
    sim.sim.faults.add("drop", path="/v2/orders", method="POST", count=1)
    legs = (_fut(NEAR, Side.SELL), _fut(FAR, Side.BUY))
    fills = _broker(sim).execute(legs, correlation_base="DC-T3", trade_date=DAY)

    orders = _orders(sim)
    assert len(orders) == 2, "the lost response must not cause a second order"
    assert sorted(o.order_id for o in orders) == sorted(f.order_id for f in fills)
    assert sim.sim.requests("POST", "/v2/orders")[0]["status"] == 200
    assert all(o.status == "TRADED" for o in orders)


def test_execute_unfilled_leg_times_out_cancels_and_flattens(sim: SimServer) -> None:
    real = sim_quotes(sim)

    def stale(sid: str) -> Quote:  # the far leg is priced 40 ticks too low: it rests
        q = real(sid)
        if sid == FAR:
            return Quote(q.bid - 2, q.ask - 2, q.ltp - 2)
        return q

    legs = (_fut(NEAR, Side.BUY), _fut(FAR, Side.BUY))
    broker = _broker(sim, quotes=stale, fill_timeout_s=0.4)
    with pytest.raises(FillTimeoutError) as info:
        broker.execute(legs, correlation_base="DC-T4", trade_date=DAY)

    assert info.value.leg_index == 1 and info.value.status == "TIMEOUT"
    statuses = [(o.body["securityId"], o.body["transactionType"], o.status)
                for o in _orders(sim)]
    assert statuses == [(NEAR, "BUY", "TRADED"), (FAR, "BUY", "CANCELLED"),
                        (NEAR, "SELL", "TRADED")]


def test_execute_retried_tag_uses_fresh_correlation_ids(sim: SimServer) -> None:
    broker = _broker(sim)
    first = broker.execute((_fut(FAR, Side.BUY),), correlation_base="DC-T5", trade_date=DAY)
    again = broker.execute((_fut(FAR, Side.SELL),), correlation_base="DC-T5", trade_date=DAY)

    assert first[0].correlation_id == "DC-T5-0"
    assert again[0].correlation_id == "DC-T5-0-1"
    assert len(_orders(sim)) == 2


def test_limit_price_caps_slippage_in_ticks() -> None:
    q = Quote(Decimal("100.00"), Decimal("100.10"), Decimal("100.05"))
    assert limit_price(Side.BUY, q, 3) == Decimal("100.25")
    assert limit_price(Side.SELL, q, 3) == Decimal("99.85")
    assert limit_price(Side.SELL, Quote(Decimal("0.05"), Decimal("0.10"), Decimal("0.05")),
                       3) == Decimal("0.05")
