"""An expired Dhan token with no way to refresh it: entries blocked, an alert, monitoring goes on."""

from __future__ import annotations

import logging
from datetime import datetime, time

import pykka
import pytest

from engine.app import build
from engine.clock import ManualClock
from engine.config import load
from engine.messages.commands import TokenCheckTick
from engine.store.pool import close_pool
from engine.timeutil import IST
from tests.conftest import eventually


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def test_expired_token_without_pin_blocks_entries_and_alerts(make_sim, db_url, pool, caplog) -> None:
    sim = make_sim(client_id="1000000777")
    dead = sim.sim.issue_token(ttl=-60)  # already expired
    cfg = load({"DATABASE_URL": db_url, "MARKET_SOURCE": "sim", "BROKER": "dhan",
                "DHAN_CLIENT_ID": sim.sim.account.client_id, "DHAN_ACCESS_TOKEN": dead,
                "DHAN_API_BASE": sim.api_base, "DHAN_AUTH_BASE": sim.url,
                "DHAN_INSTRUMENTS_URL": sim.instruments_url})
    clock = ManualClock(datetime.combine(datetime(2025, 2, 3).date(), time(10, 0), tzinfo=IST))
    engine = build(cfg, pool, clock=clock, listen_settings=False, bridge_events=False)
    caplog.set_level(logging.INFO, logger="engine.chat")
    engine.start(with_bus=False)
    try:
        engine.directory.get("token").tell(TokenCheckTick(ts=clock.now(), at=clock.now()))
        engine.scheduler.settle()
        def pause_reason():
            with pool.connection() as conn:
                return conn.execute("SELECT pause_reason FROM risk_envelope_state").fetchone()[
                    "pause_reason"]

        assert "Dhan token" in eventually(pause_reason)
        alerts = [r.getMessage() for r in caplog.records if r.name == "engine.chat"]
        assert any("token refresh FAILED" in a for a in alerts), alerts
        assert any("RISK PAUSED" in a for a in alerts), alerts
        assert all(dead not in r.getMessage() for r in caplog.records)
        assert engine.directory.get("monitor").is_alive()  # positions keep being watched
    finally:
        engine.stop()
        close_pool()
