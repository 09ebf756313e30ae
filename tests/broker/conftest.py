"""Fixtures: a real Dhan simulator on 127.0.0.1 (port 0) and clients talking HTTP to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.ratelimit import RateLimiter
from engine.dhan_sim import SimServer
from tests.conftest import eventually as wait_for  # noqa: F401 - used by the broker tests


@pytest.fixture
def make_client() -> Callable[..., DhanClient]:
    """Client factory bound to a simulator; each client gets its own fresh limiter."""

    def make(server: SimServer, token: str | None = None, **kwargs: Any) -> DhanClient:
        if token is None and "token_provider" not in kwargs:
            token = server.sim.issue_token()
        if "token_provider" not in kwargs:
            kwargs["access_token"] = token
        kwargs.setdefault("timeout", 2.0)
        kwargs.setdefault("limiter", RateLimiter())
        kwargs.setdefault("retry_backoff", 0.05)
        kwargs.setdefault("lookup_grace", 0.5)
        return DhanClient(server.sim.account.client_id, api_base=server.api_base,
                          auth_base=server.url, **kwargs)

    return make


@pytest.fixture
def client(sim: SimServer, make_client: Callable[..., DhanClient]) -> DhanClient:
    return make_client(sim)


def atm_option(server: SimServer, side: str = "CE") -> tuple[str, int]:
    """(security id, lot size) of the ATM option of the nearest expiry in the simulator."""
    market = server.sim.market
    expiry = market.expiries()[0]
    chain = market.option_chain(expiry)
    strike = min(chain, key=lambda k: abs(k - market.spot()))
    sid = chain[strike][side].security_id
    return str(sid), server.sim.exchange.row(str(sid)).lot_size


def order(security_id: str, qty: int, cid: str, **kw: Any):
    """A MARKET INTRADAY NSE_FNO order request (fields overridable)."""
    from engine.broker.dhan.models import OrderRequest

    fields: dict[str, Any] = {"security_id": security_id, "exchange_segment": "NSE_FNO",
                              "transaction_type": "BUY", "quantity": qty,
                              "order_type": "MARKET", "product_type": "INTRADAY",
                              "correlation_id": cid}
    fields.update(kw)
    return OrderRequest(**fields)
