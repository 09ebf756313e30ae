"""Closes the broker makes by itself, through the whole engine (real actors, real PostgreSQL,
the Dhan simulator on loopback quoting the engine's own market): an RMS square-off, the
15:20 square-off of an INTRADAY position, the settlement of expired contracts, a partial
close by the broker; and surplus positions after a duplicate fill (a surplus short is bought
back once, a surplus long only alerted).

Each test checks the books against the simulator's own order book and positions, and every
invariant of ``tests/faults/invariants.py``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pykka
import pytest

from engine.broker.dhan.models import OrderRequest
from engine.market.calendar import NseCalendar
from engine.market.simulator import SimulatedMarket
from engine.messages.commands import ClosePosition, OpenPosition
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.messages.tap import MessageTap
from engine.timeutil import IST
from tests.conftest import eventually
from tests.engine.harness import SESSION, Harness
from tests.faults.invariants import violations
from tests.faults.live import LiveSim, fast_live_broker, stop_all  # noqa: F401 (fixtures)
from tests.faults.live import alerts as _alerts
from tests.faults.live import engine_orders as _engine_orders
from tests.faults.live import net as _net

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("stop_all", "fast_live_broker")]
TAG = "DC-BRK-1"


def _open(h: Harness) -> list[Leg]:
    """A live futures calendar (long far, short near) opened through the executor."""
    snap = h.engine.market.snapshot()
    near, far = snap.near_future, snap.far_future
    legs = (Leg(security_id=str(far.security_id), side=Side.BUY, quantity=snap.lot_size,
                kind=InstrumentKind.FUT, expiry=far.expiry),
            Leg(security_id=str(near.security_id), side=Side.SELL, quantity=snap.lot_size,
                kind=InstrumentKind.FUT, expiry=near.expiry))
    h.engine.directory.get("executor").tell(OpenPosition(
        ts=h.engine.clock.now(), strategy="CAL_ARB", tag=TAG, legs=legs, stage="live"))
    h.engine.scheduler.settle()
    eventually(lambda: h.query("SELECT 1 FROM open_trades WHERE tag = %s", TAG), timeout=10)
    return list(legs)


def _no_violations(h: Harness) -> None:
    with h.pool.connection() as conn:
        assert violations(conn) == {}


def _closed(h: Harness) -> dict[str, Any]:
    rows = eventually(lambda: h.query("SELECT * FROM closed_trades WHERE tag = %s", TAG),
                      timeout=10)
    return rows[0]


def _exits(h: Harness) -> dict[str, dict[str, Any]]:
    return {r["security_id"]: r for r in h.query(
        "SELECT * FROM executions WHERE tag = %s AND action = 'CLOSE'", TAG)}


def _risk_saw_it(h: Harness, closed: dict[str, Any]) -> None:
    row = eventually(lambda: (h.query("SELECT * FROM risk_envelope_stages WHERE stage = 'live'"
                                      " AND closes_seen = 1") or [None])[0], timeout=10)
    assert row["lifetime_pnl"] == closed["realized_pnl"]


def test_rms_square_off_is_booked_at_the_trade_book_prices_and_reaches_risk(
        make_sim, db_url: str) -> None:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True, tap=tap).start()
    try:
        legs = _open(h)
        sent = len(_engine_orders(live.sim))
        rms = live.admin("square_off", {})["orders"]
        assert {(o["securityId"], o["transactionType"], o["orderStatus"]) for o in rms} == {
            (legs[0].security_id, "SELL", "TRADED"), (legs[1].security_id, "BUY", "TRADED")}
        assert _net(live.sim) == {}
        # like real Dhan: the broker's orders are in the order book and the trade book
        client = live.client()
        assert {o["orderId"] for o in rms} <= {o.order_id for o in client.order_list()}
        book = {t.order_id: t for t in client.trades()}
        assert {o["orderId"] for o in rms} <= set(book)
        assert not any(o["correlationId"].startswith(TAG) for o in rms)

        h.engine.scheduler.run_lockstep(SESSION)  # the first check: seen once, not booked
        assert h.query("SELECT tag FROM open_trades")[0]["tag"] == TAG
        # an automatic exit arriving while the broker close is being confirmed sends nothing
        # (it would open new positions: the broker holds none of the trade any more)
        h.engine.directory.get("executor").tell(ClosePosition(
            ts=h.engine.clock.now(), tag=TAG, reason="stop loss (test)"))
        h.engine.scheduler.settle()
        assert len(_engine_orders(live.sim)) == sent and _net(live.sim) == {}
        h.run_until(9, 16)
        closed = _closed(h)
        assert closed["exit_reason"].startswith("broker square-off (RMS)")
        exits = _exits(h)
        for o in rms:  # each leg at its broker order's trade-book price
            row = exits[o["securityId"]]
            assert row["order_id"] == o["orderId"] and row["correlation_id"] is None
            assert row["price"] == Decimal(str(book[o["orderId"]].traded_price)).quantize(
                Decimal("0.01"))
            assert row["side"] == o["transactionType"] and row["charges"] > 0
        assert closed["payload"]["context"]["charges_source"] == "model"
        assert len(_engine_orders(live.sim)) == sent, "the engine sent no order"
        assert h.query("SELECT count(*) AS n FROM open_trades")[0]["n"] == 0
        assert [e for e in tap.entries() if e.type.endswith("PositionClosed")
                and e.fields["tag"] == TAG]
        _risk_saw_it(h, closed)
        assert _alerts(tap, "closed by the broker, not by the engine")
        audit = h.query("SELECT details FROM reconciliation_audit WHERE action ="
                        " 'CONFIRMED_FLAT_REMOVAL'")
        assert audit and audit[0]["details"]["booked_as"] == "broker close"
        _no_violations(h)
    finally:
        h.stop()


def test_intraday_position_squared_off_at_15_20_is_booked_as_such(make_sim, db_url: str) -> None:
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True).start()
    # the configuration refuses INTRADAY for overnight strategies; a trade of that product
    # still exists if it was opened so (the reconciliation keys on each trade's product)
    h.engine.services["live_broker"].product_type = "INTRADAY"
    try:
        legs = _open(h)
        assert {r["product"] for r in h.query("SELECT product FROM order_intents")} == {
            "INTRADAY"}
    finally:
        h.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
    h = live.engine(hands_off=True, start=SESSION.replace(hour=15, minute=19)).start()
    try:
        sent = len(_engine_orders(live.sim))
        h.run_until(15, 19)
        assert _net(live.sim), "still held before 15:20"
        h.run_until(15, 21)
        auto = [o for o in live.sim.sim.exchange.orders.values()
                if o.placed_by == "INTRADAY_SQUARE_OFF"]
        assert {o.body["securityId"] for o in auto} == {leg.security_id for leg in legs}
        assert all(o.status == "TRADED" for o in auto) and _net(live.sim) == {}
        closed = _closed(h)
        assert closed["exit_reason"].startswith("intraday square-off 15:20")
        exits = _exits(h)
        for o in auto:
            assert exits[o.body["securityId"]]["price"] == Decimal(str(o.avg_price)).quantize(
                Decimal("0.01"))
        assert len(_engine_orders(live.sim)) == sent, "the engine sent no order"
        _risk_saw_it(h, closed)
        _no_violations(h)
    finally:
        h.stop()


def test_expired_legs_are_settled_at_the_nifty_close(make_sim, db_url: str) -> None:
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True).start()
    try:
        legs = _open(h)
        entry = {r["security_id"]: r["price"] for r in h.query(
            "SELECT security_id, price FROM executions WHERE action = 'OPEN'")}
    finally:
        h.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
    market, cal = SimulatedMarket(7, SESSION, NseCalendar()), NseCalendar()
    close = {leg.security_id: Decimal(repr(market.snapshot_at(cal.session_close(
        leg.expiry)).spot)).quantize(Decimal("0.01")) for leg in legs}
    for leg in legs:  # NSE publishes the final settlement price; so does the test
        live.admin("settlement_price", {"expiry": leg.expiry.isoformat(),
                                        "spot": float(close[leg.security_id])})
    h = live.engine(hands_off=True, start=datetime(2025, 3, 28, 9, 15, tzinfo=IST)).start()
    try:
        h.run_until(9, 16)
        settled = live.admin("settlements")["settlements"]
        assert {(s["securityId"], s["settlementPrice"]) for s in settled} == {
            (sid, float(px)) for sid, px in close.items()}
        assert _net(live.sim) == {} and not live.client().trades()[2:], "no trade for it"
        closed = _closed(h)
        far, near = legs
        assert closed["exit_reason"].startswith(
            f"expiry settlement at {close[near.security_id]:,.2f} ({near.expiry}) and "
            f"{close[far.security_id]:,.2f} ({far.expiry})")
        assert {sid: r["price"] for sid, r in _exits(h).items()} == close
        gross = ((close[far.security_id] - entry[far.security_id])
                 - (close[near.security_id] - entry[near.security_id])) * far.quantity
        assert closed["gross_pnl"] == gross.quantize(Decimal("0.01"))
        assert closed["trade_date"] == far.expiry, "counts on the last expiry"
        _risk_saw_it(h, closed)
        _no_violations(h)
    finally:
        h.stop()


def test_partial_broker_close_holds_the_trade_and_names_the_exposure(make_sim, db_url) -> None:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True, tap=tap).start()
    try:
        far, near = _open(h)
        sent = len(_engine_orders(live.sim))
        live.admin("square_off", {"security_id": far.security_id})
        assert _net(live.sim) == {near.security_id: -near.quantity}
        h.run_until(9, 16)
        hold = h.query("SELECT payload->>'hold' AS hold FROM open_trades WHERE tag = %s",
                       TAG)[0]["hold"]
        assert hold and "partly closed at the broker" in hold
        exposure = f"SHORT {near.quantity} of security {near.security_id}"
        assert exposure in hold
        alerts = _alerts(tap, f"{TAG} on hold")
        assert len(alerts) == 1 and exposure in alerts[0], "alerted once, naming the exposure"
        assert h.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] == 0
        assert len(_engine_orders(live.sim)) == sent, "nothing sent on an assumption"
        _no_violations(h)
    finally:
        h.stop()


def _duplicate(live: LiveSim, leg: Leg) -> None:
    """The same order once more at the broker (a duplicate fill the books never saw)."""
    client = live.client()
    client.place_order(OrderRequest(security_id=leg.security_id, exchange_segment="NSE_FNO",
                                    transaction_type=leg.side.value, quantity=leg.quantity,
                                    order_type="MARKET", product_type="MARGIN",
                                    correlation_id="dup-1"))
    eventually(lambda: client.positions() is not None and _net(live.sim).get(leg.security_id)
               == 2 * leg.quantity * (1 if leg.side is Side.BUY else -1), timeout=5)


def test_surplus_short_after_a_duplicate_fill_is_bought_back_exactly_once(
        make_sim, db_url: str) -> None:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True, tap=tap).start()
    try:
        far, near = _open(h)
        _duplicate(live, near)
        h.run_until(9, 16)
        buys = [o for o in _engine_orders(live.sim) if o.body["correlationId"].startswith(
            "SURPLUS-")]
        assert len(buys) == 1
        (buy,) = buys
        assert (buy.body["securityId"], buy.body["transactionType"], int(buy.body["quantity"]),
                buy.status) == (near.security_id, "BUY", near.quantity, "TRADED")
        assert _net(live.sim) == {far.security_id: far.quantity,
                                  near.security_id: -near.quantity}, "the books explain it"
        assert _alerts(tap, f"surplus SHORT {near.quantity} of security {near.security_id}")
        h.run_until(9, 17)  # more checks: no second buy
        assert len([o for o in _engine_orders(live.sim)
                    if o.body["correlationId"].startswith("SURPLUS-")]) == 1
        eventually(lambda: not h.query("SELECT 1 FROM order_intents WHERE settled_at IS NULL"))
        row = h.query("SELECT purpose, state, order_id FROM order_intents WHERE trade_tag ="
                      " %s", f"SURPLUS-{near.security_id}")[0]
        assert (row["purpose"], row["state"], row["order_id"]) == (
            "operator", "TRADED", buy.order_id), "intent first, then the order"
        assert h.query("SELECT tag FROM open_trades")[0]["tag"] == TAG, "the trade stays open"
        _no_violations(h)
    finally:
        h.stop()


def test_surplus_long_is_alerted_and_left_to_the_operator(make_sim, db_url: str) -> None:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True, tap=tap).start()
    try:
        far, _near = _open(h)
        sent = len(_engine_orders(live.sim))
        _duplicate(live, far)
        h.run_until(9, 16)
        alerts = _alerts(tap, f"surplus LONG {far.quantity} at the broker on security "
                              f"{far.security_id}")
        assert len(alerts) == 1 and "not traded automatically" in alerts[0]
        assert len(_engine_orders(live.sim)) == sent + 1, "only the duplicate: nothing sent"
        assert _net(live.sim)[far.security_id] == 2 * far.quantity
        _no_violations(h)
    finally:
        h.stop()
