"""A live engine on the Dhan simulator, for the money-path fault tests.

The simulator quotes the engine's own simulated market (at engine time), the engine runs
with ``BROKER=dhan`` against it (``live_env``), CAL_ARB in stage live. Import the fixtures
``stop_all`` and ``fast_live_broker`` into a test module to use them there.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pykka
import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.ratelimit import RateLimiter
from engine.dhan_sim import SimServer, SnapshotMarket
from engine.messages.tap import MessageTap
from engine.settings import all_knobs
from tests.engine.harness import SESSION, Harness
from tests.rehearsal.conftest import live_env
from tests.rehearsal.test_rehearsal import EngineTimeMarket

#: CAL_ARB's own entries and exits switched off: the trade a test opens stays the test's
HANDS_OFF = ("CAL_ARB_ENABLED", "CAL_ARB_MAX_HOLD_MINUTES", "CAL_ARB_PROFIT_TARGET_PCT",
             "CAL_ARB_STOP_LOSS_PCT")


@pytest.fixture
def stop_all() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


@pytest.fixture
def fast_live_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production logic, test time scale: the wiring reads these from the environment."""
    monkeypatch.setenv("DHAN_FILL_TIMEOUT_SEC", "1")
    monkeypatch.setenv("DHAN_LOOKUP_GRACE_SEC", "0.3")
    monkeypatch.setenv("DHAN_RESOLVE_WINDOW_SEC", "0")


class LiveSim:
    """One simulator and its environment; ``engine()`` builds (and rebuilds, for a restart)
    an engine on the same database and simulator."""

    def __init__(self, make_sim, db_url: str) -> None:
        self.source = EngineTimeMarket(seed=7)
        self.sim: SimServer = make_sim(deep_pockets=True,
                                       market=SnapshotMarket(self.source.snapshot))
        self.env = live_env(self.sim, DHAN_TIMEOUT_SEC="1", DHAN_RETRY_BACKOFF_SEC="0.05")
        self.db_url = db_url

    def engine(self, *, tap: MessageTap | None = None, start: datetime = SESSION,
               hands_off: bool = False) -> Harness:
        """A new engine (a restart keeps the environment: a new token would revoke the one
        the first engine stored). ``hands_off``: reconciliation every monitor cycle and no
        CAL_ARB decision or exit rule that could touch the test's trade."""
        h = Harness(self.db_url, env=self.env, tap=tap, start=start)
        self.source.clock = h.engine.clock
        if hands_off:
            knobs = {k.key: k for k in all_knobs()}
            h.engine.settings.set("RECON_EVERY_CYCLES", "1", updated_by="test")
            for key in HANDS_OFF:
                k = knobs.get(key)
                if k is not None:
                    h.engine.settings.set(key, "false" if k.type is bool else str(k.maximum),
                                          updated_by="test")
        return h

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """The simulator's admin API (square-offs, settlements, faults)."""
        req = urllib.request.Request(  # noqa: S310 (the simulator on loopback)
            f"{self.sim.url}/__admin/{path}", method="POST" if body is not None else "GET",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            return json.loads(resp.read())

    def client(self) -> DhanClient:
        """A Dhan client of the same account (the operator's own terminal)."""
        acct = self.sim.sim.account
        return DhanClient(acct.client_id, api_base=self.sim.api_base, auth_base=self.sim.url,
                          access_token=acct.current_token, timeout=2.0, limiter=RateLimiter())


def net(sim: SimServer) -> dict[str, int]:
    """The simulator's net position per security (non-zero only)."""
    out: dict[str, int] = {}
    for (_, sid, _), pos in sim.sim.exchange.positions.items():
        out[sid] = out.get(sid, 0) + pos.net
    return {sid: n for sid, n in out.items() if n}


def alerts(tap: MessageTap, needle: str) -> list[str]:
    """The texts of the alerts raised that contain ``needle``."""
    return [e.fields["text"] for e in tap.entries()
            if e.type.endswith("AlertRaised") and needle in e.fields["text"]]


def engine_orders(sim: SimServer) -> list[Any]:
    """Orders the engine (not the operator, not the test) placed at the simulator."""
    return [o for o in sim.sim.exchange.orders.values() if o.placed_by == "client"]
