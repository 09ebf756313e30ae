"""Simulator specifics: admin API over HTTP, TOTP mint, CLI entry point, market adapter."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path

import pyotp
import pytest
import requests

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.config import DhanConfig
from engine.broker.dhan.errors import MintError, TransientError
from engine.broker.dhan.ratelimit import RateLimiter
from engine.dhan_sim import SnapshotMarket
from engine.timeutil import IST
from tests.broker.conftest import wait_for


def test_simulator_admin_api_faults_and_token(sim, make_client):
    resp = requests.post(f"{sim.url}/__admin/faults", timeout=5,
                         json={"kind": "status", "path": "/v2/fundlimit", "status": 503,
                               "count": 5})
    assert resp.status_code == 200 and resp.json()["faults"][0]["status"] == 503
    token = requests.post(f"{sim.url}/__admin/token", json={}, timeout=5).json()["accessToken"]
    client = make_client(sim, token, get_retries=0)
    with pytest.raises(TransientError):
        client.fund_limits()
    assert requests.delete(f"{sim.url}/__admin/faults", timeout=5).json() == {"faults": []}
    assert client.fund_limits().available_balance == Decimal("1000000.0")
    assert requests.post(f"{sim.url}/__admin/spot", json={"spot": 24100}, timeout=5).ok
    assert client.ltp({"IDX_I": [13]})["IDX_I"]["13"] == Decimal("24100.0")
    assert requests.post(f"{sim.url}/__admin/faults", json={"kind": "nope"}, timeout=5
                         ).status_code == 400


def test_simulator_totp_mint_success_bad_pin_and_throttle(make_sim, make_client):
    sim = make_sim(pin="4321", mint_throttle=120.0)
    client = make_client(sim)
    secret = sim.sim.account.totp_secret
    with pytest.raises(MintError, match="PIN"):
        client.generate_access_token("9999", pyotp.TOTP(secret).now())
    grant = client.generate_access_token("4321", pyotp.TOTP(secret).now())
    assert grant.expiry_time is not None and grant.access_token.count(".") == 2
    assert make_client(sim, grant.access_token).profile()
    with pytest.raises(MintError, match="recently"):
        client.generate_access_token("4321", pyotp.TOTP(secret).now())


def test_simulator_cli_writes_env_and_serves(tmp_path):
    env_file = tmp_path / "sim.env"
    argv = [sys.executable, "-m", "engine.dhan_sim", "--port", "0", "--env-file", str(env_file)]
    proc = subprocess.Popen(argv, cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: env_file.exists() and "DHAN_INSTRUMENTS_URL" in env_file.read_text(),
                 timeout=20)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert oct(os.stat(env_file).st_mode & 0o777) == "0o600"
        config = DhanConfig.from_env(env)
        minter = DhanClient.from_config(config, limiter=RateLimiter())
        grant = minter.generate_access_token(config.pin, pyotp.TOTP(config.totp_secret).now())
        client = DhanClient.from_config(config, access_token=grant.access_token,
                                        limiter=RateLimiter())
        assert client.positions() == []
    finally:
        proc.terminate()
        proc.wait(10)


def test_simulator_config_from_env_defaults_and_errors():
    config = DhanConfig.from_env({"DHAN_CLIENT_ID": "1100"})
    assert config.api_base == "https://api.dhan.co/v2" and config.timeout_sec == 10.0
    assert not config.can_mint
    with pytest.raises(ValueError, match="DHAN_CLIENT_ID"):
        DhanConfig.from_env({})
    with pytest.raises(ValueError, match="DHAN_TIMEOUT_SEC"):
        DhanConfig.from_env({"DHAN_CLIENT_ID": "1", "DHAN_TIMEOUT_SEC": "soon"})
    assert "secret" not in repr(DhanConfig(client_id="1", totp_secret="secret", pin="1"))


def test_simulator_over_simulated_market_snapshot(make_sim, make_client):
    simulator = pytest.importorskip("engine.market.simulator")
    day = datetime(2026, 1, 6, tzinfo=IST).date()
    sm = simulator.SimulatedMarket(seed=7, start=datetime.combine(day, time(10, 0), tzinfo=IST))
    market = SnapshotMarket.over_simulated(sm)
    sim = make_sim(market=market)
    client = make_client(sim)
    snap = sm.snapshot_at(sm.now)
    expiry = client.expiry_list()[0]
    chain = client.option_chain(expiry)
    assert chain.last_price == Decimal(str(snap.spot))
    row = snap.chain(expiry).quote_at(10, "CE")
    got = chain.strikes[Decimal(str(row.strike)).normalize() + 0]["CE"]
    assert got.security_id == str(row.security_id) and got.ask == Decimal(str(row.ask))
