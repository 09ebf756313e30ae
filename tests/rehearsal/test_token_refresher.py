"""``python -m engine token-refresher`` against the Dhan simulator, and token following."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.broker.dhan.token import PgTokenStore, StoredToken, TokenState
from engine.broker.dhan.wiring import token_services
from engine.commands import token_refresher
from engine.config import load
from engine.dhan_sim import SimServer
from engine.timeutil import now_ist
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


def _sim_env(sim: SimServer, db_url: str) -> dict[str, str]:
    acct = sim.sim.account
    return {"DATABASE_URL": db_url, "DHAN_CLIENT_ID": acct.client_id, "DHAN_PIN": acct.pin,
            "DHAN_TOTP_SECRET": acct.totp_secret, "DHAN_API_BASE": sim.api_base,
            "DHAN_AUTH_BASE": sim.url, "DHAN_TIMEOUT_SEC": "5"}


def _stored(pool) -> dict:
    with pool.connection() as conn:
        row = conn.execute("SELECT value FROM runtime_state WHERE key = 'dhan_token'").fetchone()
    assert row is not None, "runtime_state 'dhan_token' was not written"
    return row["value"]


def test_token_refresher_once_mints_and_never_logs_token(
        sim: SimServer, db_url: str, pool, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    for key, value in _sim_env(sim, db_url).items():
        monkeypatch.setenv(key, value)
    caplog.set_level(logging.DEBUG)
    code = token_refresher.run(argparse.Namespace(once=True, interval_sec=300),
                               install_signals=False)

    assert code == 0
    value = _stored(pool)
    assert value["source"] == "totp"
    expires = datetime.fromisoformat(value["expires_at"])
    assert timedelta(hours=23) < expires - now_ist() <= timedelta(hours=24, minutes=1)
    token = value["access_token"]
    assert token == sim.sim.account.current_token
    assert "token check: minted" in caplog.text
    assert token not in caplog.text
    assert all(token not in str(r.args) for r in caplog.records)


def test_token_refresher_cli_once_output_has_no_secrets(
        sim: SimServer, db_url: str, pool, tmp_path: Path) -> None:
    env = {**os.environ, **_sim_env(sim, db_url), "LOG_LEVEL": "debug",
           "LOG_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "engine", "token-refresher", "--once"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    output = proc.stdout + proc.stderr + (tmp_path / "token-refresher.log").read_text()
    assert proc.returncode == 0, output
    token = _stored(pool)["access_token"]
    assert "token check: minted" in output
    assert token not in output
    assert f"pin={sim.sim.account.pin}" not in output


def test_token_refresher_paper_mode_once_exits_zero(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("DHAN_CLIENT_ID", raising=False)
    caplog.set_level(logging.INFO)
    code = token_refresher.run(argparse.Namespace(once=True, interval_sec=300),
                               install_signals=False)

    assert code == 0
    assert "nothing to refresh" in caplog.text


def test_follow_only_services_track_the_stored_token_via_notify(
        sim: SimServer, db_url: str, pool) -> None:
    cfg = load({**_sim_env(sim, db_url), "TOKEN_REFRESHER_EXTERNAL": "true"})
    services = token_services(cfg, pool, follow_only=True)
    provider, follower = services["dhan_token_provider"], services["dhan_token_follower"]
    assert services["token_manager"].check(force=True).action == "blocked"
    first = sim.sim.issue_token()
    PgTokenStore(pool).save(StoredToken(access_token=first, state=TokenState(
        expires_at=now_ist() + timedelta(hours=24), source="renew", updated_at=now_ist())))
    follower.start()
    try:
        assert provider() == first
        second = sim.sim.issue_token()  # the refresher renews: the first token dies
        PgTokenStore(pool).save(StoredToken(access_token=second, state=TokenState(
            expires_at=now_ist() + timedelta(hours=24), source="renew", updated_at=now_ist())))
        eventually(lambda: follower.notifications >= 1)
        assert provider() == second, "NOTIFY must drop the 5 s cache at once"
        check = services["token_manager"].check()
        assert check.action == "still_valid" and check.source == "renew"
    finally:
        follower.stop()


def test_revoked_token_reported_by_client_is_refreshed_and_followed(
        sim: SimServer, db_url: str, pool) -> None:
    from engine.actors.base import ActorContext
    from engine.actors.directory import Directory
    from engine.actors.supervisor import ChildSpec, Supervisor
    from engine.actors.token import TokenActor
    from engine.broker.dhan.client import DhanClient
    from engine.broker.dhan.errors import AuthenticationError
    from engine.broker.dhan.ratelimit import RateLimiter
    from engine.clock import RealClock
    from engine.messages.base import RandomIds
    from engine.messages.commands import Ping, TokenCheckTick

    env_token = sim.sim.issue_token()
    cfg = load({**_sim_env(sim, db_url), "DHAN_ACCESS_TOKEN": env_token})
    services = token_services(cfg, pool, follow_only=False)
    hook, provider = services["dhan_auth_hook"], services["dhan_token_provider"]
    hook.quiet_after_change_s = 0.0
    client = DhanClient(sim.sim.account.client_id, token_provider=provider, on_auth_error=hook,
                        api_base=sim.api_base, auth_base=sim.url, timeout=2.0,
                        limiter=RateLimiter(), get_retries=0)
    clock, ids, directory = RealClock(), RandomIds(), Directory()
    ctx = ActorContext(clock=clock, directory=directory, ids=ids,
                       services={"pool": pool, **services})
    escalations: list[int] = []
    sup = Supervisor.start([ChildSpec.for_actor("token", TokenActor, ctx)], directory=directory,
                           clock=clock, ids=ids, exit_process=escalations.append)
    try:
        sup.ask(Ping(), timeout=10)
        now = clock.now()
        check = directory.require("token").ask(
            TokenCheckTick(message_id="t1", ts=now, at=now), timeout=10)
        assert check.action == "still_valid" and _stored(pool)["source"] == "env"
        assert client.profile()["dhanClientId"] == sim.sim.account.client_id
        sim.sim.issue_token()  # a mint elsewhere revokes the stored token
        with pytest.raises(AuthenticationError):
            client.profile()
        eventually(lambda: _stored(pool)["source"] == "totp", timeout=10)
        assert hook.forwarded == 1
        eventually(lambda: provider() == sim.sim.account.current_token)
        assert client.profile()["dhanClientId"] == sim.sim.account.client_id
        assert escalations == []
    finally:
        sup.stop(timeout=10)
