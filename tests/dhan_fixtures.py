"""Dhan simulator fixtures shared by tests/broker and tests/rehearsal (imported by their
conftest modules): real simulators on loopback, stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.dhan_sim import SimServer, build_server


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimServer]]:
    """Factory of started simulators. ``deep_pockets=True`` lifts the account's funds limit
    (for structures larger than the default 10 lakh start-of-day limit)."""
    servers: list[SimServer] = []

    def make(*, deep_pockets: bool = False, **options: Any) -> SimServer:
        options.setdefault("mint_throttle", 0.0)
        server = build_server("127.0.0.1", 0, **options).start()
        if deep_pockets:
            server.sim.account.sod_limit = 1e10
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimServer]) -> SimServer:
    return make_sim()
