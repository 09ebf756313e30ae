"""Chat channels against local HTTP servers that speak the Telegram Bot API / Cliq webhook."""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pykka
import pytest

from engine.actors.base import ActorContext
from engine.actors.directory import Directory
from engine.actors.notifier import DrainOutbox, NotifierActor
from engine.clock import RealClock
from engine.config import load
from engine.notify.channels import ChatError, CliqChannel, TelegramChannel, channels_from_config
from tests.conftest import eventually


class ChatServer:
    """Records POSTs; answers like Telegram ({"ok": true}) or with a chosen status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.status = 200
        self.raw_body: bytes | None = None  # answer this instead of Telegram's JSON
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                ok = server.status == 200
                payload = json.dumps({"ok": ok, "description": "" if ok else "Bad Request: chat not found"})
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode() if server.raw_body is None else server.raw_body)

            def log_message(self, *_a) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def chat():
    server = ChatServer()
    yield server
    server.close()


def test_telegram_send_posts_chat_id_and_text(chat) -> None:
    TelegramChannel(chat.url, "123:SECRET", "-1001").send("OPENED DC-1")
    assert chat.requests == [("/bot123:SECRET/sendMessage", {"chat_id": "-1001", "text": "OPENED DC-1"})]


def test_telegram_refusal_names_status_not_token(chat) -> None:
    chat.status = 400
    with pytest.raises(ChatError) as err:
        TelegramChannel(chat.url, "123:SECRET", "-1001").send("x")
    assert "HTTP 400" in str(err.value) and "SECRET" not in str(err.value)


def test_cliq_webhook_posts_text(chat) -> None:
    CliqChannel(chat.url + "/api/v2/bots/x/incoming?zapikey=KEY").send("hello")
    assert chat.requests[0][1] == {"text": "hello"}


def test_channels_from_config_adds_enabled_channels(chat) -> None:
    cfg = load({"TELEGRAM_ENABLED": "true", "TELEGRAM_BOT_TOKEN": "t", "TELEGRAM_CHAT_ID": "1",
                "TELEGRAM_API_BASE": chat.url, "CLIQ_ENABLED": "true", "CLIQ_WEBHOOK_URL": chat.url})
    assert [c.name for c in channels_from_config(cfg)] == ["log", "telegram", "cliq"]


def test_notifier_delivers_outbox_once_and_scrubs_code(chat, pool) -> None:
    channel = TelegramChannel(chat.url, "1:T", "42")
    with pool.connection() as conn:
        conn.execute("INSERT INTO chat_outbox (channel, text) VALUES ('telegram', 'login code 481516')")
        conn.execute("INSERT INTO chat_outbox (channel, text) VALUES ('cliq', 'not configured')")
        conn.execute("INSERT INTO chat_outbox (channel, text, created_at) VALUES"
                     " ('telegram', 'stale 999999', now() - %s)", (timedelta(minutes=10),))
    ctx = ActorContext(clock=RealClock(), directory=Directory(),
                       services={"pool": pool, "chat_channels": [channel]})
    ref = NotifierActor.start(supervisor_ref=None, name="notifier", ctx=ctx)
    try:
        ref.tell(DrainOutbox())
        ref.tell(DrainOutbox())
        with pool.connection() as conn:
            rows = eventually(lambda: [r for r in conn.execute(
                "SELECT * FROM chat_outbox ORDER BY id").fetchall()] if conn.execute(
                "SELECT count(*) AS n FROM chat_outbox WHERE sent_at IS NULL AND error IS NULL"
            ).fetchone()["n"] == 0 else None)
    finally:
        ref.stop()
        pykka.ActorRegistry.stop_all()
    assert [body["text"] for _, body in chat.requests] == ["login code 481516"]
    assert rows[0]["sent_at"] is not None and rows[0]["error"] is None
    assert rows[0]["text"] == "[delivered; text removed]"
    assert "not configured" in rows[1]["error"] and rows[1]["sent_at"] is None
    assert rows[2]["error"] == "expired before delivery" and rows[2]["sent_at"] is None
    for row in rows[1:]:  # tried, not delivered: scrubbed, and never labelled delivered
        assert row["text"] == "[not delivered; text removed]"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain_with(pool, channel) -> dict:
    """Run a real NotifierActor over one outbox row holding a login code; return the row."""
    with pool.connection() as conn:
        conn.execute("INSERT INTO chat_outbox (channel, text) VALUES ('telegram',"
                     " 'Dashboard login code: 271828')")
    ctx = ActorContext(clock=RealClock(), directory=Directory(),
                       services={"pool": pool, "chat_channels": [channel]})
    ref = NotifierActor.start(supervisor_ref=None, name="notifier", ctx=ctx)
    try:
        ref.tell(DrainOutbox())
        with pool.connection() as conn:
            return eventually(lambda: conn.execute(
                "SELECT * FROM chat_outbox WHERE sent_at IS NOT NULL OR error IS NOT NULL"
            ).fetchone())
    finally:
        ref.stop()
        pykka.ActorRegistry.stop_all()


@pytest.mark.parametrize("status", [500, 400])
def test_notifier_refused_row_scrubbed_labelled_not_delivered_with_reason(chat, pool,
                                                                          status) -> None:
    chat.status = status
    row = _drain_with(pool, TelegramChannel(chat.url, "77:BOTSECRET", "42"))
    assert len(chat.requests) == 1  # it was tried
    assert row["sent_at"] is None
    assert row["text"] == "[not delivered; text removed]" and "271828" not in row["text"]
    assert f"HTTP {status}" in row["error"] and "telegram" in row["error"]
    assert "BOTSECRET" not in row["error"] and chat.url not in row["error"]


def test_notifier_unreachable_telegram_labelled_not_delivered(pool) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    row = _drain_with(pool, TelegramChannel(url, "77:BOTSECRET", "42", timeout=2))
    assert row["sent_at"] is None and row["text"] == "[not delivered; text removed]"
    assert row["error"].startswith("telegram unreachable")
    assert "BOTSECRET" not in row["error"] and url not in row["error"]


def test_notifier_telegram_answer_not_json_is_a_refusal_not_a_crash(chat, pool) -> None:
    chat.raw_body = b"<html>gateway</html>"
    row = _drain_with(pool, TelegramChannel(chat.url, "77:BOTSECRET", "42"))
    assert row["sent_at"] is None and row["text"] == "[not delivered; text removed]"
    assert row["error"] == "telegram refused the message: HTTP 200"
