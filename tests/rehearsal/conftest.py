"""Fixtures: a real Dhan simulator on loopback and a client talking HTTP to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.ratelimit import RateLimiter
from engine.dhan_sim import SimServer, build_server
from engine.execution.paper import NoQuote, Quote


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimServer]]:
    """Factory of started simulators with deep pockets (stopped at teardown)."""
    servers: list[SimServer] = []

    def make(**options: Any) -> SimServer:
        options.setdefault("mint_throttle", 0.0)
        server = build_server("127.0.0.1", 0, **options).start()
        server.sim.account.sod_limit = 1e10  # a long future blocks its whole notional here
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimServer]) -> SimServer:
    return make_sim()


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
