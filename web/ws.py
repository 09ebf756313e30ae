"""/ws: live engine events for logged-in browsers.

The handshake is refused before any upgrade: with 403 when its Origin is another site's
(web.security.origin_allowed: the app's own origin or WEB_ALLOWED_ORIGINS; no Origin at all,
as from a non-browser client, is allowed), with 401 when there is no live session. After
that the handler thread is the only writer of its socket: it drains the client's Hub queue,
sends a keep-alive when idle, reads (and ignores) client messages, and re-checks the session
every 30 s so a logout or expiry also ends the socket.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from engine.store.pool import json_dumps
from engine.timeutil import now_ist
from web.api import session_token
from web.security import origin_allowed

logger = logging.getLogger(__name__)

sock = Sock()
bp = Blueprint("ws", __name__)

KEEPALIVE_S = 25.0
RECHECK_S = 30.0
POLICY_VIOLATION = 1008


@bp.before_request
def require_session() -> Any:
    if not origin_allowed(request, current_app.config.get("ALLOWED_ORIGINS") or ()):
        logger.warning("refused /ws from %s: Origin %r is not this dashboard's",
                       request.remote_addr, request.headers.get("Origin", "")[:100])
        return jsonify({"error": "cross-origin WebSocket refused"}), 403
    if session_token() is None:
        return jsonify({"error": "not logged in"}), 401
    return None


def _killer(ws: Any):
    def kill() -> None:
        with contextlib.suppress(OSError):
            ws.sock.shutdown(socket.SHUT_RDWR)
    return kill


@sock.route("/ws", bp=bp)
def events(ws: Any) -> None:
    services = current_app.extensions["engine"]
    token = session_token()
    client = services.hub.register(_killer(ws))
    last_sent = last_check = time.monotonic()
    try:
        ws.send(json_dumps({"kind": "hello", "ts": now_ist().isoformat(timespec="milliseconds"),
                            "data": {"client": client.id}}))
        while not client.closed.is_set():
            try:
                text = client.queue.get(timeout=0.5)
            except queue.Empty:
                text = None
            while text is not None:
                ws.send(text)
                last_sent = time.monotonic()
                try:
                    text = client.queue.get_nowait()
                except queue.Empty:
                    text = None
            ws.receive(timeout=0)  # client messages are ignored; raises once closed
            now = time.monotonic()
            if now - last_sent > KEEPALIVE_S:
                ws.send('{"kind":"ping"}')
                last_sent = now
            if now - last_check > RECHECK_S:
                last_check = now
                if token is None or services.auth.session(token) is None:
                    ws.close(POLICY_VIOLATION, "session ended")
                    break
    except (ConnectionClosed, OSError):
        pass
    finally:
        services.hub.unregister(client)
