"""DhanLiveBroker against the real Dhan simulator over loopback HTTP."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from engine.broker.dhan.correlation import (
    is_valid_correlation_id,
    make_correlation_id,
    slice_correlation_id,
)
from engine.broker.dhan.instruments import InstrumentMaster
from engine.broker.dhan.live_broker import (
    DhanLiveBroker,
    FillTimeoutError,
    OrderRejectedError,
    limit_price,
)
from engine.broker.dhan.slicing import MasterOrderLimits, slice_quantities
from engine.clock import RealClock
from engine.dhan_sim import SimServer
from engine.execution.intents import IntentStore
from engine.execution.paper import Quote
from engine.messages.legs import InstrumentKind, Leg, Side
from tests.rehearsal.conftest import sim_client, sim_quotes

NEAR, FAR = "35000", "35001"  # BuiltinMarket's near / far NIFTY futures
DAY = date(2025, 2, 3)


def _lot(sim: SimServer, sid: str = NEAR) -> int:
    """The contract's lot in the simulator's master (NseCalendar's schedule)."""
    return sim.sim.exchange.row(sid).lot_size


def _fut(sid: str, side: Side, qty: int) -> Leg:
    return Leg(security_id=sid, side=side, quantity=qty, kind=InstrumentKind.FUT)


def _broker(sim: SimServer, pool, **kw) -> DhanLiveBroker:
    """A live broker on ``sim`` whose order intents go to the test database."""
    kw.setdefault("quotes", sim_quotes(sim))
    kw.setdefault("fill_timeout_s", 3.0)
    kw.setdefault("poll_interval_s", 0.02)
    kw.setdefault("resolve_window_s", 2.0)
    return DhanLiveBroker(sim_client(sim), RealClock(), intents=IntentStore(pool), **kw)


def _orders(sim: SimServer) -> list:
    return sorted(sim.sim.exchange.orders.values(), key=lambda o: int(o.order_id))


def test_execute_two_leg_futures_fills_at_touch_one_order_per_leg(sim: SimServer, pool) -> None:
    near_q, far_q = sim.sim.market.quote(NEAR), sim.sim.market.quote(FAR)
    lot = _lot(sim)
    legs = (_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot))
    fills = _broker(sim, pool).execute(legs, correlation_base="DC-T1", trade_date=DAY)

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


def test_execute_rejected_second_leg_flattens_first_and_raises(sim: SimServer, pool) -> None:
    # half a lot is not a multiple of the lot: the simulator's RMS rejects the SELL leg
    lot = _lot(sim)
    legs = (_fut(NEAR, Side.SELL, lot // 2), _fut(FAR, Side.BUY, lot))
    with pytest.raises(OrderRejectedError) as info:
        _broker(sim, pool).execute(legs, correlation_base="DC-T2", trade_date=DAY)

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


def test_execute_lost_place_response_still_one_order(sim: SimServer, pool) -> None:
    sim.sim.faults.add("drop", path="/v2/orders", method="POST", count=1)
    lot = _lot(sim)
    legs = (_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot))
    fills = _broker(sim, pool).execute(legs, correlation_base="DC-T3", trade_date=DAY)

    orders = _orders(sim)
    assert len(orders) == 2, "the lost response must not cause a second order"
    assert sorted(o.order_id for o in orders) == sorted(f.order_id for f in fills)
    assert sim.sim.requests("POST", "/v2/orders")[0]["status"] == 200
    assert all(o.status == "TRADED" for o in orders)


def test_execute_unfilled_leg_times_out_cancels_and_flattens(sim: SimServer, pool) -> None:
    real = sim_quotes(sim)

    def stale(sid: str) -> Quote:  # the far leg is priced 40 ticks too low: it rests
        q = real(sid)
        if sid == FAR:
            return Quote(q.bid - 2, q.ask - 2, q.ltp - 2)
        return q

    lot = _lot(sim)
    legs = (_fut(NEAR, Side.BUY, lot), _fut(FAR, Side.BUY, lot))
    broker = _broker(sim, pool, quotes=stale, fill_timeout_s=0.4)
    with pytest.raises(FillTimeoutError) as info:
        broker.execute(legs, correlation_base="DC-T4", trade_date=DAY)

    assert info.value.leg_index == 1 and info.value.status == "TIMEOUT"
    statuses = [(o.body["securityId"], o.body["transactionType"], o.status)
                for o in _orders(sim)]
    assert statuses == [(NEAR, "BUY", "TRADED"), (FAR, "BUY", "CANCELLED"),
                        (NEAR, "SELL", "TRADED")]


def test_execute_retried_tag_uses_fresh_correlation_ids(sim: SimServer, pool) -> None:
    broker, lot = _broker(sim, pool), _lot(sim)
    first = broker.execute((_fut(FAR, Side.BUY, lot),), correlation_base="DC-T5",
                           trade_date=DAY)
    # the same tag again (here: its exit) never reuses a correlation id
    again = broker.execute((_fut(FAR, Side.SELL, lot),), correlation_base="DC-T5",
                           trade_date=DAY, purpose="exit", tag="DC-T5")

    assert first[0].correlation_id == "DC-T5-0"
    assert again[0].correlation_id == "DC-T5-0-1"
    assert len(_orders(sim)) == 2


def test_limit_price_caps_slippage_in_ticks() -> None:
    q = Quote(Decimal("100.00"), Decimal("100.10"), Decimal("100.05"))
    assert limit_price(Side.BUY, q, 3) == Decimal("100.25")
    assert limit_price(Side.SELL, q, 3) == Decimal("99.85")
    assert limit_price(Side.SELL, Quote(Decimal("0.05"), Decimal("0.10"), Decimal("0.05")),
                       3) == Decimal("0.05")


def _limits(sim: SimServer) -> MasterOrderLimits:
    """Freeze quantities from the simulator's instrument master, as the wiring does."""
    return MasterOrderLimits(lambda day: InstrumentMaster.download(sim.instruments_url,
                                                                   as_of=day))


def _atm_call(sim: SimServer) -> str:
    market = sim.sim.market
    chain = market.option_chain(market.expiries()[0])
    return str(chain[min(chain, key=lambda k: abs(k - market.spot()))]["CE"].security_id)


def test_execute_slices_a_leg_above_the_freeze_quantity(sim: SimServer, pool) -> None:
    sid = _atm_call(sim)
    lot = _lot(sim, sid)
    biggest = _limits(sim)(sid, DAY)
    assert biggest == 1755 == (sim.sim.exchange.row(sid).freeze_qty - 1) // lot * lot
    leg = Leg(security_id=sid, side=Side.BUY, quantity=2 * biggest + lot,
              kind=InstrumentKind.OPT)
    fills = _broker(sim, pool, max_order_qty=_limits(sim)).execute((leg,), correlation_base="IC-S1",
                                                             trade_date=DAY)

    orders = _orders(sim)
    assert [int(o.body["quantity"]) for o in orders] == [biggest, biggest, lot]
    assert [o.body["correlationId"] for o in orders] == ["IC-S1-0-s0", "IC-S1-0-s1",
                                                         "IC-S1-0-s2"]
    assert all(o.status == "TRADED" for o in orders), "every slice tracked to TRADED"
    (fill,) = fills
    assert fill.correlation_id == "IC-S1-0"
    assert fill.order_id.split(",") == [o.order_id for o in orders]
    vwap = sum(Decimal(str(o.avg_price)) * int(o.body["quantity"]) for o in orders) / leg.quantity
    assert fill.price == vwap.quantize(Decimal("0.01"))
    assert fill.charges.brokerage == Decimal("60.00"), "three orders, ₹20 each"
    assert sum(p.net for p in sim.sim.exchange.positions.values()) == leg.quantity
    # a retry of the same tag never reuses a slice's id
    again = _broker(sim, pool, max_order_qty=_limits(sim)).execute(
        (Leg(security_id=sid, side=Side.SELL, quantity=leg.quantity, kind=InstrumentKind.OPT),),
        correlation_base="IC-S1", trade_date=DAY, purpose="exit", tag="IC-S1")
    assert again[0].correlation_id == "IC-S1-0-1"
    assert sum(p.net for p in sim.sim.exchange.positions.values()) == 0


def test_execute_failed_slice_flattens_the_slices_already_filled(sim: SimServer, pool) -> None:
    sid = _atm_call(sim)
    ask = sim.sim.market.quote(sid).ask
    sim.sim.account.sod_limit = ask * 1755 * 1.5  # the second slice has no margin left
    leg = Leg(security_id=sid, side=Side.BUY, quantity=2 * 1755, kind=InstrumentKind.OPT)
    with pytest.raises(OrderRejectedError) as info:
        _broker(sim, pool, max_order_qty=_limits(sim)).execute((leg,), correlation_base="IC-S2",
                                                         trade_date=DAY)

    assert "slice 2/2" in info.value.reason and "Insufficient Funds" in info.value.reason
    orders = _orders(sim)
    assert [(o.body["correlationId"], o.body["transactionType"], int(o.body["quantity"]),
             o.status) for o in orders] == [
        ("IC-S2-0-s0", "BUY", 1755, "TRADED"), ("IC-S2-0-s1", "BUY", 1755, "REJECTED"),
        ("IC-S2-U0", "SELL", 1755, "TRADED")]
    assert list(info.value.flattened) == [orders[2].order_id]
    assert sum(p.net for p in sim.sim.exchange.positions.values()) == 0, "no naked leg"


def test_slice_correlation_ids_are_short_distinct_and_deterministic() -> None:
    base = make_correlation_id("IC-20261202-LONGTAG-001", "0", 3)
    ids = [slice_correlation_id(base, k) for k in range(12)]
    assert len(set(ids)) == 12 and all(is_valid_correlation_id(i) for i in ids)
    assert ids == [slice_correlation_id(base, k) for k in range(12)], "same inputs, same ids"
    assert base not in ids
    assert slice_correlation_id("DC-T1-0", 2) == "DC-T1-0-s2"
    assert slice_quantities(3575, 1755) == [1755, 1755, 65]
    assert slice_quantities(1755, 1755) == [1755] and slice_quantities(100, None) == [100]
