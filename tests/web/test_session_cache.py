"""A worker trusts a session it found live for WEB_SESSION_CACHE_S without asking the
database again, and /api/health's database read may be WEB_HEALTH_CACHE_S old; ending a
session (logout, ``auth logout-all``) is seen at once by every worker through the
engine_events NOTIFY, and a session deleted without one stops working when the window ends."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.web.conftest import login


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _cookie_client(app, cookie: str):
    client = app.test_client()
    client.set_cookie("nifty_session", cookie)
    return client


def _session_cookie(client) -> str:
    return client.get_cookie("nifty_session").value


def test_cached_session_answers_without_the_database_then_expires(make_app, pool):
    app = make_app(SESSION_CACHE_S=0.5)
    client = app.test_client()
    login(app, client)
    assert client.get("/api/positions").status_code == 200
    with pool.connection() as conn:  # gone without a notification (a restore, a manual DELETE)
        conn.execute("DELETE FROM web_sessions")
    assert client.get("/api/positions").status_code == 200   # trusted for the window
    assert _wait_for(lambda: client.get("/api/positions").status_code == 401, timeout=3)


def test_no_cache_asks_every_time(make_app, pool):
    app = make_app(SESSION_CACHE_S=0)
    client = app.test_client()
    login(app, client)
    assert client.get("/api/positions").status_code == 200
    with pool.connection() as conn:
        conn.execute("DELETE FROM web_sessions")
    assert client.get("/api/positions").status_code == 401


def test_logout_in_one_worker_ends_the_session_in_another_at_once(make_app):
    # two workers with their LISTEN bridges, the cache window far longer than the test
    first = make_app(SESSION_CACHE_S=10, START_BRIDGE=True)
    second = make_app(SESSION_CACHE_S=10, START_BRIDGE=True)
    client = first.test_client()
    csrf = login(first, client)
    other = _cookie_client(second, _session_cookie(client))
    assert other.get("/api/positions").status_code == 200   # now cached in the second worker
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert _wait_for(lambda: other.get("/api/positions").status_code == 401, timeout=3)


def test_logout_all_command_reaches_every_worker(make_app, db_url):
    app = make_app(SESSION_CACHE_S=10, START_BRIDGE=True)
    client = app.test_client()
    login(app, client)
    assert client.get("/api/positions").status_code == 200
    out = subprocess.run([sys.executable, "-m", "engine", "auth", "logout-all"],
                         env={**_env(), "DATABASE_URL": db_url}, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "ended 1 session(s)" in out.stdout
    assert _wait_for(lambda: client.get("/api/positions").status_code == 401, timeout=3)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def test_health_read_is_at_most_the_window_old(make_app, pool):
    app = make_app(HEALTH_CACHE_S=0.5)
    client = app.test_client()
    assert client.get("/api/health").json["entries_paused"] is False
    with pool.connection() as conn:
        conn.execute("UPDATE risk_envelope_state SET pause_reason = 'manual: test' WHERE id = 1")
    assert client.get("/api/health").json["entries_paused"] is False   # within the window
    assert _wait_for(lambda: client.get("/api/health").json["entries_paused"] is True,
                     timeout=3)


@pytest.mark.parametrize("raw", ["-1", "11", "soon"])
def test_bad_cache_setting_is_refused_by_name(monkeypatch, raw):
    from web.appconfig import build_config

    monkeypatch.setenv("WEB_SESSION_CACHE_S", raw)
    with pytest.raises(ValueError, match="WEB_SESSION_CACHE_S"):
        build_config({"DATABASE_URL": "postgresql://unused", "SECRET_KEY": "k" * 40})
