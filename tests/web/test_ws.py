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
from tests.conftest import eventually


def _connect(server, cookie: str | None):
    headers = {"Cookie": cookie} if cookie else {}
    return simple_websocket.Client.connect(f"ws://127.0.0.1:{server.port}/ws", headers=headers)


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
