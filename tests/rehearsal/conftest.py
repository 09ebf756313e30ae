"""Fixtures: a real Dhan simulator on loopback and a client talking HTTP to it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.ratelimit import RateLimiter
from engine.dhan_sim import SimServer
from engine.execution.paper import NoQuote, Quote


@pytest.fixture
def make_sim(make_sim: Callable[..., SimServer]) -> Callable[..., SimServer]:
    """Simulators with deep pockets: a long future blocks its whole notional here."""
    return lambda **options: make_sim(deep_pockets=True, **options)


def sim_client(server: SimServer, **kwargs: Any) -> DhanClient:
    """A client of ``server`` with its own limiter and short timeouts."""
    if "access_token" not in kwargs:
        kwargs["access_token"] = server.sim.issue_token()
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("limiter", RateLimiter())
    kwargs.setdefault("retry_backoff", 0.05)
    kwargs.setdefault("lookup_grace", 0.5)
    return DhanClient(server.sim.account.client_id, api_base=server.api_base,
                      auth_base=server.url, **kwargs)


def sim_quotes(server: SimServer) -> Callable[[str], Quote]:
    """Quotes straight from the simulator's market (what its matching engine fills at)."""

    def quote(security_id: str) -> Quote:
        q = server.sim.market.quote(security_id)
        if q is None:
            raise NoQuote(f"simulator does not know {security_id}")
        return Quote(Decimal(str(q.bid)), Decimal(str(q.ask)), Decimal(str(q.ltp)))

    return quote


def live_env(server: SimServer, **extra: str) -> dict[str, str]:
    """Engine environment for BROKER=dhan against ``server`` with CAL_ARB in stage 'live'
    (paper market data, so the simulator must quote the engine's market)."""
    return {"BROKER": "dhan", "MARKET_SOURCE": "sim", "CAL_ARB_DRY_RUN": "false",
            "DHAN_CLIENT_ID": server.sim.account.client_id,
            "DHAN_ACCESS_TOKEN": server.sim.issue_token(), "DHAN_API_BASE": server.api_base,
            "DHAN_AUTH_BASE": server.url, "DHAN_INSTRUMENTS_URL": server.instruments_url,
            **extra}
