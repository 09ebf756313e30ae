"""DHAN_RETRY_BACKOFF_SEC: the first wait before a retried Dhan call, part of the Dhan
configuration every client is built from (a bad value is refused by name, never silently
replaced)."""

from __future__ import annotations

import pytest

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.config import DhanConfig
from engine.broker.dhan.wiring import dhan_config
from engine.config import ConfigError, load

LIVE = {"BROKER": "dhan", "DHAN_CLIENT_ID": "1000000001"}


def _backoff(env: dict[str, str]) -> float:
    return DhanClient.from_config(dhan_config(load(env))).transport.retry_backoff


def test_retry_backoff_defaults_to_half_a_second() -> None:
    assert _backoff(LIVE) == 0.5
    assert DhanConfig.from_env(LIVE).retry_backoff_sec == 0.5


def test_retry_backoff_from_the_environment() -> None:
    assert _backoff({**LIVE, "DHAN_RETRY_BACKOFF_SEC": "0.2"}) == 0.2
    assert DhanConfig.from_env({**LIVE, "DHAN_RETRY_BACKOFF_SEC": "0.2"}).retry_backoff_sec == 0.2
    cfg = dhan_config(load({**LIVE, "DHAN_RETRY_BACKOFF_SEC": "0.2"}))
    assert DhanClient.from_config(cfg, retry_backoff=1.0).transport.retry_backoff == 1.0


@pytest.mark.parametrize("raw, why", [("soon", "expected a number"), ("0", "between"),
                                      ("60", "between")])
def test_retry_backoff_bad_value_is_named(raw: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"DHAN_RETRY_BACKOFF_SEC.*{why}"):
        load({**LIVE, "DHAN_RETRY_BACKOFF_SEC": raw})
    with pytest.raises(ValueError, match="DHAN_RETRY_BACKOFF_SEC"):
        DhanConfig.from_env({**LIVE, "DHAN_RETRY_BACKOFF_SEC": "soon"})
