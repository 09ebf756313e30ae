"""Token helpers and TokenManager against the simulator; secrets never in logs or errors."""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta

import psycopg
import pyotp
import pytest

from engine.broker.dhan.errors import AuthenticationError, DhanError, TokenRevokedError
from engine.broker.dhan.token import (
    CachedTokenProvider,
    MemoryTokenStore,
    PgTokenStore,
    StoredToken,
    TokenConfig,
    TokenManager,
    TokenState,
    decode_jwt_claims,
    jwt_expiry,
    mint,
)
from engine.timeutil import IST, now_ist
from tests.broker.conftest import atm_option, order, wait_for

PIN = "918273"


def _jwt(claims: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'HS512', 'typ': 'JWT'})}.{enc(claims)}.c2lnbmF0dXJl"


def test_token_jwt_exp_decoded_without_verification():
    token = _jwt({"exp": 1790000000, "iat": 1789913600, "dhanClientId": "1"})
    assert jwt_expiry(token) == datetime.fromtimestamp(1790000000, IST)
    assert decode_jwt_claims(token)["dhanClientId"] == "1"
    with pytest.raises(ValueError, match="not a JWT") as info:
        jwt_expiry("abc.def")
    assert "abc.def" not in str(info.value)
    with pytest.raises(ValueError, match="exp"):
        jwt_expiry(_jwt({"iat": 1}))


def test_token_simulator_issues_24h_hs512_jwt(sim):
    token = sim.sim.issue_token()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = decode_jwt_claims(token)
    assert header == {"typ": "JWT", "alg": "HS512"}
    assert claims["exp"] - claims["iat"] == 86400 and claims["iss"] == "dhan"


def _manager(server, make_client, store, **cfg):
    def factory(token):
        return make_client(server, token or "unused", max_rate_wait=5)

    config = TokenConfig(client_id=server.sim.account.client_id, **cfg)
    return TokenManager(factory, store, now_ist, config)


def test_token_manager_still_valid_then_renews_ahead_of_expiry_old_token_dies(sim, make_client):
    initial = sim.sim.issue_token()
    store = MemoryTokenStore()
    mgr = _manager(sim, make_client, store, initial_token=initial)
    first = mgr.check()
    assert first.action == "still_valid" and store.load().state.source == "env"
    later = now_ist() + timedelta(hours=23, minutes=30)
    result = mgr.check(later)
    assert result.action == "renewed" and result.changed
    new = store.load()
    assert new.access_token != initial and new.state.source == "renew"
    assert new.state.expires_at == jwt_expiry(new.access_token)
    with pytest.raises(TokenRevokedError):
        make_client(sim, initial).profile()
    assert make_client(sim, new.access_token).profile()["dhanClientId"]


def test_token_manager_renew_fails_falls_back_to_totp_mint(make_sim, make_client):
    sim = make_sim(pin=PIN)
    store = MemoryTokenStore()
    mgr = _manager(sim, make_client, store, initial_token=sim.sim.issue_token(), pin=PIN,
                   totp_secret=sim.sim.account.totp_secret)
    sim.sim.faults.add("status", path="/v2/RenewToken", status=500)
    result = mgr.check(now_ist() + timedelta(hours=23, minutes=30))
    assert result.action == "minted" and store.load().state.source == "totp"
    assert make_client(sim, store.load().access_token).positions() == []


def test_token_manager_expired_token_mints_and_throttles_second_mint(make_sim, make_client):
    sim = make_sim(pin=PIN)
    store = MemoryTokenStore()
    mgr = _manager(sim, make_client, store, pin=PIN, totp_secret=sim.sim.account.totp_secret)
    assert mgr.check().action == "minted"
    again = mgr.check(force=True)  # renew works: the token is still live
    assert again.action == "renewed"
    sim.sim.faults.add("status", path="/v2/RenewToken", status=500)
    blocked = mgr.check(force=True)
    assert blocked.action == "blocked" and "throttled" in blocked.reason


def test_token_manager_without_credentials_is_blocked(sim, make_client):
    mgr = _manager(sim, make_client, MemoryTokenStore())
    result = mgr.check()
    assert result.action == "blocked" and "DHAN_PIN" in result.reason


def test_token_manager_wrong_totp_blocked_with_reason(make_sim, make_client):
    sim = make_sim(pin=PIN)
    mgr = _manager(sim, make_client, MemoryTokenStore(), pin=PIN,
                   totp_secret=pyotp.random_base32())
    result = mgr.check()
    assert result.action == "blocked" and "Invalid TOTP" in result.reason


def test_token_pg_store_roundtrip_and_notify_without_token(pool, db_url):
    store = PgTokenStore(pool)
    assert store.load() is None
    token = _jwt({"exp": 1790000000})
    now = now_ist()
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "dhan_token"')
        store.save(StoredToken(access_token=token, state=TokenState(
            expires_at=jwt_expiry(token), source="totp", updated_at=now), last_mint_at=now))
        note = next(listener.notifies(timeout=5, stop_after=1))
    assert token not in note.payload
    assert json.loads(note.payload)["source"] == "totp"
    loaded = store.load()
    assert loaded.access_token == token and loaded.state.expires_at == jwt_expiry(token)
    assert loaded.last_mint_at == now
    with pool.connection() as conn:
        value = conn.execute("SELECT value FROM runtime_state WHERE key = 'dhan_token'"
                             ).fetchone()["value"]
    assert value["access_token"] == token and set(value) >= {"expires_at", "source",
                                                              "updated_at"}
    provider = CachedTokenProvider(store)
    assert provider() == token


def test_token_never_in_logs_or_exception_strings(make_sim, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    sim = make_sim(pin=PIN)
    secret = sim.sim.account.totp_secret
    store = MemoryTokenStore()
    seen_tokens: list[str] = []
    mgr = _manager(sim, make_client, store, pin=PIN, totp_secret=secret)
    assert mgr.check().action == "minted"
    seen_tokens.append(store.load().access_token)
    assert mgr.check(force=True).action == "renewed"
    seen_tokens.append(store.load().access_token)
    client = make_client(sim, seen_tokens[-1])
    sid, lot = atm_option(sim)
    client.place_order(order(sid, lot, "log-1"))
    wait_for(lambda: client.order_list()[0].status == "TRADED")
    messages: list[str] = []
    for bad in (seen_tokens[0], sim.sim.issue_token(ttl=-5)):
        with pytest.raises(AuthenticationError) as info:
            make_client(sim, bad).profile()
        messages.append(str(info.value))
        seen_tokens.append(bad)
    with pytest.raises(DhanError) as info:
        mint(sim.sim.account.client_id, "000000", secret, auth_base=sim.url)
    messages.append(str(info.value))
    messages += [r.getMessage() for r in caplog.records]
    assert any("generateAccessToken" in m for m in messages)  # urllib3 DEBUG lines captured
    codes = {pyotp.TOTP(secret).at(now_ist() + timedelta(seconds=d)) for d in (-60, -30, 0, 30)}
    for text in messages:
        for token in seen_tokens:
            assert token not in text
            assert token.split(".")[2] not in text
        assert PIN not in text and secret not in text
        assert not any(f"totp={c}" in text for c in codes)
    assert "access_token" not in repr(store.load())
