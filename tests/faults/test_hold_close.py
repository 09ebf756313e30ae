"""Issue 11 "money path": a trade on hold is closed in terms of what the broker holds, a
close done at the broker is recorded from its trade book, and an exit leg is sent again only
once the broker shows the quantity still open and no live order of the exit.

Real engine / live broker, real PostgreSQL, the Dhan simulator on loopback with its fault
rules. Every test ends with the books' invariants (tests/faults/invariants.py) and the
simulator's own books: one order per intent, nothing re-sent, no new naked position.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from decimal import Decimal

import psycopg
import pykka
import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.live_broker import FillTimeoutError
from engine.broker.dhan.models import OrderRequest
from engine.broker.dhan.ratelimit import RateLimiter
from engine.bus.commands import CommandError, CommandRow
from engine.bus.dispatch import Dispatcher
from engine.dhan_sim import SimServer
from engine.execution.charges import order_charges
from engine.execution.intents import blocking_intent
from engine.execution.paper import ExitIncomplete
from engine.messages.commands import ClosePosition
from engine.messages.legs import Side
from engine.messages.tap import MessageTap
from engine.timeutil import IST
from tests.conftest import eventually
from tests.engine.harness import Harness
from tests.faults.invariants import violations
from tests.faults.live import fast_live_broker, stop_all  # noqa: F401 (fixtures)
from tests.faults.test_order_intents_broker import (
    DAY,
    FAR,
    NEAR,
    _broker,
    _fut,
    _lot,
    _orders,
)
from tests.faults.test_order_intents_engine import (
    _alerts,
    _blocking,
    _books,
    _engine,
    _net,
    _one_order_per_intent,
    _open_trade,
)

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("stop_all", "fast_live_broker")]


def _no_violations(pool) -> None:
    def clean() -> bool:
        with pool.connection() as conn:
            return violations(conn) == {}

    try:
        eventually(clean, timeout=5)  # the risk actor books a close a moment after it
    except AssertionError:
        with pool.connection() as conn:
            pytest.fail(f"invariants violated: {violations(conn)}")


def _command(h: Harness, kind: str, payload: dict, n: int) -> dict:
    row = CommandRow(id=n, kind=kind, payload=payload, requested_by="ravi",
                     created_at=datetime.now(IST), claimed_by="test")
    return Dispatcher(h.engine).dispatch(row)


def _by_hand(sim: SimServer, security_id: str, side: str, quantity: int, cid: str) -> None:
    """The operator's own order at the broker, outside the engine."""
    client = DhanClient(sim.sim.account.client_id, api_base=sim.api_base, auth_base=sim.url,
                        access_token=sim.sim.account.current_token, timeout=2.0,
                        limiter=RateLimiter())
    client.place_order(OrderRequest(security_id=security_id, exchange_segment="NSE_FNO",
                                    transaction_type=side, quantity=quantity,
                                    order_type="MARKET", product_type="MARGIN",
                                    correlation_id=cid))
    eventually(lambda: client.positions() is not None and all(
        o.status == "TRADED" for o in sim.sim.exchange.orders.values()
        if o.body["correlationId"] == cid), timeout=5)  # requests move the simulator along


@pytest.mark.slow
def test_held_trade_far_leg_flattened_sends_only_the_near_leg_then_records_from_trade_book(
        make_sim, db_url: str) -> None:
    """The engine stopped with a close in flight; the operator sold the far (long) leg at the
    broker by hand. The manual close of the held trade sends only the near leg's BUY (the
    far leg is neither sent nor at the broker: sending it would open a new short), then the
    confirmed record_from_broker close books the trade at the trade book's prices with model
    charges. Record mode is refused without confirmation, and while the trade book does not
    cover a leg."""
    tap = MessageTap()
    h, sim, live = _engine(make_sim, db_url, tap=tap)
    tag = _open_trade(h)
    now = h.engine.clock.now()
    h.stop()
    pykka.ActorRegistry.stop_all(timeout=10)
    with psycopg.connect(db_url) as conn:  # as if the engine died with the exit orders out
        conn.execute("UPDATE open_trades SET payload = jsonb_set(payload, '{closing}',"
                     " to_jsonb(%s::text)) WHERE tag = %s", (now.isoformat(), tag))
        legs = conn.execute("SELECT payload FROM open_trades WHERE tag = %s",
                            (tag,)).fetchone()[0]["legs"]
    near = next(x for x in legs if x["side"] == "SELL")  # the short, near expiry
    far = next(x for x in legs if x["side"] == "BUY")    # its cover, far expiry
    _by_hand(sim, far["security_id"], "SELL", int(far["quantity"]), "byhand-far")
    assert _net(sim) == {near["security_id"]: -int(near["quantity"])}
    again = live.engine(tap=tap, start=now)
    again.start()
    try:
        eventually(lambda: again.query("SELECT payload->>'hold' AS h FROM open_trades")[0]["h"])
        before = len(sim.sim.exchange.orders)

        # record mode needs the operator's confirmation, and a real mode
        with pytest.raises(CommandError, match="confirm"):
            _command(again, "close_trade", {"tag": tag, "mode": "record_from_broker"}, 1)
        with pytest.raises(CommandError, match="mode"):
            _command(again, "close_trade", {"tag": tag, "mode": "paper"}, 2)
        # confirmed, but the near leg is still open: the trade book has no BUY of it
        assert _command(again, "close_trade", {"tag": tag, "mode": "record_from_broker",
                                               "confirm": True}, 3)["mode"] == \
            "record_from_broker"
        refused = eventually(lambda: _alerts(tap, "record_from_broker close of"))[0]
        assert near["security_id"] in refused and "only 0 BUY" in refused
        assert "not known to belong to another trade" in refused
        assert again.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] == 0
        assert len(sim.sim.exchange.orders) == before, "record mode never sends"

        # the manual close sends only the leg the broker still holds for the trade
        assert _command(again, "close_trade", {"tag": tag}, 4)["mode"] == "send"
        held = eventually(lambda: _alerts(tap, "manual close sent only"), timeout=10)[0]
        assert far["security_id"] in held and "record_from_broker" in held
        sent = list(sim.sim.exchange.orders.values())[before:]
        assert [(o.body["securityId"], o.body["transactionType"], o.status) for o in sent] == [
            (near["security_id"], "BUY", "TRADED")], "exactly one order: the near leg's BUY"
        assert _net(sim) == {}, "the broker is flat; no new short of the far leg"
        assert again.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] == 0
        assert _blocking(again) is not None, "the exit is not booked yet: entries blocked"

        # now the trade book covers both legs: the confirmed record closes the trade
        _command(again, "close_trade", {"tag": tag, "mode": "record_from_broker",
                                        "confirm": True}, 5)
        eventually(lambda: again.query("SELECT 1 FROM closed_trades WHERE tag = %s", tag),
                   timeout=10)
        assert len(sim.sim.exchange.orders) == before + 1, "nothing more was sent"
        day = again.engine.clock.now().date()
        orders = {o.body["correlationId"]: o for o in sim.sim.exchange.orders.values()}
        expected = {near["security_id"]: (sent[0], "BUY"),
                    far["security_id"]: (orders["byhand-far"], "SELL")}
        rows = again.query("SELECT security_id, side, quantity, price, charges, order_id"
                           " FROM executions WHERE tag = %s AND action = 'CLOSE'", tag)
        assert len(rows) == 2
        for r in rows:
            order, side = expected[r["security_id"]]
            trades = [t for t in sim.sim.exchange.trades if t["orderId"] == order.order_id]
            qty = sum(t["tradedQuantity"] for t in trades)
            vwap = (sum(Decimal(str(t["tradedPrice"])) * t["tradedQuantity"] for t in trades)
                    / qty).quantize(Decimal("0.01"))
            assert (r["side"], r["quantity"], r["order_id"]) == (side, qty, order.order_id)
            assert r["price"] == vwap, "priced at the broker's trade book"
            kind = next(x["kind"] for x in legs if x["security_id"] == r["security_id"])
            model = order_charges(kind=kind, side=side, price=vwap, quantity=qty, on=day)
            assert r["charges"] == model.total, "charges from the charges model"
        closed = again.query("SELECT exit_reason, payload, charges, realized_pnl, gross_pnl"
                             " FROM closed_trades WHERE tag = %s", tag)[0]
        assert closed["payload"]["context"]["charges_source"] == "model"
        assert "recorded from the broker's trade book" in closed["exit_reason"]
        journal = again.query("SELECT selection_context FROM trade_journal WHERE tag = %s", tag)
        assert journal[0]["selection_context"]["charges_source"] == "model"
        assert [e for e in tap.entries() if e.type.endswith("PositionClosed")
                and e.fields["tag"] == tag]
        assert _blocking(again) is None, "the exit's intents are settled with the close"
        assert _books(again) == _net(sim) == {}
        _one_order_per_intent(sim)
        _no_violations(again.pool)
    finally:
        again.stop()


class _StaleAfterCancel(threading.Thread):
    """Once the engine's cancel of the resting exit order went out (answered OK by a fault,
    never carried out), the order's own status reads CANCELLED: the engine believes it is
    gone while it is still live in the order book."""

    def __init__(self, sim: SimServer) -> None:
        super().__init__(daemon=True)
        self.sim, self.done = sim, threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not self.done.is_set():
            cancels = self.sim.sim.requests("DELETE")
            if cancels:
                oid = cancels[0]["path"].rsplit("/", 1)[1]
                order = self.sim.sim.exchange.orders[oid]
                wire = order.wire(self.sim.sim.exchange.row(order.body["securityId"]))
                wire.update(orderStatus="CANCELLED", filledQty=0,
                            remainingQuantity=int(order.body["quantity"]))
                self.sim.sim.faults.add("status", method="GET", path=f"/v2/orders/{oid}",
                                        status=200, body=[wire], count=None)
                self.done.set()
                return
            time.sleep(0.005)


@pytest.mark.slow
def test_exit_buy_still_live_after_a_failed_cancel_is_not_sent_again_and_the_trade_held(
        make_sim, db_url: str) -> None:
    """The first exit BUY rests past the fill timeout; its cancel is answered OK but not
    done, and its status then reads CANCELLED. The order is still live, so a second BUY could
    buy the short back twice (a naked long). Before any re-send the broker checks positions
    and the order book: the live order is there, nothing more is sent, ExitIncomplete puts
    the trade on hold and the alert names the live order."""
    tap = MessageTap()
    h, sim, _ = _engine(make_sim, db_url, tap=tap)
    tag = _open_trade(h)
    stale = _StaleAfterCancel(sim)
    try:
        before = len(sim.sim.exchange.orders)
        books = _books(h)
        assert _net(sim) == books
        short = next(sid for sid, q in books.items() if q < 0)
        f = sim.sim.faults
        f.add("partial_fill", method="POST", path="/v2/orders", fill_qty=0)  # the BUY rests
        f.add("status", method="DELETE", path="/v2/orders/.*", status=200,
              body={"orderStatus": "CANCELLED"}, count=None)  # "cancelled", but not done
        stale.start()
        h.engine.directory.get("executor").tell(ClosePosition(
            ts=h.engine.clock.now(), tag=tag, reason="profit target (test)"))
        alert = eventually(lambda: _alerts(tap, "stopped before sending leg"), timeout=20)[0]
        assert stale.done.is_set(), "the engine did cancel, and then read CANCELLED"
        eventually(lambda: h.query("SELECT payload->>'hold' AS h FROM open_trades")[0]["h"])
        sent = list(sim.sim.exchange.orders.values())[before:]
        assert [(o.body["securityId"], o.body["transactionType"], o.status) for o in sent] == [
            (short, "BUY", "PENDING")], "one exit order, still live; no second BUY"
        assert "still live at the broker" in alert and sent[0].body["correlationId"] in alert
        assert _net(sim) == books, "nothing changed at the broker"
        assert h.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] == 0
        assert _blocking(h) is not None, "entries stay blocked"
        # an automatic close of the held trade sends nothing either
        h.engine.directory.get("executor").tell(ClosePosition(
            ts=h.engine.clock.now(), tag=tag, reason="stop loss (test)"))
        h.engine.scheduler.settle()
        assert len(sim.sim.exchange.orders) == before + 1
        _one_order_per_intent(sim)
        _no_violations(h.pool)
    finally:
        stale.done.set()
        h.stop()


# ------------------------------------------------------------------ the live broker alone
@pytest.fixture
def deep_sim(make_sim) -> SimServer:
    return make_sim(deep_pockets=True)


def _entered(sim: SimServer, pool, base: str):
    broker = _broker(sim, pool)
    lot = _lot(sim)
    broker.execute((_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot)),
                   correlation_base=base, trade_date=DAY)
    assert {sid: n for sid, n in _sim_net(sim).items()} == {NEAR: -lot, FAR: lot}
    return broker, lot, (_fut(NEAR, Side.BUY, lot), _fut(FAR, Side.SELL, lot))


def _sim_net(sim: SimServer) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, sid, _), pos in sim.sim.exchange.positions.items():
        out[sid] = out.get(sid, 0) + pos.net
    return {sid: n for sid, n in out.items() if n}


def test_exit_resend_goes_once_positions_show_it_open_and_no_order_is_live(deep_sim, pool
                                                                          ) -> None:
    """The first exit BUY rests and is cancelled for real: the broker's positions still show
    the short open and no order of the exit is live, so the re-priced BUY goes (after those
    two reads) and the exit completes."""
    broker, lot, exit_legs = _entered(deep_sim, pool, "DC-R1")
    entry = len(deep_sim.sim.exchange.orders)
    deep_sim.sim.faults.add("partial_fill", method="POST", path="/v2/orders", fill_qty=0)
    fills = broker.execute(exit_legs, correlation_base="DC-R1-X", trade_date=DAY,
                           purpose="exit", tag="DC-R1")
    assert [f.leg.quantity for f in fills] == [lot, lot]
    sent = _orders(deep_sim)[entry:]
    assert [(o.body["securityId"], o.body["transactionType"], o.status) for o in sent] == [
        (NEAR, "BUY", "CANCELLED"), (NEAR, "BUY", "TRADED"), (FAR, "SELL", "TRADED")]
    log = [(r["method"], r["path"]) for r in deep_sim.sim.request_log]
    cancel = log.index(("DELETE", f"/v2/orders/{sent[0].order_id}"))
    resend = [i for i, x in enumerate(log) if x == ("POST", "/v2/orders")][entry + 1]
    between = log[cancel:resend]
    assert ("GET", "/v2/positions") in between and ("GET", "/v2/orders") in between, \
        "the re-send was checked against the positions and the order book first"
    assert _sim_net(deep_sim) == {}
    with pool.connection() as conn:
        assert violations(conn) == {}


def test_exit_resend_is_not_sent_when_the_positions_cannot_be_read(deep_sim, pool) -> None:
    """The same resting BUY, cancelled for real, but GET /positions fails: whether the short
    is still open cannot be known, so nothing is sent again; ExitIncomplete (hold) names the
    reason and the exit's intents stay unsettled (entries blocked)."""
    broker, lot, exit_legs = _entered(deep_sim, pool, "DC-R2")
    entry = len(deep_sim.sim.exchange.orders)
    f = deep_sim.sim.faults
    f.add("partial_fill", method="POST", path="/v2/orders", fill_qty=0)
    f.add("status", method="GET", path="/v2/positions", status=503, count=None)
    with pytest.raises(ExitIncomplete) as info:
        broker.execute(exit_legs, correlation_base="DC-R2-X", trade_date=DAY, purpose="exit",
                       tag="DC-R2")
    assert "positions could not be read" in str(info.value)
    assert info.value.open_legs == ((NEAR, "SELL", lot), (FAR, "BUY", lot))
    sent = _orders(deep_sim)[entry:]
    assert [(o.body["transactionType"], o.status) for o in sent] == [("BUY", "CANCELLED")]
    assert _sim_net(deep_sim) == {NEAR: -lot, FAR: lot}
    with pool.connection() as conn:
        assert blocking_intent(conn) is not None
        assert violations(conn) == {}


def test_entry_leg_that_times_out_is_never_sent_again(deep_sim, pool) -> None:
    """Opening orders are never re-sent: the wing's entry order rests past the fill timeout,
    is cancelled, and the entry fails — one order, the short never sent, nothing open."""
    lot = _lot(deep_sim)
    deep_sim.sim.faults.add("partial_fill", method="POST", path="/v2/orders", fill_qty=0)
    broker = _broker(deep_sim, pool)
    with pytest.raises(FillTimeoutError):
        broker.execute((_fut(NEAR, Side.SELL, lot), _fut(FAR, Side.BUY, lot)),
                       correlation_base="DC-E1", trade_date=DAY)
    assert [(o.body["securityId"], o.body["transactionType"], o.status)
            for o in _orders(deep_sim)] == [(FAR, "BUY", "CANCELLED")]
    assert _sim_net(deep_sim) == {}
    with pool.connection() as conn:
        assert blocking_intent(conn) is None, "the refused entry is settled"
        assert violations(conn) == {}
