"""A local OpenAI-compatible chat-completions server on 127.0.0.1 (real HTTP, a thread).

``POST /v1/chat/completions`` answers, in order, the scripted replies queued with
:meth:`FakeLlm.queue` (a status, a body or a content text, an optional delay), then the
``default`` handler, which picks an answer by the prompt's task (``content_for``). It records
every request (body and headers) and can refuse ``response_format`` like servers that do
not support JSON mode.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Scripted:
    status: int = 200
    content: str | None = None       # a chat completion with this content
    raw: str | None = None           # or this body verbatim (malformed shapes)
    delay: float = 0.0
    headers: dict[str, str] | None = None
    usage: tuple[int, int] = (120, 40)


class FakeLlm:
    def __init__(self, default: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.scripted: list[Scripted] = []
        self.default = default or (lambda body: "{}")
        self.refuse_json_mode = False
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, raw, headers, delay = server.answer(self.path, body, dict(self.headers))
                if delay:
                    time.sleep(delay)
                data = raw.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def queue(self, *items: Scripted) -> None:
        with self._lock:
            self.scripted.extend(items)

    @staticmethod
    def completion(content: str, model: str, usage: tuple[int, int]) -> str:
        return json.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "model": model,
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": content}}],
                           "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                     "total_tokens": sum(usage)}})

    def answer(self, path: str, body: dict[str, Any], headers: dict[str, str]
               ) -> tuple[int, str, dict[str, str] | None, float]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            if not path.endswith("/chat/completions"):
                return 404, json.dumps({"error": {"message": f"no route {path}"}}), None, 0.0
            if self.refuse_json_mode and "response_format" in body:
                return 400, json.dumps({"error": {"message": "response_format is not supported"}}), \
                    None, 0.0
            item = self.scripted.pop(0) if self.scripted else None
        model = str(body.get("model", "fake"))
        if item is None:
            return 200, self.completion(self.default(body), model, (120, 40)), None, 0.0
        if item.raw is not None:
            return item.status, item.raw, item.headers, item.delay
        if item.status != 200:
            return item.status, json.dumps({"error": {"message": f"fake error {item.status}"}}), \
                item.headers, item.delay
        return 200, self.completion(item.content or "", model, item.usage), item.headers, item.delay

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def task_of(body: dict[str, Any]) -> str:
    """The task named in the system prompt (``TASK: <name>``)."""
    for m in body.get("messages", []):
        text = str(m.get("content", ""))
        if "TASK: " in text:
            return text.split("TASK: ", 1)[1].split()[0]
    return ""
