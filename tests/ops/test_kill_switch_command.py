"""The operator's kill switch: the ``kill_switch`` engine command (dashboard button, chat
/killswitch, ``python -m engine`` bus) pauses entries and arms Dhan's kill switch once the
account is flat; the paper engine refuses it with the reason. Against the Dhan simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pykka
import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.errors import OrderError
from engine.broker.dhan.ratelimit import RateLimiter
from engine.bus.commands import CommandError, CommandRow
from engine.bus.dispatch import Dispatcher
from engine.dhan_sim import SimServer, SnapshotMarket
from engine.messages.tap import MessageTap
from engine.store.notify import Listener
from engine.timeutil import IST
from tests.broker.conftest import atm_option, order
from tests.conftest import eventually
from tests.engine.harness import Harness
from tests.rehearsal.conftest import live_env
from tests.rehearsal.test_rehearsal import EngineTimeMarket


@pytest.fixture
def _stop_all() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


@pytest.fixture
def make_sim(make_sim):
    return lambda **options: make_sim(deep_pockets=True, **options)


def _kill_switch(h: Harness, n: int, **payload) -> dict:
    row = CommandRow(id=n, kind="kill_switch", payload={"reason": "news", **payload},
                     requested_by="ravi", created_at=datetime.now(IST), claimed_by="test")
    return Dispatcher(h.engine).dispatch(row)


def _alerts(tap: MessageTap) -> list[str]:
    return [e.fields["text"] for e in tap.entries() if e.type.endswith("AlertRaised")]


def _paused(h: Harness) -> str | None:
    return h.query("SELECT pause_reason FROM risk_envelope_state WHERE id = 1")[0]["pause_reason"]


@pytest.mark.usefixtures("_stop_all")
def test_operator_kill_switch_waits_for_flat_then_activates(make_sim, db_url: str) -> None:
    source = EngineTimeMarket(seed=7)
    sim: SimServer = make_sim(market=SnapshotMarket(source.snapshot))
    tap = MessageTap()
    h = Harness(db_url, env=live_env(sim), tap=tap, strategies=())
    source.clock = h.engine.clock
    client = DhanClient(sim.sim.account.client_id, api_base=sim.api_base, auth_base=sim.url,
                        access_token=sim.sim.account.current_token, timeout=2.0,
                        limiter=RateLimiter())
    h.start()
    try:
        with pytest.raises(CommandError, match="confirm"):
            _kill_switch(h, 1)
        # a position opened by hand: Dhan refuses the switch until the account is flat
        sid, lot = atm_option(sim)
        client.place_order(order(sid, lot, "by-hand-1"))
        eventually(lambda: any(p.net_qty for p in client.positions()), timeout=5)

        result = _kill_switch(h, 2, confirm=True)
        assert result["sent"] == "PauseEntries" and "arming" in result["kill_switch"]
        eventually(lambda: any("NOT activated" in a for a in _alerts(tap)), timeout=10)
        waiting = next(a for a in _alerts(tap) if "NOT activated" in a)
        assert "requested by ravi: news" in waiting and f"{sid} net {lot}" in waiting
        assert client.kill_switch_status() is False
        eventually(lambda: "kill switch requested by ravi" in (_paused(h) or ""),
                   timeout=5)

        client.place_order(order(sid, lot, "by-hand-2", transaction_type="SELL"))
        eventually(lambda: not any(p.net_qty for p in client.positions()), timeout=5)
        outcome = h.engine.services["live_ops"].backstops.poll()  # the daily checks' next round
        assert outcome is not None and outcome.activated
        assert client.kill_switch_status() is True
        assert any("KILL SWITCH ACTIVATED" in a for a in _alerts(tap))
        with pytest.raises(OrderError, match="Kill Switch is active"):
            client.place_order(order(sid, lot, "by-hand-3"))
    finally:
        h.stop()


@pytest.mark.usefixtures("_stop_all")
def test_operator_kill_switch_on_a_flat_account_is_activated_and_told(make_sim,
                                                                     db_url: str) -> None:
    source = EngineTimeMarket(seed=7)
    sim: SimServer = make_sim(market=SnapshotMarket(source.snapshot))
    tap = MessageTap()
    h = Harness(db_url, env=live_env(sim), tap=tap, strategies=())
    source.clock = h.engine.clock
    web_events: list[dict] = []  # what the dashboard's live feed receives
    listener = Listener(db_url, ["engine_events"], lambda _c, p: web_events.append(p)).start()
    h.start()
    try:
        _kill_switch(h, 1, confirm=True)
        eventually(lambda: any("KILL SWITCH ACTIVATED" in a for a in _alerts(tap)), timeout=10)
        assert sim.sim.account.kill_switch is True
        assert len(sim.sim.requests("POST", "/v2/killswitch")) == 1
        alert = eventually(lambda: next((e for e in web_events if e["kind"] == "alert"
                                         and "KILL SWITCH" in e["data"]["text"]), None))
        assert alert["data"]["source"] == "live_ops"
    finally:
        listener.stop()
        h.stop()


@pytest.mark.usefixtures("_stop_all")
def test_paper_engine_refuses_the_kill_switch_with_the_reason(db_url: str) -> None:
    h = Harness(db_url, strategies=())
    h.start()
    try:
        with pytest.raises(CommandError, match="BROKER=paper") as err:
            _kill_switch(h, 1, confirm=True)
        assert "pause" in str(err.value)
        assert _paused(h) is None, "nothing half-done: entries were not paused either"
    finally:
        h.stop()
