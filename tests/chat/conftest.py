"""Local servers that speak the Telegram Bot API (getUpdates / sendMessage) and the Zoho Cliq
incoming-webhook API, on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

BOT_TOKEN = "4242:TEST-bot-token-secret"


class FakeTelegram:
    """Keeps a queue of updates with Telegram's offset semantics (getUpdates with offset N
    confirms and drops every update below N); records sendMessage bodies. ``fail_status``
    answers every call with that status (e.g. 502: Telegram down); ``rate_limits`` answers
    that many sendMessage calls with 429 and parameters.retry_after first."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.get_calls: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.fail_status: int | None = None
        self.rate_limits = 0
        self.retry_after = 1
        self._next_id = 1000
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                status, answer = server.answer(self.path, body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_message(self, text: str, chat_id: int = 111, user_id: int = 111,
                    username: str = "alice", chat_type: str = "private") -> int:
        with self._lock:
            self._next_id += 1
            uid = self._next_id
            self.updates.append({"update_id": uid, "message": {
                "message_id": uid, "date": 0, "text": text,
                "chat": {"id": chat_id, "type": chat_type},
                "from": {"id": user_id, "is_bot": False, "username": username}}})
        return uid

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.paths.append(path)
            if self.fail_status is not None:
                return self.fail_status, {"ok": False, "error_code": self.fail_status,
                                          "description": "Bad Gateway"}
            method = path.rsplit("/", 1)[-1]
            if not path.startswith(f"/bot{BOT_TOKEN}/"):
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            if method == "getUpdates":
                self.get_calls.append(body)
                offset = body.get("offset")
                if offset is not None:
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                return 200, {"ok": True, "result": list(self.updates)}
            if method == "sendMessage":
                if self.rate_limits > 0:
                    self.rate_limits -= 1
                    return 429, {"ok": False, "error_code": 429,
                                 "description": "Too Many Requests: retry after "
                                                f"{self.retry_after}",
                                 "parameters": {"retry_after": self.retry_after}}
                self.sent.append(body)
                return 200, {"ok": True, "result": {"message_id": len(self.sent),
                                                    "chat": {"id": body["chat_id"]},
                                                    "text": body["text"]}}
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeCliq:
    """The Cliq incoming-webhook API: POST /api/v2/channelsbyname/<name>/message?zapikey=K
    with {"text"} answers 204; a wrong zapikey 401; ``fail_status`` answers that status."""

    ZAPIKEY = "zapi-TEST-key"

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.fail_status: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if server.fail_status is not None:
                    status = server.fail_status
                elif f"zapikey={server.ZAPIKEY}" not in self.path:
                    status = 401
                else:
                    server.posts.append((self.path.split("?")[0], body))
                    status = 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.webhook = f"{self.base}/api/v2/channelsbyname/trading/message?zapikey={self.ZAPIKEY}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def texts(self) -> list[str]:
        return [b["text"] for _p, b in self.posts]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def telegram():
    server = FakeTelegram()
    yield server
    server.close()


@pytest.fixture
def cliq():
    server = FakeCliq()
    yield server
    server.close()
