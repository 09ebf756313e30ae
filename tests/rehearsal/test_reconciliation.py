"""Rehearsal: live-position reconciliation. The whole engine with BROKER=dhan against the Dhan
simulator opens a live CAL_ARB trade; then orders placed by hand on the simulator (outside the
engine) make one leg disagree with the books and leave an orphan position on another
security. Two reconciliations later: PENDING then CONFIRMED mismatch rows, an ORPHAN_ALERT
row, alerts to the notifier, and the audit table still refuses UPDATE and DELETE."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pykka
import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.models import OrderRequest
from engine.broker.dhan.ratelimit import RateLimiter
from engine.dhan_sim import SimServer, SnapshotMarket
from engine.messages.tap import MessageTap
from tests.conftest import eventually
from tests.engine.harness import Harness
from tests.rehearsal.conftest import live_env
from tests.rehearsal.test_rehearsal import EngineTimeMarket


@pytest.fixture
def _stop_all() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _run_to(h: Harness, hh: int, mm: int, ss: int) -> None:
    h.engine.scheduler.run_lockstep(h.engine.clock.now().replace(hour=hh, minute=mm, second=ss,
                                                                 microsecond=0))


def _audit(h: Harness) -> list[dict]:
    """The audit rows of differences (the start-up check's own row is asserted apart)."""
    return h.query("SELECT action, trade_tag, security_id, details FROM reconciliation_audit"
                   " WHERE action <> 'STARTUP_RECONCILED' ORDER BY id")


def _startup_rows(h: Harness) -> list[dict]:
    return h.query("SELECT details FROM reconciliation_audit"
                   " WHERE action = 'STARTUP_RECONCILED' ORDER BY id")


def _by_hand(client, security_id: str, side: str, qty: int, cid: str) -> None:
    client.place_order(OrderRequest(security_id=security_id, exchange_segment="NSE_FNO",
                                    transaction_type=side, quantity=qty, order_type="MARKET",
                                    product_type="MARGIN", correlation_id=cid))


@pytest.mark.usefixtures("_stop_all")
def test_reconciliation_out_of_band_orders_pending_confirmed_and_orphan_alerted(
        make_sim, db_url: str) -> None:
    source = EngineTimeMarket(seed=7)
    sim: SimServer = make_sim(market=SnapshotMarket(source.snapshot))
    env = live_env(sim)
    tap = MessageTap()
    h = Harness(db_url, env=env, tap=tap)
    source.clock = h.engine.clock
    assert "positions" in h.engine.services
    # the alert-only path (adoption: tests/execution/test_recon_heal_sim.py)
    h.engine.settings.set("RECON_ADOPT_ORPHANS", "false", updated_by="test")
    h.start()
    try:
        h.run_until(10, 7)
        trades = h.query("SELECT tag, mode, payload FROM open_trades")
        assert [t["mode"] for t in trades] == ["live"], "seed 7 opens a live CAL_ARB trade at 10:06"
        tag, legs = trades[0]["tag"], trades[0]["payload"]["legs"]
        assert _audit(h) == [], "books and broker agree around the engine's own entry"
        assert sim.sim.requests("GET", "/v2/positions"), \
            "the monitor asked the broker for positions"

        # from now on a check every monitor cycle (15 s) instead of every 4th
        h.engine.settings.set("RECON_EVERY_CYCLES", "1", updated_by="test")
        # by hand, outside the engine: one more lot on the first leg, and an unrelated option
        leg = legs[0]
        lot = int(sim.sim.exchange.row(leg["security_id"]).lot_size)
        extra = lot if leg["side"] == "BUY" else -lot
        held = {x["security_id"] for x in legs}
        option = next(r for r in sim.sim.market.instruments()
                      if r.option_type and str(r.security_id) not in held
                      and sim.sim.market.quote(str(r.security_id)) is not None)
        orphan_sid, orphan_lot = str(option.security_id), int(option.lot_size)
        # the account's current token: issuing a new one (as sim_client does, even when given
        # a token) would revoke the engine's
        client = DhanClient(sim.sim.account.client_id, api_base=sim.api_base, auth_base=sim.url,
                            access_token=sim.sim.account.current_token, timeout=2.0,
                            limiter=RateLimiter())
        _by_hand(client, leg["security_id"], leg["side"], lot, "byhand-1")
        _by_hand(client, orphan_sid, "BUY", orphan_lot, "byhand-2")
        expected_leg = leg["quantity"] * (1 if leg["side"] == "BUY" else -1)

        def net() -> dict[str, int]:
            return {p.security_id: p.net_qty for p in client.positions()}

        eventually(lambda: net().get(orphan_sid) == orphan_lot
                   and net().get(leg["security_id"]) == expected_leg + extra, timeout=5)

        _run_to(h, 10, 7, 15)  # one monitor cycle: the first check
        assert [(r["action"], r["security_id"]) for r in _audit(h)] == [
            ("PENDING_QTY_MISMATCH", leg["security_id"])], "the orphan waits for a 2nd sighting"
        assert not [e for e in tap.entries() if e.type.endswith("AlertRaised")], \
            "a pending mismatch is not alerted"
        _run_to(h, 10, 7, 30)  # the second check
        rows = _audit(h)
        assert [(r["action"], r["security_id"]) for r in rows] == [
            ("PENDING_QTY_MISMATCH", leg["security_id"]),
            ("CONFIRMED_QTY_MISMATCH", leg["security_id"]),
            ("ORPHAN_ALERT", orphan_sid)]
        confirmed, orphan = rows[1], rows[2]
        assert confirmed["trade_tag"] == tag
        assert confirmed["details"] == {"security_id": leg["security_id"],
                                        "product": "MARGIN", "expected": expected_leg,
                                        "broker": expected_leg + extra, "trade_tags": [tag],
                                        "checks": 2}
        assert orphan["trade_tag"] is None
        assert orphan["details"]["broker"] == orphan_lot and orphan["details"]["expected"] == 0

        _run_to(h, 10, 8, 30)  # four more checks: unchanged findings are not written again
        assert len(_audit(h)) == 3
        alerts = [e.fields["text"] for e in tap.entries()
                  if e.type.endswith("AlertRaised") and e.fields["source"] == "reconciliation"]
        assert len(alerts) == 2, alerts
        assert any("confirmed quantity mismatch" in a and leg["security_id"] in a for a in alerts)
        assert any(orphan_sid in a and "not adopted" in a for a in alerts)
        assert [t["tag"] for t in h.query("SELECT tag FROM open_trades")] == [tag], \
            "alert-only: the books are left alone"

        with pytest.raises(psycopg.Error), h.pool.connection() as conn:
            conn.execute("UPDATE reconciliation_audit SET action = 'ORPHAN_ADOPTION'")
        with pytest.raises(psycopg.Error), h.pool.connection() as conn:
            conn.execute("DELETE FROM reconciliation_audit")
        assert len(_audit(h)) == 3
        assert h.escalations == []
    finally:
        h.stop()


class FlakyPositions:
    """A ``positions`` service whose first answers are broker errors."""

    def __init__(self, failures: int, answer: dict[str, int]) -> None:
        self.failures, self.answer, self.calls = failures, answer, 0

    def __call__(self) -> dict[str, int]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("broker unreachable")
        return dict(self.answer)


@pytest.mark.usefixtures("_stop_all")
def test_reconciliation_broker_errors_skipped_then_orphan_alerted_once(db_url: str) -> None:
    tap = MessageTap()
    h = Harness(db_url, tap=tap)  # paper engine: no live trade, so anything held is an orphan
    positions = FlakyPositions(3, {"99999": -75, "88888": 0})
    h.engine.services["positions"] = positions
    h.start()
    try:
        # until the start-up check has passed it runs every cycle: three broker errors
        # (skipped, nothing written), then two good checks see the orphan twice
        _run_to(h, 9, 18, 0)
        assert positions.calls >= 5
        assert [r["details"]["agreed"] for r in _startup_rows(h)] == [False]
        rows = _audit(h)
        assert [(r["action"], r["security_id"], r["trade_tag"]) for r in rows] == [
            ("ORPHAN_ALERT", "99999", None)]
        assert rows[0]["details"] == {"security_id": "99999", "product": "MARGIN",
                                      "expected": 0, "broker": -75, "trade_tags": [],
                                      "checks": 2}
        _run_to(h, 9, 22, 0)
        assert len(_audit(h)) == 1
        alerts = [e.fields["text"] for e in tap.entries() if e.type.endswith("AlertRaised")]
        assert len([a for a in alerts if "99999" in a]) == 1, alerts  # one alert per event
        assert h.escalations == []
        assert not [e for e in tap.entries() if e.type.endswith("ChildFailed")], \
            "broker errors never crash the monitor"
    finally:
        h.stop()
