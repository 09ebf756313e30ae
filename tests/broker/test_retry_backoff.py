"""DHAN_RETRY_BACKOFF_SEC: the first wait before a retried Dhan call, for every client the
engine builds (a bad value is refused by name, never silently replaced)."""

from __future__ import annotations

import pytest

from engine.broker.dhan.config import DhanConfig
from engine.broker.dhan.wiring import _LazyPgStore, _Session
from engine.config import ConfigError


def _session() -> _Session:
    return _Session(DhanConfig(client_id="1000000001", access_token="t"),
                    _LazyPgStore(lambda: None))


def test_retry_backoff_defaults_to_half_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DHAN_RETRY_BACKOFF_SEC", raising=False)
    assert _session().client().transport.retry_backoff == 0.5


def test_retry_backoff_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DHAN_RETRY_BACKOFF_SEC", "0.2")
    assert _session().client().transport.retry_backoff == 0.2
    assert _session().client(retry_backoff=1.0).transport.retry_backoff == 1.0  # explicit wins


@pytest.mark.parametrize("raw, why", [("soon", "expected a number"), ("0", "between"),
                                      ("60", "between")])
def test_retry_backoff_bad_value_is_named(monkeypatch: pytest.MonkeyPatch, raw: str,
                                          why: str) -> None:
    monkeypatch.setenv("DHAN_RETRY_BACKOFF_SEC", raw)
    with pytest.raises(ConfigError, match=f"DHAN_RETRY_BACKOFF_SEC.*{why}"):
        _session().client()
