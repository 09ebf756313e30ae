"""Fault tests of the live broker alone (real Dhan simulator on loopback, real PostgreSQL):
an order in doubt is unresolved — never taken as not filled, never sent twice — partial fills,
and the leg order that keeps every short covered.

Invariants checked on the simulator's own books, whatever the mechanism: one order per
correlation id (one per intent), no unhedged short at any point, the broker flat (or holding
exactly what the books / the raised error say) at the end, and every order sent recorded in
``order_intents`` before it went out.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from engine.broker.dhan.live_broker import DhanLiveBroker, FillTimeoutError, OrderRejectedError
from engine.clock import RealClock
from engine.dhan_sim import SimServer
from engine.execution.intents import IntentStore, blocking_intent
from engine.execution.paper import ExitIncomplete, OrdersUnresolved
from engine.messages.legs import InstrumentKind, Leg, Side
from tests.conftest import eventually
from tests.rehearsal.conftest import sim_client, sim_quotes

pytestmark = pytest.mark.faults

NEAR, FAR = "35000", "35001"  # BuiltinMarket's near / far NIFTY futures
DAY = date(2025, 2, 3)


@pytest.fixture
def sim(make_sim) -> SimServer:
    """A simulator with deep pockets (a long future blocks its whole notional there)."""
    return make_sim(deep_pockets=True)


def _lot(sim: SimServer, sid: str = NEAR) -> int:
    return sim.sim.exchange.row(sid).lot_size


def _fut(sid: str, side: Side, qty: int) -> Leg:
    return Leg(security_id=sid, side=side, quantity=qty, kind=InstrumentKind.FUT)


def _broker(sim: SimServer, pool, *, client_kw: dict | None = None, **kw) -> DhanLiveBroker:
    kw.setdefault("quotes", sim_quotes(sim))
    kw.setdefault("fill_timeout_s", 1.0)
    kw.setdefault("poll_interval_s", 0.02)
    kw.setdefault("resolve_window_s", 3.0)
    kw.setdefault("lookup_backoff_s", (0.05, 0.4))
    return DhanLiveBroker(sim_client(sim, **(client_kw or {})), RealClock(),
                          intents=IntentStore(pool), **kw)


def _orders(sim: SimServer) -> list:
    return sorted(sim.sim.exchange.orders.values(), key=lambda o: int(o.order_id))


def _net(sim: SimServer) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, sid, _), pos in sim.sim.exchange.positions.items():
        out[sid] = out.get(sid, 0) + pos.net
    return {sid: n for sid, n in out.items() if n}


def _one_order_per_correlation_id(sim: SimServer) -> None:
    counts = Counter(o.body["correlationId"] for o in sim.sim.exchange.orders.values())
    assert all(n == 1 for n in counts.values()), f"two orders for one intent: {counts}"


def _every_order_has_an_intent(sim: SimServer, pool) -> None:
    with pool.connection() as conn:
        cids = {r["correlation_id"] for r in conn.execute(
            "SELECT correlation_id FROM order_intents WHERE NOT sliced").fetchall()}
    assert {o.body["correlationId"] for o in sim.sim.exchange.orders.values()} <= cids


def _intents(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM order_intents ORDER BY id").fetchall()


def test_slow_server_one_order_per_intent_adopted_in_the_call(sim: SimServer, pool) -> None:
    """§3 scaled down: the server processes the first order 1.5 s after receiving it; the
    client times out at 0.5 s and its 0.2 s of lookups see nothing. The old client re-sent
    it (two orders, one correlation id, an extra lot at the broker). Now the order is
    unresolved, looked up again, found and adopted; the entry completes."""
    lot = _lot(sim)
    sim.sim.faults.add("latency", method="POST", path="/v2/orders", seconds=1.5)
    broker = _broker(sim, pool, client_kw={"timeout": 0.5, "lookup_grace": 0.2})
    legs = (_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot))
    fills = broker.execute(legs, correlation_base="DC-S3", trade_date=DAY)

    _one_order_per_correlation_id(sim)
    assert len(_orders(sim)) == 2
    assert {f.order_id for f in fills} == {o.order_id for o in _orders(sim)}
    assert _net(sim) == {NEAR: -lot, FAR: lot}
    rows = {r["correlation_id"]: r for r in _intents(pool)}
    assert rows["DC-S3-1"]["state"] == "TRADED"  # the BUY leg went first and was the slow one
    assert "found at the broker" in rows["DC-S3-1"]["resolution"]
    assert "outcome unknown" in rows["DC-S3-1"]["reason"] or rows["DC-S3-1"]["reason"]
    _every_order_has_an_intent(sim, pool)


def test_later_entry_leg_in_doubt_waits_then_the_entry_is_complete(sim: SimServer,
                                                                    pool) -> None:
    """The SELL leg's order is still invisible when the call's resolve window ends: the
    filled BUY leg is not flattened on an assumption, entries are blocked; once the order
    appears (it did fill), resume() adopts it and the entry is complete."""
    lot = _lot(sim)
    sim.sim.faults.add("latency", method="POST", path="/v2/orders", seconds=2.0, skip=1)
    broker = _broker(sim, pool, client_kw={"timeout": 0.5, "lookup_grace": 0.2},
                     resolve_window_s=0.3)
    legs = (_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot))
    with pytest.raises(OrdersUnresolved) as info:
        broker.execute(legs, correlation_base="DC-U1", trade_date=DAY)
    assert [cid for cid, *_ in info.value.unresolved] == ["DC-U1-0"]
    assert info.value.open_legs == ((FAR, "BUY", lot),)
    assert f"LONG {lot} of security {FAR}" in str(info.value)
    with pool.connection() as conn:
        doubt = blocking_intent(conn)
    assert doubt is not None and doubt["correlation_id"] == "DC-U1-0"
    assert _net(sim) == {FAR: lot}, "nothing flattened on an assumption"

    eventually(lambda: len(sim.sim.exchange.orders) == 2, timeout=5)
    fills = broker.resume("DC-U1", "entry")
    assert [f.leg for f in fills] == list(legs)
    assert [o.body["correlationId"] for o in _orders(sim)] == ["DC-U1-1", "DC-U1-0"]
    _one_order_per_correlation_id(sim)
    assert _net(sim) == {NEAR: -lot, FAR: lot}
    with pool.connection() as conn:  # filled, not booked yet: still blocks entries
        assert blocking_intent(conn)["state"] == "TRADED"
    broker.intents.settle("DC-U1", "entry", "booked (test)")  # what record_open does
    with pool.connection() as conn:
        assert blocking_intent(conn) is None


def test_earlier_entry_leg_in_doubt_no_later_leg_then_its_fill_unwound(sim: SimServer,
                                                                       pool) -> None:
    """The BUY (wing) leg is in doubt: the short leg is never sent on top of it. Once the wing
    is found filled, the resumed entry (stale) unwinds exactly that known fill."""
    lot = _lot(sim)
    sim.sim.faults.add("latency", method="POST", path="/v2/orders", seconds=2.0)
    broker = _broker(sim, pool, client_kw={"timeout": 0.5, "lookup_grace": 0.2},
                     resolve_window_s=0.3)
    legs = (_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot))
    with pytest.raises(OrdersUnresolved):
        broker.execute(legs, correlation_base="DC-U2", trade_date=DAY)
    eventually(lambda: len(sim.sim.exchange.orders) == 1, timeout=5)
    assert [o.body["correlationId"] for o in _orders(sim)] == ["DC-U2-1"], \
        "the SELL leg is not sent while its wing is in doubt"
    with pytest.raises(OrderRejectedError, match="interrupted"):
        broker.resume("DC-U2", "entry")
    assert [(o.body["correlationId"], o.body["transactionType"]) for o in _orders(sim)] == [
        ("DC-U2-1", "BUY"), ("DC-U2-U1", "SELL")]
    assert _net(sim) == {}
    assert all(r["settled_at"] is not None for r in _intents(pool))
    _one_order_per_correlation_id(sim)


def test_part_traded_entry_leg_cancelled_and_the_known_fill_unwound(sim: SimServer,
                                                                    pool) -> None:
    lot = _lot(sim)
    sim.sim.faults.add("partial_fill", method="POST", path="/v2/orders", fill_qty=lot)
    broker = _broker(sim, pool, fill_timeout_s=0.4)
    legs = (_fut(NEAR, Side.SELL, 2 * lot), _fut(FAR, Side.BUY, 2 * lot))
    with pytest.raises(FillTimeoutError) as info:
        broker.execute(legs, correlation_base="DC-P1", trade_date=DAY)
    assert f"{lot}/{2 * lot} filled" in info.value.reason
    orders = [(o.body["correlationId"], o.body["securityId"], o.body["transactionType"],
               int(o.body["quantity"]), o.status, o.filled_qty) for o in _orders(sim)]
    assert orders == [("DC-P1-1", FAR, "BUY", 2 * lot, "CANCELLED", lot),
                      ("DC-P1-U1", FAR, "SELL", lot, "TRADED", lot)], \
        "the rest cancelled, the short leg never sent, only the known lot unwound"
    assert _net(sim) == {}
    assert all(r["settled_at"] is not None for r in _intents(pool))
    _every_order_has_an_intent(sim, pool)


def test_part_traded_exit_leg_rolls_forward_never_reversed(sim: SimServer, pool) -> None:
    lot = _lot(sim)
    broker = _broker(sim, pool, fill_timeout_s=0.4)
    legs = (_fut(NEAR, Side.SELL, 2 * lot), _fut(FAR, Side.BUY, 2 * lot))
    broker.execute(legs, correlation_base="DC-P2", trade_date=DAY)
    broker.intents.settle("DC-P2", "entry", "booked (test)")  # what record_open does
    sim.sim.faults.add("partial_fill", method="POST", path="/v2/orders", fill_qty=lot)
    exit_legs = (_fut(NEAR, Side.BUY, 2 * lot), _fut(FAR, Side.SELL, 2 * lot))
    fills = broker.execute(exit_legs, correlation_base="DC-P2-X", trade_date=DAY,
                           purpose="exit", tag="DC-P2")

    exits = [(o.body["correlationId"], o.body["securityId"], o.body["transactionType"],
              int(o.body["quantity"]), o.status, o.filled_qty) for o in _orders(sim)[2:]]
    assert exits == [("DC-P2-X-0", NEAR, "BUY", 2 * lot, "CANCELLED", lot),
                     ("DC-P2-X-0-1", NEAR, "BUY", lot, "TRADED", lot),
                     ("DC-P2-X-1", FAR, "SELL", 2 * lot, "TRADED", 2 * lot)], \
        "the short is bought back in full (the rest re-sent) before the wing is sold"
    assert _net(sim) == {}
    assert [f.leg.quantity for f in fills] == [2 * lot, 2 * lot]
    assert len(fills[0].order_id.split(",")) == 2
    _one_order_per_correlation_id(sim)


def test_exit_short_buyback_refused_wing_is_never_sold(sim: SimServer, pool) -> None:
    """Leg order from the invariant: while the short cannot be bought back, its wing stays."""
    lot = _lot(sim)
    broker = _broker(sim, pool, exit_attempts=2)
    broker.execute((_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot)),
                   correlation_base="DC-W1", trade_date=DAY)
    broker.intents.settle("DC-W1", "entry", "booked (test)")
    sim.sim.faults.add("reject_order", method="POST", path="/v2/orders", mode="rms",
                       reason="RMS: price band", count=2)
    with pytest.raises(OrderRejectedError):
        broker.execute((_fut(NEAR, Side.BUY, lot), _fut(FAR, Side.SELL, lot)),
                       correlation_base="DC-W1-X", trade_date=DAY, purpose="exit", tag="DC-W1")
    sells = [o for o in _orders(sim)[2:] if o.body["transactionType"] == "SELL"]
    assert sells == [], "the wing was not sold while the short stayed open"
    assert _net(sim) == {NEAR: -lot, FAR: lot}, "nothing changed: the close can be retried"


def test_exit_wing_refused_after_short_bought_back_is_incomplete_not_reversed(
        sim: SimServer, pool) -> None:
    lot = _lot(sim)
    broker = _broker(sim, pool, exit_attempts=2)
    broker.execute((_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot)),
                   correlation_base="DC-W2", trade_date=DAY)
    broker.intents.settle("DC-W2", "entry", "booked (test)")
    sim.sim.faults.add("reject_order", method="POST", path="/v2/orders", mode="rms",
                       reason="RMS: price band", count=2, skip=1)
    with pytest.raises(ExitIncomplete) as info:
        broker.execute((_fut(NEAR, Side.BUY, lot), _fut(FAR, Side.SELL, lot)),
                       correlation_base="DC-W2-X", trade_date=DAY, purpose="exit", tag="DC-W2")
    assert info.value.open_legs == ((FAR, "BUY", lot),)
    assert f"LONG {lot} of security {FAR}" in str(info.value)
    assert _net(sim) == {FAR: lot}, "the filled buy-back is not reversed"
    buys_of_near = [o for o in _orders(sim)[2:] if o.body["securityId"] == NEAR]
    assert len(buys_of_near) == 1
    # the operator closes the trade: only what it still holds is sent
    fills = broker.execute((_fut(NEAR, Side.BUY, lot), _fut(FAR, Side.SELL, lot)),
                           correlation_base="DC-W2-X", trade_date=DAY, purpose="exit",
                           tag="DC-W2")
    assert [f.leg.quantity for f in fills] == [lot, lot]
    assert len([o for o in _orders(sim) if o.body["securityId"] == NEAR]) == 2, \
        "no second buy-back of the short"
    assert _net(sim) == {}
    _one_order_per_correlation_id(sim)
