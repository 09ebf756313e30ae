# ruff: noqa: S603, S607  (tests run fixed local tools: nginx, openssl, bash, make)
"""The real ops/nginx/dashboard.conf, run by a real nginx on loopback in front of a tiny backend.

The config is copied with its substitution points rewritten (upstream web:8080, certificate
paths, listen ports, web roots); everything else — TLS, headers, auth_request, WebSocket
upgrade, static caching, redirects — is exactly what production runs.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "ops" / "nginx" / "dashboard.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

pytestmark = pytest.mark.skipif(NGINX is None or shutil.which("openssl") is None,
                                reason="nginx/openssl binaries not installed "
                                       "(apt-get install -y nginx openssl)")


def _accept(key: str) -> str:
    """Sec-WebSocket-Accept for a client key (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


class _Backend(BaseHTTPRequestHandler):
    """Speaks just enough of the web service: health, nginx auth check, docs, WebSocket."""

    seen: list[tuple[str, dict[str, str]]]

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers.items())))  # type: ignore[attr-defined]
        cookie = self.headers.get("Cookie", "")
        if self.path == "/api/health":
            self._send(200, b'{"status":"ok"}')
        elif self.path == "/api/auth/nginx-check":
            ok = "session=ok" in [c.strip() for c in cookie.split(";")]
            self._send(200 if ok else 401)
        elif self.path.startswith("/docs"):
            self._send(200, b'{"docs":true}')
        elif self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers["Sec-WebSocket-Key"]
            accept = _accept(key)
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.close_connection = True
        else:
            self._send(404)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Site:
    http_port: int
    https_port: int
    seen: list[tuple[str, dict[str, str]]]
    tmp: Path
    check_output: str = ""
    ctx: ssl.SSLContext = field(default_factory=ssl._create_unverified_context)

    def https(self, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPSConnection("127.0.0.1", self.https_port, context=self.ctx,
                                           timeout=10)
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        conn.close()
        return response


def _rewrite(conf: str, *, backend: int, http_port: int, https_port: int, tmp: Path) -> str:
    replacements = {
        "server web:8080;": f"server 127.0.0.1:{backend};",
        "/etc/letsencrypt/live/dashboard/": f"{tmp}/certs/",
        "listen 80 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
        "listen [::]:80 default_server;": "",
        "listen 443 ssl http2 default_server;":
            f"listen 127.0.0.1:{https_port} ssl http2 default_server;",
        "listen [::]:443 ssl http2 default_server;": "",
        "/usr/share/nginx/html": f"{tmp}/html",
        "/var/www/certbot": f"{tmp}/acme",
    }
    for old, new in replacements.items():
        assert old in conf, f"substitution point {old!r} missing from dashboard.conf"
        conf = conf.replace(old, new)
    return conf


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("nginx")
    (tmp / "certs").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(tmp / "certs" / "privkey.pem"),
                    "-out", str(tmp / "certs" / "fullchain.pem")],
                   check=True, capture_output=True)
    shutil.copy(tmp / "certs" / "fullchain.pem", tmp / "certs" / "chain.pem")
    (tmp / "html" / "static").mkdir(parents=True)
    (tmp / "html" / "static" / "app.css").write_text("body{margin:0}\n")
    (tmp / "acme" / ".well-known" / "acme-challenge").mkdir(parents=True)
    (tmp / "acme" / ".well-known" / "acme-challenge" / "tok123").write_text("tok123.key")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / sub).mkdir()

    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    backend.daemon_threads = True
    backend.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=backend.serve_forever, daemon=True).start()

    http_port, https_port = _free_port(), _free_port()
    site_conf = _rewrite(CONF.read_text(encoding="utf-8"), backend=backend.server_address[1],
                         http_port=http_port, https_port=https_port, tmp=tmp)
    (tmp / "dashboard.conf").write_text(site_conf)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the 0700 tmp dir
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    (tmp / "nginx.conf").write_text(f"""{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    {mime}
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/dashboard.conf;
}}
""")
    base = [NGINX, "-p", str(tmp), "-e", str(tmp / "logs" / "error.log"),
            "-c", str(tmp / "nginx.conf")]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, check=False)
    proc = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(https_port)
        _wait_port(http_port)
        yield Site(http_port=http_port, https_port=https_port, seen=backend.seen, tmp=tmp,
                   check_output=f"rc={check.returncode}\n{check.stderr}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        backend.shutdown()
        backend.server_close()


def test_nginx_config_test_passes(site: Site) -> None:
    assert site.check_output.startswith("rc=0"), site.check_output
    assert "test is successful" in site.check_output


def test_nginx_http_redirects_to_https(site: Site) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=10)
    conn.request("GET", "/dashboard?x=1", headers={"Host": "dash.example.com"})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == "https://dash.example.com/dashboard?x=1"


def test_nginx_http_serves_acme_challenge_from_webroot(site: Site) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=10)
    conn.request("GET", "/.well-known/acme-challenge/tok123")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"tok123.key"


def test_nginx_api_health_proxied_over_tls_with_forwarded_headers(site: Site) -> None:
    response = site.https("/api/health")
    assert response.status == 200 and response.body == b'{"status":"ok"}'
    _path, headers = next(s for s in reversed(site.seen) if s[0] == "/api/health")
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Real-IP"] == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", site.https_port)) as raw, \
            site.ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


def test_nginx_security_headers_on_every_response(site: Site) -> None:
    for path in ("/api/health", "/docs"):
        response = site.https(path)
        csp = response.getheader("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "connect-src 'self' wss://" in csp
        assert response.getheader("Strict-Transport-Security", "").startswith("max-age=")
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Referrer-Policy") == "strict-origin-when-cross-origin"
        assert response.getheader("Server") == "nginx"  # server_tokens off: no version


def test_nginx_docs_gated_by_auth_request(site: Site) -> None:
    denied = site.https("/docs")
    assert denied.status == 401
    allowed = site.https("/docs", headers={"Cookie": "theme=dark; session=ok"})
    assert allowed.status == 200 and allowed.body == b'{"docs":true}'
    checks = [h for p, h in site.seen if p == "/api/auth/nginx-check"]
    assert checks and checks[-1]["X-Original-URI"] == "/docs"


def test_nginx_websocket_upgrade_returns_101(site: Site) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", site.https_port), timeout=10) as raw, \
            site.ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line, *lines = head.decode().split("\r\n")
    assert status_line.startswith("HTTP/1.1 101"), head
    expected = _accept(key)
    assert f"Sec-WebSocket-Accept: {expected}" in lines


def test_nginx_static_served_from_disk_with_cache_headers(site: Site) -> None:
    response = site.https("/static/app.css")
    assert response.status == 200 and response.body == b"body{margin:0}\n"
    assert "max-age=604800" in response.getheader("Cache-Control", "")
    assert response.getheader("Content-Security-Policy")
    assert all(p != "/static/app.css" for p, _ in site.seen)
    missing = site.https("/static/absent.js")  # falls through to the web service
    assert missing.status == 404
    assert any(p == "/static/absent.js" for p, _ in site.seen)
