"""/ws: authenticated clients get engine events fast; others are refused; slow ones dropped."""

from __future__ import annotations

import base64
import json
import os
import socket
import time

import pytest
import simple_websocket

import web
from engine.bus import publish_event
from engine.config import ConfigError, load
from tests.conftest import eventually
from tests.web.conftest import LiveServer
from tests.web.wsclient import DashboardSocket


def _connect(server, cookie: str | None, **extra: str):
    headers = {"Cookie": cookie} if cookie else {}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return DashboardSocket.connect(f"ws://127.0.0.1:{server.port}/ws", headers=headers)


def _receive_kind(ws, kind: str, timeout: float = 1.0) -> dict:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        raw = ws.receive(timeout=left)
        if raw is None:
            break
        event = json.loads(raw)
        if event["kind"] == kind:
            return event
    raise AssertionError(f"no {kind} event within {timeout}s")


def test_ws_authenticated_client_receives_event_within_a_second(live_server, pool):
    ws = _connect(live_server, live_server.session_cookie())
    try:
        assert json.loads(ws.receive(timeout=2))["kind"] == "hello"
        started = time.monotonic()
        publish_event(pool, "mtm", {"tag": "T1", "mtm": "1234.50"})
        event = _receive_kind(ws, "mtm", timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert event["data"] == {"tag": "T1", "mtm": "1234.50"}
    finally:
        ws.close()


def test_ws_unauthenticated_refused_before_upgrade(live_server):
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        _connect(live_server, None)
    assert refused.value.status_code == 401
    with pytest.raises(simple_websocket.ConnectionError):
        _connect(live_server, "nifty_session=forged")
    assert web.services_of(live_server.app).hub.stats()["clients"] == 0


def _stalled_socket(port: int, cookie: str) -> socket.socket:
    """A real WebSocket client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n").encode())
    assert b" 101 " in sock.recv(1024).split(b"\r\n", 1)[0] + b" "
    return sock


def test_ws_stalled_client_dropped_without_delaying_others(live_server, pool):
    hub = web.services_of(live_server.app).hub
    stalled = _stalled_socket(live_server.port, live_server.session_cookie())
    good = _connect(live_server, live_server.session_cookie())
    try:
        assert json.loads(good.receive(timeout=2))["kind"] == "hello"
        eventually(lambda: hub.stats()["clients"] == 2)
        blob = "x" * 60_000
        for batch in range(200):  # until the stalled socket's buffers fill and it is dropped
            for i in range(6):
                hub.publish(json.dumps({"kind": "bulk", "data": {"n": batch * 6 + i, "b": blob}}))
            last = None
            deadline = time.monotonic() + 1.0
            while last != batch * 6 + 5:
                raw = good.receive(timeout=max(0.01, deadline - time.monotonic()))
                assert raw is not None, "the good client was delayed"
                last = json.loads(raw)["data"]["n"]
            if hub.stats()["dropped"]:
                break
        assert hub.stats()["dropped"] == 1
        started = time.monotonic()
        publish_event(pool, "mtm", {"tag": "T9", "mtm": "1"})
        assert _receive_kind(good, "mtm")["data"]["tag"] == "T9"
        assert time.monotonic() - started < 1.0
        eventually(lambda: hub.stats()["clients"] == 1)
    finally:
        good.close()
        stalled.close()


# ---------------------------------------------------------------- Origin of the handshake
@pytest.fixture
def serve(make_app):
    """Start extra live servers with their own app config; stopped after the test."""
    servers: list[LiveServer] = []

    def start(**config) -> LiveServer:
        server = LiveServer(make_app(**config))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _handshake(server, cookie: str | None, origin: str | None = None,
               **extra: str) -> tuple[int, dict | None]:
    """Open /ws as a browser does (Host with the port, Origin of the page); return the
    status code and, after a 101, the first message (the app's hello)."""
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {"Host": f"127.0.0.1:{server.port}", "Upgrade": "websocket",
               "Connection": "Upgrade", "Sec-WebSocket-Key": key,
               "Sec-WebSocket-Version": "13", **extra}
    if origin is not None:
        headers["Origin"] = origin
    if cookie:
        headers["Cookie"] = cookie
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET /ws HTTP/1.1\r\n{head}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        status_line, _, rest = data.partition(b"\r\n")
        status = int(status_line.split()[1])
        if status != 101:
            return status, None
        rest = rest.partition(b"\r\n\r\n")[2]
        while len(rest) < 4:
            rest += sock.recv(4096)
        length, offset = rest[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(rest[2:4], "big"), 4
        while len(rest) < offset + length:
            rest += sock.recv(4096)
        return status, json.loads(rest[offset:offset + length])


def _kind(result: tuple[int, dict | None]) -> str:
    status, hello = result
    assert status == 101 and hello is not None, result
    return hello["kind"]


def test_ws_same_origin_upgraded(live_server):
    assert _kind(_handshake(live_server, live_server.session_cookie(),
                            live_server.url)) == "hello"


def test_ws_other_origin_with_valid_cookie_refused_403(live_server):
    cookie = live_server.session_cookie()
    port = live_server.port
    for origin in (f"http://127.0.0.1:{port + 1}",   # another port on the same host
                   f"http://localhost:{port}",       # same port, other host name
                   f"https://127.0.0.1:{port}",      # other scheme
                   "https://evil.example", "null", f"http://127.0.0.1:{port}/x", "garbage",
                   ""):
        assert _handshake(live_server, cookie, origin) == (403, None), origin
    assert web.services_of(live_server.app).hub.stats()["clients"] == 0
    # scheme and host compare case-insensitively, as browsers serialise them in lower case
    assert _kind(_handshake(live_server, cookie, f"HTTP://127.0.0.1:{port}")) == "hello"


def test_ws_without_origin_allowed_for_non_browser_clients_with_session(live_server):
    # browsers always send Origin on WebSocket handshakes; its absence is a non-browser client,
    # which still needs the session cookie
    assert _kind(_handshake(live_server, live_server.session_cookie())) == "hello"
    assert _handshake(live_server, None) == (401, None)
    assert _handshake(live_server, None, "https://evil.example") == (403, None)


def test_ws_allowed_origins_list_admits_reverse_proxy_name(serve):
    server = serve(ALLOWED_ORIGINS=("https://dash.example.com", "http://10.1.2.3:8443"))
    cookie = server.session_cookie()
    for origin in ("https://dash.example.com", "https://DASH.example.com:443",
                   "http://10.1.2.3:8443", server.url):
        assert _kind(_handshake(server, cookie, origin)) == "hello", origin
    assert _handshake(server, cookie, "https://other.example.com") == (403, None)
    assert _handshake(server, cookie, "http://dash.example.com") == (403, None)


def test_ws_forwarded_host_and_proto_count_only_with_trust_proxy(serve):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example.com",
                 "X-Forwarded-For": "203.0.113.9"}
    trusting = serve(TRUST_PROXY=True)
    assert _kind(_handshake(trusting, trusting.session_cookie(), "https://dash.example.com",
                            **forwarded)) == "hello"
    direct = serve(TRUST_PROXY=False)
    assert _handshake(direct, direct.session_cookie(), "https://dash.example.com",
                      **forwarded) == (403, None)
    assert _kind(_handshake(direct, direct.session_cookie(), direct.url, **forwarded)) == "hello"


def test_ws_simple_websocket_client_still_works_with_origin_of_its_host(live_server):
    # simple_websocket sends "Host: 127.0.0.1" (no port): its own origin is http://127.0.0.1
    ws = _connect(live_server, live_server.session_cookie(), Origin="http://127.0.0.1")
    try:
        assert json.loads(ws.receive(timeout=2))["kind"] == "hello"
    finally:
        ws.close()
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        _connect(live_server, live_server.session_cookie(), Origin="http://127.0.0.2")
    assert refused.value.status_code == 403


def test_web_allowed_origins_config_parsed_and_validated():
    cfg = load({"WEB_ALLOWED_ORIGINS": " https://Dash.Example.com:443 , http://10.0.0.5:8080,"})
    assert cfg.web_allowed_origins == ("https://dash.example.com", "http://10.0.0.5:8080")
    assert load({}).web_allowed_origins == ()
    for bad in ("dash.example.com", "https://dash.example.com/path", "ftp://x.example", "*",
                "https://x.example:99999", "null", "https://user@x.example"):
        with pytest.raises(ConfigError) as err:
            load({"WEB_ALLOWED_ORIGINS": f"https://ok.example,{bad}"})
        assert "WEB_ALLOWED_ORIGINS" in str(err.value) and "scheme://host" in str(err.value)
