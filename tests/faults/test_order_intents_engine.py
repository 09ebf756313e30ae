"""Fault tests of the whole engine (real actors, real PostgreSQL, the Dhan simulator on
loopback) on the money path of issue 11: an order in doubt, a kill between the fills and the
booking, a crash between two legs, the operator's decision.

Each test checks invariants on the simulator's own books, not a mechanism: never two orders
for one intent, never a reversed exit leg, never an unhedged short, and at the end every
position at the broker is explained by the books (or named in an alert while unresolved).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from decimal import Decimal

import psycopg
import pykka
import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.models import OrderRequest
from engine.broker.dhan.ratelimit import RateLimiter
from engine.bus.commands import CommandRow
from engine.bus.dispatch import Dispatcher
from engine.dhan_sim import SimServer
from engine.execution.intents import blocking_intent
from engine.messages.commands import ClosePosition, GetStatus, OpenPosition, ResolveIntents
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.messages.tap import MessageTap
from engine.timeutil import IST
from tests.conftest import eventually
from tests.engine.harness import Harness
from tests.faults.live import LiveSim, fast_live_broker, stop_all  # noqa: F401 (fixtures)
from tests.faults.live import alerts as _alerts
from tests.faults.live import net as _net

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("stop_all", "fast_live_broker")]


def _engine(make_sim, db_url: str, *, tap: MessageTap | None = None
            ) -> tuple[Harness, SimServer, LiveSim]:
    live = LiveSim(make_sim, db_url)
    return live.engine(tap=tap), live.sim, live


def _open_trade(h: Harness) -> str:
    h.start()
    h.run_until(10, 6)  # seed 7 opens a live DC trade at 10:06
    tags = h.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
    assert tags, "seed 7 opens a live DC trade at 10:06"
    return tags[0]


def _books(h: Harness) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in h.query("SELECT payload FROM open_trades WHERE mode = 'live'"):
        for leg in row["payload"]["legs"]:
            q = int(leg["quantity"]) * (1 if leg["side"] == "BUY" else -1)
            out[leg["security_id"]] = out.get(leg["security_id"], 0) + q
    return {sid: n for sid, n in out.items() if n}


def _one_order_per_intent(sim: SimServer) -> None:
    counts = Counter(o.body["correlationId"] for o in sim.sim.exchange.orders.values())
    assert all(n == 1 for n in counts.values()), f"two orders for one intent: {counts}"


def _blocking(h: Harness):
    with h.pool.connection() as conn:
        return blocking_intent(conn)


def test_exit_leg_in_doubt_after_429_drop_timeout_is_resolved_not_reversed(
        make_sim, db_url: str) -> None:
    """Issue 11 §2: exit leg X-0 fills; X-1 times out and its lookups get a 429, a dropped
    connection and a timeout (and go on failing for a while). X-1 had filled. The old engine
    declared it unknown and reversed X-0: naked short far future. Now: X-1 is unresolved,
    alerted with the exposure, entries are blocked, nothing is reversed or re-sent, and the
    trade closes once X-1 is found TRADED; the broker ends flat."""
    tap = MessageTap()
    h, sim, _ = _engine(make_sim, db_url, tap=tap)
    tag = _open_trade(h)
    try:
        entry_orders = len(sim.sim.exchange.orders)
        legs = h.query("SELECT payload FROM open_trades WHERE tag = %s", tag)[0]["payload"]["legs"]
        f = sim.sim.faults
        f.add("timeout", method="POST", path="/v2/orders", seconds=2.0, skip=1)
        f.add("rate_limit", method="GET", path="/v2/orders/external/.*", count=1)
        f.add("drop", method="GET", path="/v2/orders/external/.*", count=1)
        f.add("timeout", method="GET", path="/v2/orders/external/.*", seconds=1.5, count=1)
        # ... and the lookups keep failing for a while after the grace
        f.add("status", method="GET", path="/v2/orders/external/.*", status=503, count=None,
              skip=2)
        f.add("status", method="GET", path="/v2/orders", status=503, count=None, skip=1)
        h.engine.directory.get("executor").tell(ClosePosition(ts=h.engine.clock.now(), tag=tag,
                                                              reason="profit target (test)"))
        h.engine.scheduler.settle()
        exits = list(sim.sim.exchange.orders.values())[entry_orders:]
        assert len(exits) == 2 and all(o.status == "TRADED" for o in exits), \
            "both exit legs filled at the broker"
        assert _net(sim) == {}, "the broker is flat"
        # the engine does not know X-1's outcome yet: it says what the broker may hold
        alert = eventually(lambda: _alerts(tap, "ORDER OUTCOME UNKNOWN"))[0]
        held = next(x for x in legs if x["side"] == "BUY")  # the wing X-1 sells
        assert f"LONG {held['quantity']} of security {held['security_id']}" in alert
        doubt = _blocking(h)
        assert doubt is not None and doubt["state"] == "unresolved"
        assert doubt["purpose"] == "exit" and doubt["security_id"] == held["security_id"]
        # a new entry is denied while the order is unresolved (by any strategy)
        h.engine.directory.get("risk").tell(OpenPosition(
            ts=h.engine.clock.now(), strategy="CAL_ARB", tag="DC-NEW-1", legs=(Leg(
                security_id=held["security_id"], side=Side.BUY, quantity=int(held["quantity"]),
                kind=InstrumentKind.FUT),)))
        denied = eventually(lambda: [e for e in tap.entries() if e.type.endswith("EntryDenied")
                                     and e.fields["tag"] == "DC-NEW-1"])
        assert "unresolved" in denied[0].fields["reason"]
        # the monitor's exit for the same trade is not sent again while X-1 is in doubt
        h.engine.directory.get("executor").tell(ClosePosition(ts=h.engine.clock.now(), tag=tag,
                                                              reason="stop loss (test)"))
        h.engine.scheduler.settle()
        assert len(sim.sim.exchange.orders) == entry_orders + 2, "nothing reversed or re-sent"
        assert h.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] == 0

        f.clear()  # the broker answers again: X-1 is found TRADED and the exit completes
        eventually(lambda: h.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] == 1,
                   timeout=15)
        assert len(sim.sim.exchange.orders) == entry_orders + 2
        _one_order_per_intent(sim)
        assert _net(sim) == {} and _books(h) == {}
        assert _blocking(h) is None
        rows = h.query("SELECT correlation_id, state, resolution, settled_at FROM order_intents"
                       " WHERE purpose = 'exit' ORDER BY id")
        assert [r["state"] for r in rows] == ["TRADED", "TRADED"]
        assert "found at the broker" in rows[1]["resolution"]
        assert all(r["settled_at"] is not None for r in rows)
        assert _alerts(tap, "exit's orders are resolved")
        assert h.escalations == []
    finally:
        h.stop()


def test_kill_between_fills_and_record_open_adopts_the_trade_on_restart(
        make_sim, db_url: str) -> None:
    """Issue 11 §4: the entry fills at the broker but the engine dies before the trade is
    booked (here the database refuses the open_trades row, then the engine is stopped with
    no clean-up). The intents written before the calls show both orders; the restarted
    executor resolves them and adopts the trade into its tag at the broker's fill prices."""
    h, sim, live = _engine(make_sim, db_url)
    with h.pool.connection() as conn:
        conn.execute("CREATE FUNCTION fail_open() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$")
        conn.execute("CREATE TRIGGER fail_open BEFORE INSERT ON open_trades"
                     " FOR EACH ROW EXECUTE FUNCTION fail_open()")
    h.start()
    try:
        h.run_until(10, 7)
        orders = sorted(sim.sim.exchange.orders.values(), key=lambda o: int(o.order_id))
        assert len(orders) == 2 and all(o.status == "TRADED" for o in orders)
        assert h.query("SELECT count(*) AS n FROM open_trades")[0]["n"] == 0, "not booked"
        rows = h.query("SELECT trade_tag, purpose, correlation_id, order_id, state, filled_qty,"
                       " quantity, product, settled_at FROM order_intents ORDER BY id")
        assert {(r["correlation_id"], r["order_id"], r["state"]) for r in rows} == {
            (o.body["correlationId"], o.order_id, "TRADED") for o in orders}
        assert all(r["purpose"] == "entry" and r["settled_at"] is None
                   and r["product"] == "MARGIN" for r in rows)
        assert _blocking(h) is not None, "entries blocked: the books do not explain the broker"
        tag = rows[0]["trade_tag"]
        now = h.engine.clock.now()
    finally:
        h.stop()  # the "kill": whatever the executor held in memory is gone
        pykka.ActorRegistry.stop_all(timeout=10)
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TRIGGER fail_open ON open_trades")
    again = live.engine(start=now)
    again.start()
    try:
        eventually(lambda: again.query("SELECT tag FROM open_trades"), timeout=10)
        assert [r["tag"] for r in again.query("SELECT tag FROM open_trades")] == [tag]
        booked = {(r["order_id"], r["correlation_id"], r["price"].quantize(Decimal("0.01")))
                  for r in again.query("SELECT * FROM executions WHERE action = 'OPEN'")}
        assert booked == {(o.order_id, o.body["correlationId"],
                           Decimal(str(o.avg_price)).quantize(Decimal("0.01"))) for o in orders}
        assert len(sim.sim.exchange.orders) == 2, "nothing was sent again"
        assert _books(again) == _net(sim), "every position at the broker is in the books"
        assert all(r["settled_at"] is not None
                   for r in again.query("SELECT settled_at FROM order_intents"))
        assert _blocking(again) is None
    finally:
        again.stop()


@pytest.mark.parametrize("registration_delay", [0.0, 0.5], ids=["prompt", "slow-registration"])
def test_crash_between_entry_legs_unwinds_only_the_known_fill_after_restart(
        make_sim, db_url: str, registration_delay: float) -> None:
    """The executor dies after the first entry leg filled and before the second was sent
    (the second intent cannot be written). The supervisor restarts it; it finds the first
    leg's intent, knows the second was never sent, and unwinds exactly the known fill.

    ``slow-registration`` forces the timing CI once hit: the restarted executor's first
    resolution round fires before the supervisor has put it in the directory (the role
    still names the dead one). The round must reach the new executor, not be a dead letter
    that leaves the entry unresolved."""
    tap = MessageTap()
    h, sim, _ = _engine(make_sim, db_url, tap=tap)
    directory, register = h.engine.directory, h.engine.directory.set
    registered: set[str] = set()

    def register_late_on_restart(role, ref):
        if role == "executor" and role in registered:
            time.sleep(registration_delay)  # the new executor's on_start has run by now
        registered.add(role)
        register(role, ref)

    directory.set = register_late_on_restart
    with h.pool.connection() as conn:
        conn.execute("CREATE TABLE fail_once (done boolean)")
        conn.execute(
            "CREATE FUNCTION fail_second_leg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.purpose = 'entry' AND NOT EXISTS (SELECT 1 FROM fail_once) AND"
            " (SELECT count(*) FROM order_intents WHERE purpose = 'entry') = 1 THEN"
            "   INSERT INTO fail_once VALUES (true);"
            "   RAISE EXCEPTION 'connection lost (test)'; END IF; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER fail_second_leg BEFORE INSERT ON order_intents"
                     " FOR EACH ROW EXECUTE FUNCTION fail_second_leg()")
    h.start()
    try:
        h.run_until(10, 6)
        eventually(lambda: _blocking(h) is None and len(sim.sim.exchange.orders) == 2,
                   timeout=10)  # the restarted executor settled the entry
        orders = sorted(sim.sim.exchange.orders.values(), key=lambda o: int(o.order_id))
        first, unwind = orders
        assert first.body["transactionType"] == "BUY", "the wing goes first"
        assert (unwind.body["securityId"], unwind.body["transactionType"]) == (
            first.body["securityId"], "SELL") and unwind.status == "TRADED"
        assert _net(sim) == {}, "the known fill was unwound: nothing left at the broker"
        assert h.query("SELECT count(*) AS n FROM open_trades")[0]["n"] == 0
        # (announced once the supervisor has registered it, which may come after the unwind)
        eventually(lambda: [e for e in tap.entries() if e.type.endswith("ActorRestarted")
                            and e.fields["name"] == "executor"])  # the executor was restarted
        assert [e for e in tap.entries() if e.type.endswith("OrderRejected")
                and "interrupted" in e.fields["reason"]]
        _one_order_per_intent(sim)
    finally:
        h.stop()


def test_unresolved_entry_leg_waits_for_the_operator_who_marks_it_not_filled(
        make_sim, db_url: str) -> None:
    """The short leg's place answer is lost and the order never shows up: a lookup that
    finds nothing is not proof of absence, so the engine neither unwinds the wing nor sends
    the leg again; entries stay blocked. The operator checks the broker and marks the order
    not filled (engine command resolve_order): the known fill is unwound."""
    tap = MessageTap()
    h, sim, _ = _engine(make_sim, db_url, tap=tap)
    sim.sim.faults.add("status", method="POST", path="/v2/orders", status=503, skip=1)
    h.start()
    try:
        h.run_until(10, 6)
        alert = eventually(lambda: _alerts(tap, "ORDER OUTCOME UNKNOWN"))[0]
        (wing,) = sim.sim.exchange.orders.values()
        assert f"LONG {wing.body['quantity']} of security {wing.body['securityId']}" in alert
        h.run_until(10, 8)  # more scans and rounds: nothing happens on an assumption
        assert list(sim.sim.exchange.orders.values()) == [wing]
        doubt = _blocking(h)
        assert doubt is not None and doubt["state"] == "unresolved"
        cid = doubt["correlation_id"]
        denied = [e.fields["reason"] for e in tap.entries() if e.type.endswith("EntryDenied")]
        assert all(cid in r for r in denied if "unresolved" in r)
        # the session deadline (15:15 IST, 15 minutes before the close) passes: the default
        # action is to alert again and leave the decision to the operator, entries blocked
        clock = h.engine.clock
        clock.advance_to(clock.now().replace(hour=15, minute=16))
        h.engine.directory.send("executor", ResolveIntents(ts=clock.now(), reason="test"))
        deadline = eventually(lambda: _alerts(tap, "DEADLINE"), timeout=10)[0]
        assert "15:15 IST" in deadline and cid in deadline and "resolve_order" in deadline
        assert list(sim.sim.exchange.orders.values()) == [wing]
        assert _blocking(h)["state"] == "unresolved"

        row = CommandRow(id=1, kind="resolve_order", payload={
            "correlation_id": cid, "action": "not_filled", "confirm": True},
            requested_by="ravi", created_at=datetime.now(IST), claimed_by="test")
        assert Dispatcher(h.engine).dispatch(row)["sent"] == "ResolveOrder"
        eventually(lambda: _net(sim) == {}, timeout=10)
        eventually(lambda: _blocking(h) is None, timeout=5)
        resolution = h.query("SELECT resolution FROM order_intents WHERE correlation_id = %s",
                             cid)[0]["resolution"]
        assert "operator ravi: marked not filled" in resolution
        assert h.query("SELECT count(*) AS n FROM open_trades")[0]["n"] == 0
        _one_order_per_intent(sim)
    finally:
        h.stop()


def test_manual_close_of_a_held_trade_never_opens_a_new_position(make_sim, db_url: str) -> None:
    """The documented remedy for a trade on hold is to close it from the dashboard. When the
    broker no longer holds one of its legs (closed by hand at the broker), sending both exit
    legs would open a new naked position: only the leg the broker still holds for the trade
    is sent, and the alert names the other one and the record_from_broker close."""
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
    short = next(x for x in legs if x["side"] == "SELL")
    # the operator bought the short back by hand at the broker, outside the engine
    client = DhanClient(sim.sim.account.client_id, api_base=sim.api_base, auth_base=sim.url,
                        access_token=sim.sim.account.current_token, timeout=2.0,
                        limiter=RateLimiter())
    client.place_order(OrderRequest(security_id=short["security_id"], exchange_segment="NSE_FNO",
                                    transaction_type="BUY", quantity=int(short["quantity"]),
                                    order_type="MARKET", product_type="MARGIN",
                                    correlation_id="byhand-1"))
    eventually(lambda: client.positions() is not None and short["security_id"] not in _net(sim),
               timeout=5)  # (every request moves the simulator's orders along)
    again = live.engine(tap=tap, start=now)
    again.start()
    try:
        eventually(lambda: again.query("SELECT payload->>'hold' AS h FROM open_trades")[0]["h"])
        before = len(sim.sim.exchange.orders)
        again.engine.directory.get("executor").tell(ClosePosition(
            ts=again.engine.clock.now(), tag=tag, reason="manual close by ravi"))
        again.engine.scheduler.settle()
        sent = list(sim.sim.exchange.orders.values())[before:]
        wing = next(x for x in legs if x["side"] == "BUY")
        assert [(o.body["securityId"], o.body["transactionType"]) for o in sent] == [
            (wing["security_id"], "SELL")], "only the leg the broker still holds is sent"
        held = eventually(lambda: _alerts(tap, "manual close sent only"))
        assert short["security_id"] in held[0] and "record_from_broker" in held[0]
        assert _net(sim) == {}, "no new naked position: the broker is flat"
    finally:
        again.stop()


def test_operator_marks_an_unresolved_entry_leg_filled_and_the_trade_is_recorded(
        make_sim, db_url: str) -> None:
    """The short leg filled at the broker but every lookup keeps failing: the engine cannot
    know. The operator reads the fill at the broker and marks it filled at its price: the
    entry is complete and recorded; the books explain the broker's positions."""
    tap = MessageTap()
    h, sim, _ = _engine(make_sim, db_url, tap=tap)
    f = sim.sim.faults
    f.add("timeout", method="POST", path="/v2/orders", seconds=1.5, skip=1)
    f.add("status", method="GET", path="/v2/orders/external/.*", status=503, count=None)
    f.add("status", method="GET", path="/v2/orders", status=503, count=None, skip=1)
    h.start()
    try:
        h.run_until(10, 6)
        eventually(lambda: _alerts(tap, "ORDER OUTCOME UNKNOWN"))
        doubt = _blocking(h)
        assert doubt is not None and doubt["state"] == "unresolved"
        short = next(o for o in sim.sim.exchange.orders.values()
                     if o.body["correlationId"] == doubt["correlation_id"])
        def traded() -> bool:  # the simulator moves orders along on requests; nudge it
            sim.sim.exchange.advance(lambda _cid: 1e12)
            return short.status == "TRADED"

        eventually(traded, timeout=5)
        assert h.query("SELECT count(*) AS n FROM open_trades")[0]["n"] == 0
        row = CommandRow(id=2, kind="resolve_order", payload={
            "correlation_id": doubt["correlation_id"], "action": "filled",
            "price": str(short.avg_price), "confirm": True},
            requested_by="ravi", created_at=datetime.now(IST), claimed_by="test")
        Dispatcher(h.engine).dispatch(row)
        eventually(lambda: h.query("SELECT tag FROM open_trades"), timeout=10)
        assert _books(h) == _net(sim), "the books explain the broker"
        assert _blocking(h) is None
        price = h.query("SELECT price FROM executions WHERE correlation_id = %s",
                        doubt["correlation_id"])[0]["price"]
        assert price.quantize(Decimal("0.01")) == Decimal(str(short.avg_price)).quantize(
            Decimal("0.01"))
        _one_order_per_intent(sim)
    finally:
        h.stop()


def test_refused_exit_is_alerted_every_time_and_nothing_is_reversed(make_sim, db_url) -> None:
    """Issue 11 §7: a refused *exit* escalates every time (an entry refusal backs off). The
    broker rejects every exit order: each close attempt alerts, the position stays as it was
    at the broker and in the books, and a later close (faults lifted) flattens it once."""
    tap = MessageTap()
    h, sim, _ = _engine(make_sim, db_url, tap=tap)
    tag = _open_trade(h)
    try:
        before = _net(sim)
        assert before == _books(h)
        sim.sim.faults.add("reject_order", method="POST", path="/v2/orders", count=None)
        executor = h.engine.directory.get("executor")
        for attempt in range(2):
            executor.tell(ClosePosition(ts=h.engine.clock.now(), message_id=f"t-close-{attempt}",
                                        tag=tag, reason="manual close by test"))
            eventually(lambda n=attempt + 1: len(_alerts(tap, "EXIT REFUSED")) >= n, timeout=30)
        assert _net(sim) == before == _books(h), "a refused exit changed the position"
        _one_order_per_intent(sim)
        sim.sim.faults.clear()
        executor.tell(ClosePosition(ts=h.engine.clock.now(), message_id="t-close-ok", tag=tag,
                                    reason="manual close by test"))
        eventually(lambda: h.query("SELECT 1 FROM closed_trades WHERE tag = %s", tag),
                   timeout=30)
        assert _net(sim) == {} and _books(h) == {}
        _one_order_per_intent(sim)
    finally:
        h.stop()
