"""Rehearsal: the whole engine (real actors, real PostgreSQL) with BROKER=dhan against the Dhan
simulator, on the simulated market; CAL_ARB is in stage 'live', so its entry goes out as orders."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pykka
import pytest

from engine.broker.dhan.live_broker import DhanLiveBroker
from engine.dhan_sim import SimServer, SnapshotMarket
from engine.dhan_sim.engine_time import EngineTimeMarket as _EngineTimeMarket
from engine.messages.commands import GetStatus
from tests.engine.harness import SESSION, Harness
from tests.rehearsal.conftest import live_env


@pytest.fixture
def _stop_all() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def EngineTimeMarket(seed: int) -> _EngineTimeMarket:
    """The engine's simulated market (same seed) at the engine clock (set ``.clock``), for the
    simulator: it quotes and fills exactly what the paper market data shows."""
    return _EngineTimeMarket(seed, SESSION)


@pytest.mark.usefixtures("_stop_all")
def test_rehearsal_live_dc_entry_sends_exactly_the_recorded_orders(
        make_sim, db_url: str) -> None:
    source = EngineTimeMarket(seed=7)
    sim: SimServer = make_sim(market=SnapshotMarket(source.snapshot))
    env = live_env(sim)
    h = Harness(db_url, env=env)
    source.clock = h.engine.clock
    assert isinstance(h.engine.services["live_broker"], DhanLiveBroker)
    h.start()
    try:
        stage = h.query("SELECT stage FROM go_live_state WHERE strategy = 'CAL_ARB'")[0]["stage"]
        assert stage == "live"
        h.run_until(10, 10)
        opened = h.query("SELECT tag FROM executions WHERE action = 'OPEN' AND mode = 'live'")
        assert opened, "CAL_ARB should open a live trade by 10:10 (seed 7 opens at 10:06)"
        open_now = h.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
        assert {r["tag"] for r in opened} <= set(open_now) | {
            r["tag"] for r in h.query("SELECT tag FROM closed_trades")}

        recorded = {(r["order_id"], r["correlation_id"], r["security_id"], r["side"],
                     r["quantity"], r["price"].quantize(Decimal("0.01")))
                    for r in h.query("SELECT * FROM executions")}
        sent = {(o.order_id, o.body["correlationId"], str(o.body["securityId"]),
                 o.body["transactionType"], int(o.body["quantity"]),
                 Decimal(str(o.avg_price)).quantize(Decimal("0.01")))
                for o in sim.sim.exchange.orders.values()}
        assert len(recorded) >= 2 and {r["mode"] for r in h.query(
            "SELECT mode FROM executions")} == {"live"}
        assert sent == recorded, "the simulator got exactly the orders the executor recorded"
        assert all(o.status == "TRADED" for o in sim.sim.exchange.orders.values())
        token = h.query("SELECT value FROM runtime_state WHERE key = 'dhan_token'")[0]["value"]
        assert token["source"] == "env", "the token check seeded the store from DHAN_ACCESS_TOKEN"
        assert h.escalations == []
    finally:
        h.stop()
