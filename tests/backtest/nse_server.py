"""A local stand-in for nsearchives.nseindia.com: the real bhavcopies of ../shared/data in
NSE's URL layout, on 127.0.0.1 (port 0), in a thread.

Behaves as NSE does where the downloader cares: 403 without a browser User-Agent, 404 for a
day without a file (a holiday, or ``not_published``), and on request a 5xx before success
(``flaky``: day -> failures first) or 503 for everything after ``fail_after`` files served
(an interrupted run). Filtered csv files are served zipped, as NSE serves them. Every request
is logged as (path, status).
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_UDIFF = re.compile(r"^/content/fo/BhavCopy_NSE_FO_0_0_0_(\d{8})_F_0000\.csv\.zip$")
_LEGACY = re.compile(r"^/content/historical/DERIVATIVES/(\d{4})/([A-Z]{3})/fo(\d{2}[A-Z]{3}\d{4})"
                     r"bhav\.csv\.zip$")


def shared_files(root: Path) -> dict[tuple[str, date], Path]:
    """(format, trade date) -> file for every bhavcopy under ``root``."""
    out: dict[tuple[str, date], Path] = {}
    for p in sorted(root.rglob("*")):
        m = re.fullmatch(r"BhavCopy_NSE_FO_0_0_0_(\d{8})_F_0000\.csv(\.zip)?", p.name)
        if m:
            d = datetime.strptime(m.group(1), "%Y%m%d").date()
            if ("udiff", d) not in out or p.suffix == ".zip":  # prefer the complete zip
                out[("udiff", d)] = p
            continue
        m = re.fullmatch(r"fo(\d{2}[A-Z]{3}\d{4})bhav\.csv(\.zip)?", p.name)
        if m:
            out[("legacy", datetime.strptime(m.group(1), "%d%b%Y").date())] = p
    return out


class NseArchiveServer:
    def __init__(self, files: dict[tuple[str, date], Path], *, not_published: set[date] = frozenset(),
                 flaky: dict[date, int] | None = None, fail_after: int | None = None) -> None:
        self.files = files
        self.not_published = set(not_published)
        self.flaky = dict(flaky or {})
        self.fail_after = fail_after
        self.served = 0
        self.log: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def requested_days(self) -> list[date]:
        out = []
        for path, _ in self.log:
            key = self._key(path)
            if key:
                out.append(key[1])
        return out

    def __enter__(self) -> NseArchiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @staticmethod
    def _key(path: str) -> tuple[str, date] | None:
        m = _UDIFF.match(path)
        if m:
            return "udiff", datetime.strptime(m.group(1), "%Y%m%d").date()
        m = _LEGACY.match(path)
        if m:
            return "legacy", datetime.strptime(m.group(3), "%d%b%Y").date()
        return None

    def _answer(self, path: str, user_agent: str) -> tuple[int, bytes]:
        if "Mozilla/" not in user_agent:
            return 403, b"<html>Access Denied</html>"
        key = self._key(path)
        if key is None or key[1] in self.not_published or key not in self.files:
            return 404, b"<html>Not Found</html>"
        if self.fail_after is not None and self.served >= self.fail_after:
            return 503, b"<html>Service Unavailable</html>"
        if self.flaky.get(key[1], 0) > 0:
            self.flaky[key[1]] -= 1
            return 502, b"<html>Bad Gateway</html>"
        p = self.files[key]
        data = p.read_bytes()
        if p.suffix != ".zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(p.name, data)
            data = buf.getvalue()
        self.served += 1
        return 200, data

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    code, body = server._answer(self.path, self.headers.get("User-Agent", ""))
                    server.log.append((self.path, code))
                self.send_response(code)
                self.send_header("Content-Type", "application/zip" if code == 200 else "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
