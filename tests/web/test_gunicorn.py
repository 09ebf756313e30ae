"""The real deployment shape: ``python -m engine web`` (gunicorn gthread, no preload)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from engine.bus import publish_event
from engine.commands.web import gunicorn_argv
from tests.conftest import eventually
from tests.web.wsclient import DashboardSocket
from web.authn import Authenticator, AuthPolicy

ROOT = Path(__file__).resolve().parents[2]
SECRET = "gunicorn-test-secret-" + "z" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(db_url, tmp_path):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "WEB_PORT": str(port), "WEB_WORKERS": "1",
           "WEB_THREADS": "8", "DASHBOARD_SECRET_KEY": SECRET, "LOG_DIR": str(tmp_path),
           "ENGINE_VAR_DIR": str(tmp_path), "LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "web"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(base + "/api/health", timeout=3).status_code == 200
        except requests.RequestException:  # refused, reset or slow while a worker boots
            assert proc.poll() is None, f"gunicorn exited with code {proc.returncode}"
            return False

    try:
        eventually(up, timeout=60, interval=0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)


def test_gunicorn_serves_health_and_live_ws_events(gunicorn, pool, db_url):
    port = gunicorn
    assert requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()["database"] == "ok"
    auth = Authenticator(pool, SECRET, AuthPolicy())
    cookie = f"nifty_session={auth.cookie_value(auth.open_session('127.0.0.1'))}"
    r = requests.get(f"http://127.0.0.1:{port}/api/positions", headers={"Cookie": cookie},
                     timeout=5)
    assert r.status_code == 200
    ws = DashboardSocket.connect(f"ws://127.0.0.1:{port}/ws", headers={"Cookie": cookie})
    try:
        assert json.loads(ws.receive(timeout=5))["kind"] == "hello"
        started = time.monotonic()
        publish_event(pool, "position_opened", {"tag": "G1"})
        event = json.loads(ws.receive(timeout=2))
        assert event["kind"] == "position_opened" and time.monotonic() - started < 1.0
    finally:
        ws.close()


def test_web_command_builds_gunicorn_with_conf(monkeypatch, db_url):
    import argparse

    argv, env = gunicorn_argv(argparse.Namespace(host="10.9.8.7", port=9001, workers=3,
                                                 threads=50))
    assert argv[1:3] == ["-m", "gunicorn"] and argv[-1] == "web:create_app()"
    assert argv[argv.index("-c") + 1].endswith("web/gunicorn.conf.py")
    assert (env["WEB_HOST"], env["WEB_PORT"], env["WEB_WORKERS"], env["WEB_THREADS"]) == (
        "10.9.8.7", "9001", "3", "50")


def test_auth_setup_prints_secret_uri_and_qr(capsys):
    from engine.cli import main

    assert main(["auth", "setup"]) == 0
    out = capsys.readouterr().out
    secret = out.split("DASHBOARD_TOTP_SECRET=")[1].split()[0]
    assert len(secret) >= 32 and "otpauth://totp/" in out and "█" in out
    assert ".env" in out




def _http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (status, headers, body by Content-Length) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_gunicorn_refuses_a_20_mb_body_before_it_is_sent(gunicorn, pool):
    """A logged-in PUT announcing 20 MB gets 413 JSON at once: the server answers after the
    headers and a few bytes, without waiting for (or reading) the other 20 MB."""
    auth = Authenticator(pool, SECRET, AuthPolicy())
    token = auth.open_session("127.0.0.1")
    size = 20 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=5) as sock:
        sock.sendall((f"PUT /api/settings/DC_LOTS HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {size}\r\n"
                      f"Cookie: nifty_session={auth.cookie_value(token)}\r\n"
                      f"X-CSRF-Token: {auth.csrf_token(token)}\r\n\r\n").encode())
        sock.sendall(b'{"value": "' + b"1" * 1000)  # the rest never comes
        started = time.monotonic()
        status, headers, body = _http_response(sock)  # a timeout here: it waited for the body
    assert time.monotonic() - started < 3
    assert status == 413 and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["field"] == "body"
    assert f"{size} bytes is too large" in answer["error"] and "1048576" in answer["error"]
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM settings_audit").fetchone()["n"] == 0
