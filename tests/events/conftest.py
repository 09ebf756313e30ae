"""A local HTTP server standing in for the official sources (127.0.0.1, any free port)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PAYLOADS = Path(__file__).resolve().parent / "payloads"


class FakeSources:
    """routes: path (with query) -> (status, content type, body); every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []   # (path, user agent)
        self.url = ""

    def serve(self, path: str, body: str | bytes, status: int = 200,
              ctype: str = "text/html; charset=utf-8") -> None:
        self.routes[path] = (status, ctype, body.encode() if isinstance(body, str) else body)


@pytest.fixture
def sources() -> Iterator[FakeSources]:
    fake = FakeSources()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.requests.append((self.path, self.headers.get("User-Agent", "")))
            status, ctype, body = fake.routes.get(self.path, (404, "text/plain", b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_url() -> str:
    """A URL nothing listens on (connection refused at once)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/calendar"


def payload(name: str) -> str:
    return (PAYLOADS / name).read_text(encoding="utf-8")
