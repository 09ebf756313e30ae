"""Reconciliation auto-heal through the whole engine (real actors, real PostgreSQL, the Dhan
simulator on loopback): a position closed by hand at the broker, a position opened by hand
(adopted, or only alerted), a partial exit by hand (healed), the broker down during a check
(nothing changes, retried), a heal whose audit row cannot be written (neither is kept), and a
restart during the start-up reconciliation (live entries wait until it is done).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from engine.messages.commands import OpenPosition
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.messages.tap import MessageTap
from tests.conftest import eventually
from tests.engine.harness import Harness
from tests.faults.invariants import violations
from tests.faults.live import LiveSim, fast_live_broker, stop_all  # noqa: F401 (fixtures)
from tests.faults.live import alerts as _alerts
from tests.faults.live import net as _net

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("stop_all", "fast_live_broker")]
TAG = "DC-HEAL-1"


def _open(h: Harness, lots: int = 1, tag: str = TAG) -> list[Leg]:
    """A live futures calendar (long far, short near) opened through the executor."""
    snap = h.engine.market.snapshot()
    near, far = snap.near_future, snap.far_future
    qty = snap.lot_size * lots
    legs = (Leg(security_id=str(far.security_id), side=Side.BUY, quantity=qty,
                kind=InstrumentKind.FUT, expiry=far.expiry),
            Leg(security_id=str(near.security_id), side=Side.SELL, quantity=qty,
                kind=InstrumentKind.FUT, expiry=near.expiry))
    h.engine.directory.get("executor").tell(OpenPosition(
        ts=h.engine.clock.now(), strategy="CAL_ARB", tag=tag, legs=legs, stage="live"))
    h.engine.scheduler.settle()
    eventually(lambda: h.query("SELECT 1 FROM open_trades WHERE tag = %s", tag), timeout=10)
    return list(legs)


def _manual(live: LiveSim, sid: str, side: str, qty: int) -> dict[str, Any]:
    order = live.admin("manual_order", {"security_id": sid, "side": side, "quantity": qty})
    assert order["order"]["orderStatus"] == "TRADED"
    return order["order"]


def _audit(h: Harness) -> list[dict[str, Any]]:
    return h.query("SELECT * FROM reconciliation_audit ORDER BY id")


def _actions(h: Harness) -> list[str]:
    return [r["action"] for r in _audit(h) if r["action"] != "STARTUP_RECONCILED"]


def _check(h: Harness, minute: int) -> None:
    """Run the engine to 09:<minute> (one reconciliation check per monitor cycle)."""
    h.run_until(9, minute)
    h.engine.scheduler.settle()


def _no_violations(h: Harness) -> None:
    with h.pool.connection() as conn:
        assert violations(conn) == {}


def test_position_closed_by_hand_is_removed_after_two_checks(make_sim, db_url: str) -> None:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True, tap=tap).start()
    try:
        legs = _open(h)
        _check(h, 15)
        assert h.query("SELECT action FROM reconciliation_audit")[-1]["action"] == \
            "STARTUP_RECONCILED"
        by_hand = {leg.security_id: _manual(live, leg.security_id,
                                            "SELL" if leg.side is Side.BUY else "BUY",
                                            leg.quantity) for leg in legs}
        assert _net(live.sim) == {}
        h.engine.scheduler.run_lockstep(h.engine.clock.now())  # one check: seen once
        assert h.query("SELECT tag FROM open_trades")[0]["tag"] == TAG
        _check(h, 18)
        closed = eventually(lambda: h.query("SELECT * FROM closed_trades WHERE tag = %s", TAG),
                            timeout=10)[0]
        exits = {r["security_id"]: r for r in h.query(
            "SELECT * FROM executions WHERE tag = %s AND action = 'CLOSE'", TAG)}
        book = {t.order_id: t for t in live.client().trades()}
        for sid, order in by_hand.items():  # at the trade book's price, with charges
            assert exits[sid]["order_id"] == order["orderId"]
            assert exits[sid]["price"] == Decimal(str(book[order["orderId"]].traded_price)
                                                  ).quantize(Decimal("0.01"))
            assert exits[sid]["charges"] > 0
        removal = [r for r in _audit(h) if r["action"] == "CONFIRMED_FLAT_REMOVAL"]
        assert len(removal) == 1 and removal[0]["trade_tag"] == TAG
        assert removal[0]["details"]["realized_pnl"] == str(closed["realized_pnl"])
        journal = h.query("SELECT * FROM trade_journal WHERE tag = %s", TAG)
        assert journal and journal[0]["realized_pnl"] == closed["realized_pnl"]
        eventually(lambda: h.query("SELECT 1 FROM risk_envelope_stages WHERE stage = 'live'"
                                   " AND closes_seen = 1"), timeout=10)
        assert _alerts(tap, "closed by the broker, not by the engine")
        _no_violations(h)
    finally:
        h.stop()


def _adopt_setup(make_sim, db_url: str, adopt: bool) -> tuple[LiveSim, Harness, MessageTap, str]:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True, tap=tap)
    h.engine.settings.set("RECON_ADOPT_ORPHANS", "true" if adopt else "false",
                          updated_by="test")
    h.start()
    _check(h, 15)
    sid = str(h.engine.market.snapshot().near_future.security_id)
    lot = h.engine.market.snapshot().lot_size
    _manual(live, sid, "BUY", lot)
    return live, h, tap, sid


def test_manual_position_at_the_broker_is_adopted(make_sim, db_url: str) -> None:
    live, h, tap, sid = _adopt_setup(make_sim, db_url, adopt=True)
    try:
        h.engine.scheduler.run_lockstep(h.engine.clock.now())
        assert not h.query("SELECT 1 FROM open_trades")  # one sighting: not yet
        _check(h, 18)
        rows = eventually(lambda: h.query("SELECT * FROM open_trades"), timeout=10)
        assert len(rows) == 1 and rows[0]["strategy"] == "ADOPTED" and rows[0]["mode"] == "live"
        leg = rows[0]["payload"]["legs"][0]
        pos = {p.security_id: p for p in live.client().positions()}[sid]
        assert leg["security_id"] == sid and leg["side"] == "BUY"
        assert leg["quantity"] == pos.net_qty
        assert Decimal(leg["entry_price"]) == Decimal(str(pos.buy_avg)).quantize(Decimal("0.01"))
        audit = [r for r in _audit(h) if r["action"] == "ORPHAN_ADOPTION"]
        assert len(audit) == 1 and audit[0]["trade_tag"] == rows[0]["tag"]
        assert "ORPHAN_ALERT" not in _actions(h)
        assert _alerts(tap, "ADOPTED as live trade")
        _check(h, 20)  # the books now agree: nothing new, nothing adopted twice
        assert len(h.query("SELECT * FROM open_trades")) == 1
        assert [a for a in _actions(h) if a == "ORPHAN_ADOPTION"] == ["ORPHAN_ADOPTION"]
        _no_violations(h)
    finally:
        h.stop()


def test_manual_position_is_only_alerted_when_adoption_is_off(make_sim, db_url: str) -> None:
    _live, h, tap, sid = _adopt_setup(make_sim, db_url, adopt=False)
    try:
        _check(h, 18)
        assert not h.query("SELECT 1 FROM open_trades")
        orphan = [r for r in _audit(h) if r["action"] == "ORPHAN_ALERT"]
        assert len(orphan) == 1 and orphan[0]["security_id"] == sid
        assert "ORPHAN_ADOPTION" not in _actions(h)
        assert _alerts(tap, "not adopted")
    finally:
        h.stop()


def test_partial_manual_exit_is_healed(make_sim, db_url: str) -> None:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True, tap=tap).start()
    try:
        legs = _open(h, lots=2)
        _check(h, 15)
        lot = legs[0].quantity // 2
        order = _manual(live, legs[0].security_id, "SELL", lot)  # half the long leg, by hand
        _check(h, 18)
        part = eventually(lambda: h.query("SELECT * FROM closed_trades WHERE tag = %s",
                                          f"{TAG}~1"), timeout=10)[0]
        assert _actions(h)[:3] == ["PENDING_QTY_MISMATCH", "CONFIRMED_QTY_MISMATCH",
                                   "QTY_MISMATCH_HEALED"]
        exit_row = h.query("SELECT * FROM executions WHERE tag = %s AND action = 'CLOSE'",
                           f"{TAG}~1")
        book = {t.order_id: t for t in live.client().trades()}
        assert len(exit_row) == 1 and exit_row[0]["quantity"] == lot
        assert exit_row[0]["price"] == Decimal(str(book[order["orderId"]].traded_price)
                                               ).quantize(Decimal("0.01"))
        assert exit_row[0]["charges"] > 0
        rest = h.query("SELECT payload FROM open_trades WHERE tag = %s", TAG)[0]["payload"]
        assert [x["quantity"] for x in rest["legs"]] == [lot, 2 * lot]
        assert not rest.get("hold")
        assert part["payload"]["context"]["partial_of"] == TAG
        healed = next(r for r in _audit(h) if r["action"] == "QTY_MISMATCH_HEALED")
        assert healed["details"]["split_off"] == f"{TAG}~1"
        assert not _alerts(tap, "confirmed quantity mismatch")  # explained: not alerted
        _check(h, 20)  # books and broker agree again: nothing new
        assert _actions(h).count("QTY_MISMATCH_HEALED") == 1
        assert len(_actions(h)) == 3
        _no_violations(h)
    finally:
        h.stop()


POSITIONS_DOWN = {"kind": "status", "path": "/v2/positions", "method": "GET", "count": None,
                  "params": {"status": 500, "body": {"errorType": "Server", "errorCode": "DH-908",
                                                     "errorMessage": "down"}}}


def test_broker_down_during_reconciliation_changes_nothing(make_sim, db_url: str) -> None:
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True).start()
    try:
        legs = _open(h)
        _check(h, 15)
        before = len(_audit(h))
        for leg in legs:
            _manual(live, leg.security_id, "SELL" if leg.side is Side.BUY else "BUY",
                    leg.quantity)
        live.admin("faults", POSITIONS_DOWN)
        _check(h, 18)  # several cycles with the broker down
        assert len(_audit(h)) == before
        assert h.query("SELECT tag FROM open_trades")[0]["tag"] == TAG
        assert not h.query("SELECT 1 FROM closed_trades")
        _clear(live)
        _check(h, 21)  # retried: two good checks remove it
        eventually(lambda: h.query("SELECT 1 FROM closed_trades WHERE tag = %s", TAG),
                   timeout=10)
        assert "CONFIRMED_FLAT_REMOVAL" in _actions(h)
    finally:
        h.stop()


def _clear(live: LiveSim) -> None:
    import urllib.request

    req = urllib.request.Request(f"{live.sim.url}/__admin/faults", method="DELETE")  # noqa: S310
    with urllib.request.urlopen(req, timeout=5):  # noqa: S310
        pass


def test_heal_and_audit_are_one_transaction(make_sim, db_url: str) -> None:
    """The audit row of a flat removal fails (a trigger raises, as a crash between the two
    would): the close is not kept either; once the audit can be written, both are."""
    live = LiveSim(make_sim, db_url)
    h = live.engine(hands_off=True).start()
    try:
        legs = _open(h)
        _check(h, 15)
        with h.pool.connection() as conn:
            conn.execute("""
                CREATE FUNCTION test_audit_crash() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.action = 'CONFIRMED_FLAT_REMOVAL' THEN
                        RAISE EXCEPTION 'interrupted between the heal and its audit row';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER test_audit_crash BEFORE INSERT ON reconciliation_audit
                    FOR EACH ROW EXECUTE FUNCTION test_audit_crash();""")
        for leg in legs:
            _manual(live, leg.security_id, "SELL" if leg.side is Side.BUY else "BUY",
                    leg.quantity)
        _check(h, 19)
        assert h.query("SELECT tag FROM open_trades")[0]["tag"] == TAG
        assert not h.query("SELECT 1 FROM closed_trades")
        assert not h.query("SELECT 1 FROM executions WHERE action = 'CLOSE'")
        assert "CONFIRMED_FLAT_REMOVAL" not in _actions(h)
        with h.pool.connection() as conn:
            conn.execute("DROP TRIGGER test_audit_crash ON reconciliation_audit")
        _check(h, 25)  # the broker close is sent again (every 3 checks): now both are kept
        eventually(lambda: h.query("SELECT 1 FROM closed_trades WHERE tag = %s", TAG),
                   timeout=10)
        assert _actions(h).count("CONFIRMED_FLAT_REMOVAL") == 1
        _no_violations(h)
    finally:
        h.stop()


def _try_entry(h: Harness, tap: MessageTap, tag: str) -> str | None:
    """Send a live CAL_ARB entry to the RiskActor; its denial reason, or None if admitted."""
    snap = h.engine.market.snapshot()
    legs = (Leg(security_id=str(snap.far_future.security_id), side=Side.BUY,
                quantity=snap.lot_size, kind=InstrumentKind.FUT, expiry=snap.far_future.expiry),
            Leg(security_id=str(snap.near_future.security_id), side=Side.SELL,
                quantity=snap.lot_size, kind=InstrumentKind.FUT,
                expiry=snap.near_future.expiry))
    h.engine.directory.get("risk").tell(OpenPosition(
        ts=h.engine.clock.now(), strategy="CAL_ARB", tag=tag, legs=legs, stage="live"))
    h.engine.scheduler.settle()

    def outcome() -> Any:
        for e in tap.entries():
            if e.fields.get("tag") == tag and e.type.endswith("EntryDenied"):
                return e.fields["reason"]
        return "ADMITTED" if h.query("SELECT 1 FROM open_trades WHERE tag = %s", tag) else None

    got = eventually(outcome, timeout=10)
    return None if got == "ADMITTED" else got


def test_restart_during_startup_reconciliation_blocks_live_entries(make_sim,
                                                                     db_url: str) -> None:
    tap = MessageTap()
    live = LiveSim(make_sim, db_url)
    live.admin("faults", POSITIONS_DOWN)
    h = live.engine(hands_off=True, tap=tap).start()
    try:
        _check(h, 16)
        why = _try_entry(h, tap, "CA-GATE-1")
        assert why is not None and "start-up reconciliation" in why
        assert _alerts(tap, "start-up reconciliation failed")
    finally:
        h.stop()
    tap2 = MessageTap()
    h = live.engine(hands_off=True, tap=tap2, start=h.engine.clock.now()).start()
    try:
        why = _try_entry(h, tap2, "CA-GATE-2")  # the new process has not reconciled yet
        assert why is not None and "start-up reconciliation" in why
        assert not [r for r in _audit(h) if r["action"] == "STARTUP_RECONCILED"]
        _clear(live)
        h.run_until(9, 18)
        h.engine.scheduler.settle()
        assert [r for r in _audit(h) if r["action"] == "STARTUP_RECONCILED"]
        assert _try_entry(h, tap2, "CA-GATE-3") is None
        assert h.query("SELECT strategy FROM open_trades WHERE tag = 'CA-GATE-3'")
    finally:
        h.stop()
