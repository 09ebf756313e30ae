"""Login by one-time code, sessions, CSRF, lock-out, nginx check, chat codes."""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import timedelta

import pyotp
import requests

import web
from tests.web.conftest import SECRET_KEY, LiveServer, login
from web.appconfig import persistent_secret_key
from web.authn import TOTP_STATE_KEY, AuthPolicy


def _outbox_code(pool) -> str:
    with pool.connection() as conn:
        text = conn.execute("SELECT text FROM chat_outbox ORDER BY id DESC LIMIT 1").fetchone()["text"]
    return re.search(r"\b(\d{6})\b", text).group(1)


def test_login_totp_valid_sets_strict_httponly_session(app, totp_secret):
    client = app.test_client()
    r = client.post("/api/auth/login", json={"code": pyotp.TOTP(totp_secret).now()})
    assert r.status_code == 200, r.json
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert r.json["csrf_token"]
    session = client.get("/api/auth/session").json
    assert session["authenticated"] is True and session["csrf_token"] == r.json["csrf_token"]
    assert client.get("/api/positions").status_code == 200


def test_login_secure_cookie_when_configured_secure_flag(make_app, totp_secret):
    app = make_app(SESSION_COOKIE_SECURE=True)
    r = app.test_client().post("/api/auth/login", json={"code": pyotp.TOTP(totp_secret).now()})
    assert r.status_code == 200 and "Secure" in r.headers["Set-Cookie"]


def test_login_wrong_code_401_and_no_session(app, totp_secret):
    client = app.test_client()
    good = pyotp.TOTP(totp_secret).now()
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    r = client.post("/api/auth/login", json={"code": wrong})
    assert r.status_code == 401 and "wrong" in r.json["error"]
    assert client.get("/api/positions").status_code == 401


def test_login_malformed_code_400_names_code(app):
    client = app.test_client()
    for body in ({"code": "12ab56"}, {"code": 123456}, {}, {"code": "123456", "x": 1}):
        r = client.post("/api/auth/login", json=body)
        assert r.status_code == 400, body
        assert r.json["field"] in ("code", "x")
    r = client.post("/api/auth/login", data="code=123456")
    assert r.status_code == 400 and r.json["field"] == "body"


def test_login_totp_code_reused_refused(app, totp_secret):
    code = pyotp.TOTP(totp_secret).now()
    assert app.test_client().post("/api/auth/login", json={"code": code}).status_code == 200
    assert app.test_client().post("/api/auth/login", json={"code": code}).status_code == 401


def test_lockout_after_repeated_wrong_codes_429_persisted_across_apps(make_app, totp_secret):
    policy = AuthPolicy(ip_threshold=3, lock_base_s=60)
    app = make_app(AUTH_POLICY=policy)
    client = app.test_client()
    good = pyotp.TOTP(totp_secret).now()
    wrong = f"{(int(good) + 7) % 1_000_000:06d}"
    statuses = [client.post("/api/auth/login", json={"code": wrong}).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    r = client.post("/api/auth/login", json={"code": good})  # even the right code waits
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    other_worker = make_app(AUTH_POLICY=policy).test_client()
    assert other_worker.post("/api/auth/login", json={"code": good}).status_code == 429
    other_ip = app.test_client()
    r = other_ip.post("/api/auth/login", json={"code": good},
                      environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert r.status_code == 200


def test_lockout_back_off_doubles_with_each_failure(make_app, pool, totp_secret):
    app = make_app(AUTH_POLICY=AuthPolicy(ip_threshold=2, lock_base_s=10))
    client = app.test_client()
    wrong = f"{(int(pyotp.TOTP(totp_secret).now()) + 3) % 1_000_000:06d}"
    waits = []
    for _ in range(3):
        with pool.connection() as conn:
            conn.execute("UPDATE web_auth_throttle SET locked_until = NULL")
        client.post("/api/auth/login", json={"code": wrong})
        waits.append(web.services_of(app).auth.retry_after("127.0.0.1"))
    assert waits[0] == 0 and 8 < waits[1] <= 10 and 18 < waits[2] <= 20


def test_global_lockout_applies_to_every_ip(make_app, totp_secret):
    app = make_app(AUTH_POLICY=AuthPolicy(ip_threshold=100, global_threshold=4, lock_base_s=60))
    wrong = f"{(int(pyotp.TOTP(totp_secret).now()) + 5) % 1_000_000:06d}"
    for i in range(4):
        app.test_client().post("/api/auth/login", json={"code": wrong},
                               environ_base={"REMOTE_ADDR": f"10.1.0.{i}"})
    r = app.test_client().post("/api/auth/login", json={"code": "000000"},
                               environ_base={"REMOTE_ADDR": "10.2.0.1"})
    assert r.status_code == 429


def test_csrf_missing_or_wrong_header_403_right_header_202(app):
    client = app.test_client()
    csrf = login(app, client)
    body = {"reason": "manual"}
    assert client.post("/api/risk/pause", json=body).status_code == 403
    r = client.post("/api/risk/pause", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json["error"]
    assert client.post("/api/risk/pause", json=body,
                       headers={"X-CSRF-Token": csrf}).status_code == 202
    other = app.test_client()
    login(app, other)
    assert other.post("/api/risk/pause", json=body,
                      headers={"X-CSRF-Token": csrf}).status_code == 403


def test_session_expired_401(make_app, pool):
    app = make_app(SESSION_CACHE_S=0)  # expired behind the app's back, by SQL
    client = app.test_client()
    login(app, client)
    assert client.get("/api/positions").status_code == 200
    with pool.connection() as conn:
        conn.execute("UPDATE web_sessions SET expires_at = now() - interval '1 second'")
    assert client.get("/api/positions").status_code == 401
    assert client.get("/api/auth/session").json["authenticated"] is False


def test_session_idle_too_long_401(app, pool):
    client = app.test_client()
    login(app, client)
    with pool.connection() as conn:
        conn.execute("UPDATE web_sessions SET last_seen = now() - interval '5 hours'")
    assert client.get("/api/positions").status_code == 401


def test_logout_deletes_server_side_session(app, pool):
    client = app.test_client()
    csrf = login(app, client)
    cookie = client.get_cookie("nifty_session").value
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM web_sessions").fetchone()["n"] == 0
    replay = app.test_client()
    replay.set_cookie("nifty_session", cookie)
    assert replay.get("/api/positions").status_code == 401


def test_forged_cookie_401(app):
    client = app.test_client()
    client.set_cookie("nifty_session", "forged.value")
    assert client.get("/api/positions").status_code == 401


def test_nginx_check_200_with_session_401_without(app):
    client = app.test_client()
    assert client.get("/api/auth/nginx-check").status_code == 401
    login(app, client)
    assert client.get("/api/auth/nginx-check").status_code == 200


def test_chat_code_sent_to_outbox_hashed_and_single_use(app, pool):
    client = app.test_client()
    r = client.post("/api/auth/request-code", json={})
    assert r.status_code == 202 and r.json["channels"] == ["telegram"]
    code = _outbox_code(pool)
    with pool.connection() as conn:
        row = conn.execute("SELECT * FROM web_login_codes").fetchone()
    assert code not in (row["code_hash"], row["salt"]) and len(row["code_hash"]) == 64
    assert client.post("/api/auth/login", json={"code": code}).status_code == 200
    again = app.test_client().post("/api/auth/login", json={"code": code})
    assert again.status_code == 401


def test_chat_code_expired_refused(app, pool):
    client = app.test_client()
    client.post("/api/auth/request-code", json={})
    code = _outbox_code(pool)
    with pool.connection() as conn:
        conn.execute("UPDATE web_login_codes SET expires_at = now() - interval '1 second'")
    assert client.post("/api/auth/login", json={"code": code}).status_code == 401


def test_chat_code_valid_five_minutes(app, pool):
    app.test_client().post("/api/auth/request-code", json={})
    with pool.connection() as conn:
        row = conn.execute("SELECT expires_at - created_at AS ttl FROM web_login_codes").fetchone()
    assert row["ttl"] == timedelta(minutes=5)


def test_request_code_without_chat_channel_409(make_app):
    app = make_app(CHAT_CHANNELS=())
    r = app.test_client().post("/api/auth/request-code", json={})
    assert r.status_code == 409 and "chat channel" in r.json["error"]


def test_request_code_twice_quickly_429(app):
    client = app.test_client()
    assert client.post("/api/auth/request-code", json={}).status_code == 202
    assert client.post("/api/auth/request-code", json={}).status_code == 429


def test_request_code_needs_json_body_400(app):
    r = app.test_client().post("/api/auth/request-code", data="x")
    assert r.status_code == 400 and r.json["field"] == "body"


def test_pages_redirect_to_login_without_session(app):
    client = app.test_client()
    r = client.get("/trades")
    assert r.status_code == 302 and "/login?next=/trades" in r.headers["Location"]
    assert client.get("/login").status_code == 200
    assert client.get("/docs/openapi.json").status_code == 401


def test_persistent_secret_key_created_once_private(tmp_path):
    first = persistent_secret_key(tmp_path)
    assert persistent_secret_key(tmp_path) == first and len(first) >= 32
    assert os.stat(tmp_path / "dashboard_secret_key").st_mode & 0o777 == 0o600
    assert first != SECRET_KEY


# ---------------------------------------------------------------- TOTP: single use across windows
def _steady_step() -> int:
    """The current 30-second step, waiting out the last 2 s of one so a test's codes are
    checked within the step they were made for."""
    if 30 - time.time() % 30 < 2:
        time.sleep(30 - time.time() % 30 + 0.05)
    return int(time.time() // 30)


def _code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * 30)


def _last_step(pool) -> int | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT value FROM runtime_state WHERE key = %s",
                           (TOTP_STATE_KEY,)).fetchone()
    return None if row is None else int(row["value"]["step"])


def test_totp_earlier_window_refused_after_later_window_used(make_app, pool, totp_secret):
    app = make_app()
    step = _steady_step()
    later, earlier = _code_at(totp_secret, step + 1), _code_at(totp_secret, step)
    assert later != earlier
    assert app.test_client().post("/api/auth/login", json={"code": later}).status_code == 200
    r = app.test_client().post("/api/auth/login", json={"code": earlier})
    assert r.status_code == 401 and "already used" in r.json["error"]
    previous = _code_at(totp_secret, step - 1)
    assert app.test_client().post("/api/auth/login", json={"code": previous}).status_code == 401
    assert _last_step(pool) == step + 1


def test_totp_later_window_still_accepted_after_earlier_one(app, pool, totp_secret):
    step = _steady_step()
    assert app.test_client().post("/api/auth/login",
                                  json={"code": _code_at(totp_secret, step)}).status_code == 200
    assert app.test_client().post("/api/auth/login",
                                  json={"code": _code_at(totp_secret, step + 1)}).status_code == 200
    assert _last_step(pool) == step + 1  # remembered in runtime_state


def test_totp_used_step_refused_by_other_worker_and_after_restart(make_app, pool, totp_secret):
    step = _steady_step()
    first_worker = make_app()
    code = _code_at(totp_secret, step)
    assert first_worker.test_client().post("/api/auth/login", json={"code": code}).status_code == 200
    second_worker = make_app()  # its own Authenticator: nothing shared but the database
    assert second_worker.test_client().post("/api/auth/login", json={"code": code}).status_code == 401
    web.shutdown(first_worker)
    restarted = make_app()
    older = _code_at(totp_secret, step - 1)
    assert restarted.test_client().post("/api/auth/login", json={"code": older}).status_code == 401
    assert restarted.test_client().post("/api/auth/login", json={"code": code}).status_code == 401


def test_totp_concurrent_same_code_on_two_workers_exactly_one_session(make_app, pool, db_url,
                                                                       totp_secret):
    policy = AuthPolicy(ip_threshold=1000, global_threshold=1000)
    # two "gunicorn workers": separate apps, each with its own connection pool, real HTTP
    servers = [LiveServer(make_app(POOL=None, DATABASE_URL=db_url, AUTH_POLICY=policy))
               for _ in range(2)]
    try:
        step = _steady_step()
        code = _code_at(totp_secret, step)
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def submit(url: str) -> None:
            barrier.wait(5)
            r = requests.post(url + "/api/auth/login", json={"code": code}, timeout=20)
            statuses.append(r.status_code)

        threads = [threading.Thread(target=submit, args=(servers[i % 2].url,))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for server in servers:
            server.stop()
    assert sorted(statuses) == [200] + [401] * 7
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM web_sessions").fetchone()["n"] == 1
    assert _last_step(pool) == step
