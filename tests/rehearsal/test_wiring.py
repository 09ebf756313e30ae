"""engine.app.build with MARKET_SOURCE=dhan and BROKER=dhan against the Dhan simulator."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from engine.app import build
from engine.broker.dhan.live_broker import DhanLiveBroker
from engine.broker.dhan.snapshot_source import DhanMarketData
from engine.broker.dhan.wiring import FollowOnlyTokenManager, WallClockTokenManager
from engine.clock import ManualClock
from engine.config import load
from engine.dhan_sim import SimServer
from engine.store.pool import close_pool
from engine.timeutil import IST


@pytest.mark.parametrize("external", [False, True])
def test_build_with_dhan_market_and_broker_wires_everything(
        make_sim, db_url: str, pool, external: bool) -> None:
    # a client id of its own: the process-wide rate limiter (3 s per option chain) is per id
    sim: SimServer = make_sim(client_id=f"100000010{int(external)}")
    acct = sim.sim.account
    cfg = load({"DATABASE_URL": db_url, "MARKET_SOURCE": "dhan", "BROKER": "dhan",
                "DHAN_CLIENT_ID": acct.client_id, "DHAN_ACCESS_TOKEN": sim.sim.issue_token(),
                "DHAN_API_BASE": sim.api_base, "DHAN_AUTH_BASE": sim.url,
                "DHAN_INSTRUMENTS_URL": sim.instruments_url,
                "TOKEN_REFRESHER_EXTERNAL": str(external).lower()})
    clock = ManualClock(datetime.combine(sim.sim.market.today(), time(10, 0), tzinfo=IST))
    engine = build(cfg, pool, clock=clock, listen_settings=False)
    try:
        services = engine.services
        assert isinstance(engine.market, DhanMarketData)
        assert isinstance(services["live_broker"], DhanLiveBroker)
        manager = services["token_manager"]
        assert isinstance(manager, FollowOnlyTokenManager if external else WallClockTokenManager)
        snap = engine.market.snapshot()
        assert snap.near_future is not None and snap.far_future is not None
        assert len(snap.chains) == 2
        quote = services["live_broker"].quote(str(snap.near_future.security_id))
        assert quote.bid < quote.ask
        expected = "blocked" if external else "still_valid"  # nothing stored / seeded from env
        assert manager.check().action == expected
    finally:
        engine.settings.close()
        close_pool()
