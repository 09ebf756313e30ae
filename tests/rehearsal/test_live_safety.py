"""Live-money safety of the executor: a live trade is never closed on paper, and an exit whose
fills could not be booked (or that was in flight at a restart) is never sent a second time."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pykka
import pytest

from engine.dhan_sim import SimServer, SnapshotMarket
from engine.messages.commands import ClosePosition, GetStatus
from tests.conftest import eventually
from tests.engine.harness import Harness
from tests.rehearsal.conftest import live_env
from tests.rehearsal.test_rehearsal import EngineTimeMarket


@pytest.fixture(autouse=True)
def _stop_all() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _open_live_trade(make_sim, db_url: str) -> tuple[Harness, SimServer, str, dict[str, str]]:
    source = EngineTimeMarket(seed=7)
    sim: SimServer = make_sim(market=SnapshotMarket(source.snapshot))
    env = live_env(sim)
    h = Harness(db_url, env=env)
    source.clock = h.engine.clock
    h.start()
    # seed 7 opens CAL_ARB at 10:06; the monitor would close it by 10:10, so stop right after 10:06
    h.run_until(10, 6)
    tags = h.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
    assert tags, "seed 7 opens a live CAL_ARB trade at 10:06"
    return h, sim, tags[0], env


def _restart(h: Harness, db_url: str, env: dict[str, str] | None = None) -> Harness:
    """Stop the engine and start a new one on the same database at the same simulated time."""
    now = h.engine.clock.now()
    h.stop()
    pykka.ActorRegistry.stop_all(timeout=10)
    return Harness(db_url, start=now, env=env)


def _close(h: Harness, tag: str, reason: str) -> None:
    now = h.engine.clock.now()
    h.engine.directory.get("executor").tell(ClosePosition(ts=now, tag=tag, reason=reason))
    h.engine.scheduler.settle()


def _hold(h: Harness, tag: str) -> str | None:
    rows = h.query("SELECT payload->>'hold' AS hold FROM open_trades WHERE tag = %s", tag)
    return rows[0]["hold"] if rows else None


def test_exit_filled_but_not_booked_is_held_never_resent_and_booked_later(
        make_sim, db_url: str) -> None:
    h, sim, tag, _env = _open_live_trade(make_sim, db_url)
    try:
        orders_before = len(sim.sim.exchange.orders)
        with h.pool.connection() as conn:  # the database refuses the close after the fills
            conn.execute("CREATE FUNCTION fail_close() RETURNS trigger LANGUAGE plpgsql AS"
                         " $$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$")
            conn.execute("CREATE TRIGGER fail_close BEFORE INSERT ON closed_trades"
                         " FOR EACH ROW EXECUTE FUNCTION fail_close()")
        _close(h, tag, "profit target (test)")
        exits = len(sim.sim.exchange.orders) - orders_before
        assert exits == 2, "both exit legs went to the broker once"
        assert "not recorded" in eventually(lambda: _hold(h, tag))
        pause = h.query("SELECT pause_reason FROM risk_envelope_state")[0]["pause_reason"]
        assert pause and tag in pause
        with h.pool.connection() as conn:
            conn.execute("DROP TRIGGER fail_close ON closed_trades")
        _close(h, tag, "stop loss (test)")  # an automatic close again: refused while on hold
        h.run_until(10, 20)                 # and the monitor's exits are refused too
        assert len(sim.sim.exchange.orders) - orders_before == 2, "no second exit was sent"
        # once the database takes it again, the close is booked from order_intents: at the
        # prices of the two exit orders the broker filled, once
        eventually(lambda: h.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] == 1,
                   timeout=10)
        assert h.query("SELECT count(*) AS n FROM open_trades")[0]["n"] == 0
        exits = list(sim.sim.exchange.orders.values())[orders_before:]
        booked = {(r["order_id"], r["price"].quantize(Decimal("0.01"))) for r in h.query(
            "SELECT order_id, price FROM executions WHERE action = 'CLOSE'")}
        assert booked == {(o.order_id, Decimal(str(o.avg_price)).quantize(Decimal("0.01")))
                          for o in exits}
        assert len(sim.sim.exchange.orders) - orders_before == 2
    finally:
        h.stop()


def test_close_in_flight_at_restart_is_held(make_sim, db_url: str) -> None:
    h, sim, tag, env = _open_live_trade(make_sim, db_url)
    again = _restart(h, db_url, env)
    with psycopg.connect(db_url) as conn:  # as if the engine died with the exit orders out
        conn.execute("UPDATE open_trades SET payload = jsonb_set(payload, '{closing}', to_jsonb(%s::text))"
                     " WHERE tag = %s", (again.engine.clock.now().isoformat(), tag))
    again.start()
    try:
        assert "in flight" in eventually(lambda: _hold(again, tag))
        pause = again.query("SELECT pause_reason FROM risk_envelope_state")[0]["pause_reason"]
        assert pause and tag in pause, "entries are paused while a trade is on hold"
        before = len(sim.sim.exchange.orders)
        _close(again, tag, "time exit (test)")
        assert len(sim.sim.exchange.orders) == before
        _close(again, tag, "manual close by ops")  # the operator has checked the broker
        assert len(sim.sim.exchange.orders) == before + 2
        assert again.query("SELECT exit_reason FROM closed_trades")[0]["exit_reason"] == \
            "manual close by ops"
    finally:
        again.stop()


def test_live_trade_is_never_closed_on_paper(make_sim, db_url: str) -> None:
    h, _sim, tag, _env = _open_live_trade(make_sim, db_url)
    paper = _restart(h, db_url)  # restarted with BROKER=paper by mistake
    paper.start()
    try:
        _close(paper, tag, "profit target (test)")
        assert "no live broker" in eventually(lambda: _hold(paper, tag))
        assert paper.query("SELECT count(*) AS n FROM executions WHERE action = 'CLOSE'")[0]["n"] == 0
        assert tag in paper.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
    finally:
        paper.stop()
