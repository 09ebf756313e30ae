
"""The real ops/nginx/dashboard.conf, run by a real nginx on loopback in front of the real web
service: the compose ``web`` command (gunicorn serving ``web:create_app()``) on a test database.

The config is copied with its substitution points rewritten (upstream web:8080, certificate
paths, listen ports, web roots); everything else — TLS, headers, auth_request, WebSocket
upgrade, static caching, redirects — is exactly what production runs. What reached the
upstream is read from gunicorn's access log (format set through GUNICORN_CMD_ARGS).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

import psycopg
import pyotp
import pytest

from tests.conftest import clone_database, eventually, with_dbname
from tests.ops.test_compose_commands import (
    Web,
    healthcheck_argv,
    load_compose,
    service,
    start_web,
    stop,
)

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "ops" / "nginx" / "dashboard.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
COOKIE = "nifty_session"
#: gunicorn access log: one JSON object per request with the headers nginx forwarded.
ACCESS_FORMAT = ('{"path":"%(U)s","status":"%(s)s","proto":"%({x-forwarded-proto}i)s",'
                 '"real_ip":"%({x-real-ip}i)s","forwarded_host":"%({x-forwarded-host}i)s",'
                 '"original_uri":"%({x-original-uri}i)s","upgrade":"%({upgrade}i)s"}')

pytestmark = pytest.mark.skipif(NGINX is None or shutil.which("openssl") is None,
                                reason="nginx/openssl binaries not installed "
                                       "(apt-get install -y nginx openssl)")


def _accept(key: str) -> str:
    """Sec-WebSocket-Accept for a client key (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Site:
    http_port: int
    https_port: int
    web: Web
    access_log: Path
    totp_secret: str
    tmp: Path
    check_output: str = ""
    ctx: ssl.SSLContext = field(default_factory=ssl._create_unverified_context)

    def https(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
              body: bytes | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPSConnection("127.0.0.1", self.https_port, context=self.ctx,
                                           timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        conn.close()
        return response

    def upstream_requests(self) -> list[dict[str, str]]:
        """What gunicorn saw so far (its access log), oldest first."""
        if not self.access_log.exists():
            return []
        lines = self.access_log.read_text(encoding="utf-8", errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def upstream_saw(self, path: str, **expected: str) -> dict[str, str]:
        """Wait until gunicorn logged a request for ``path`` (matching ``expected``)."""
        def find() -> dict[str, str] | None:
            return next((r for r in reversed(self.upstream_requests()) if r["path"] == path
                         and all(r.get(k) == v for k, v in expected.items())), None)
        return eventually(find, timeout=5)


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
def site_database(admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh migrated database for the whole module (one gunicorn serves every test)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        name = clone_database(conn, template_db, prefix="t_nginx_")
    try:
        yield with_dbname(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _nginx_prefix(tmp: Path) -> None:
    (tmp / "certs").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(tmp / "certs" / "privkey.pem"),
                    "-out", str(tmp / "certs" / "fullchain.pem")],
                   check=True, capture_output=True)
    shutil.copy(tmp / "certs" / "fullchain.pem", tmp / "certs" / "chain.pem")
    # compose mounts ./web/static at /usr/share/nginx/html/static: the same files here
    (tmp / "html").mkdir()
    shutil.copytree(ROOT / "web" / "static", tmp / "html" / "static")
    (tmp / "acme" / ".well-known" / "acme-challenge").mkdir(parents=True)
    (tmp / "acme" / ".well-known" / "acme-challenge" / "tok123").write_text("tok123.key")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / sub).mkdir()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, site_database: str) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("nginx")
    _nginx_prefix(tmp)
    secret = pyotp.random_base32()
    access_log = tmp / "web" / "access.log"
    web = start_web(load_compose(), tmp / "web", site_database,
                    DASHBOARD_TOTP_SECRET=secret, DASHBOARD_SECRET_KEY="k" * 64,
                    WEB_ACCESS_LOG=str(access_log),
                    GUNICORN_CMD_ARGS=f"--access-logformat '{ACCESS_FORMAT}'")
    proc: subprocess.Popen | None = None
    try:
        http_port, https_port = _free_port(), _free_port()
        site_conf = _rewrite(CONF.read_text(encoding="utf-8"), backend=web.port,
                             http_port=http_port, https_port=https_port, tmp=tmp)
        (tmp / "dashboard.conf").write_text(site_conf)
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the 0700 tmp
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
        eventually(lambda: proc.poll() is not None or
                   (_listening(https_port) and _listening(http_port)), timeout=10)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        yield Site(http_port=http_port, https_port=https_port, web=web, access_log=access_log,
                   totp_secret=secret, tmp=tmp,
                   check_output=f"rc={check.returncode}\n{check.stderr}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        rc = stop(web.proc)
        assert rc == 0, f"gunicorn exited {rc} on SIGTERM:\n{web.output()}"


@pytest.fixture(scope="module")
def session_cookie(site: Site) -> str:
    """Log in through nginx exactly like the login page: session info, then a TOTP code."""
    before = site.https("/api/auth/session")
    assert before.status == 200, before.body
    info = json.loads(before.body)
    assert info["authenticated"] is False and "totp" in info["login_methods"]
    code = pyotp.TOTP(site.totp_secret).now()
    login = site.https("/api/auth/login", method="POST", body=json.dumps({"code": code}).encode(),
                       headers={"Content-Type": "application/json"})
    assert login.status == 200, login.body
    assert json.loads(login.body)["authenticated"] is True
    jar = SimpleCookie(login.getheader("Set-Cookie", ""))
    assert COOKIE in jar, login.getheader("Set-Cookie")
    morsel = jar[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["secure"], "compose sets DASHBOARD_SECURE_COOKIES: HTTPS-only cookie expected"
    return f"{COOKIE}={morsel.value}"


def _ws_handshake(site: Site, cookie: str | None) -> tuple[str, list[str], bytes, str]:
    """Open /ws through nginx; returns the status line, header lines, the bytes read after
    the head (with a 101: the first frame, at least 2 bytes) and the client key."""
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    request = (f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()
    with socket.create_connection(("127.0.0.1", site.https_port), timeout=10) as raw, \
            site.ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        if status_line.startswith("HTTP/1.1 101"):
            rest = _read_frame(tls, rest)
    return status_line, lines, rest, key


def _read_frame(tls: ssl.SSLSocket, data: bytes) -> bytes:
    """Read one unmasked server frame (payload < 64 KiB) and return its payload."""
    def need(n: int) -> None:
        nonlocal data
        while len(data) < n:
            chunk = tls.recv(4096)
            assert chunk, f"connection closed inside a frame after {data!r}"
            data += chunk

    need(2)
    assert data[0] & 0x0F == 0x1, f"expected a text frame, got opcode {data[0] & 0x0F}"
    length, offset = data[1] & 0x7F, 2
    if length == 126:
        need(4)
        length, offset = int.from_bytes(data[2:4], "big"), 4
    need(offset + length)
    return data[offset:offset + length]


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


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget not installed (the nginx "
                    "image's healthcheck uses busybox wget)")
def test_nginx_compose_healthcheck_command_passes(site: Site) -> None:
    argv = healthcheck_argv(service(load_compose(), "nginx")["healthcheck"]["test"])
    assert "http://127.0.0.1/nginx-health" in argv[-1]
    argv[-1] = argv[-1].replace("http://127.0.0.1/", f"http://127.0.0.1:{site.http_port}/")
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert not any(r["path"] == "/nginx-health" for r in site.upstream_requests())


def test_nginx_api_health_proxied_over_tls_with_forwarded_headers(site: Site) -> None:
    response = site.https("/api/health", headers={"Host": "dash.example.com"})
    assert response.status == 200, response.body
    assert json.loads(response.body)["database"] == "ok"
    seen = site.upstream_saw("/api/health", forwarded_host="dash.example.com")
    assert seen["proto"] == "https" and seen["real_ip"] == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", site.https_port)) as raw, \
            site.ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


def test_nginx_security_headers_on_every_response(site: Site) -> None:
    for path in ("/api/health", "/docs", "/api/positions", "/static/css/app.css"):
        response = site.https(path)
        csp = response.getheader("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "connect-src 'self' wss://" in csp, path
        assert response.getheader("Strict-Transport-Security", "").startswith("max-age="), path
        assert response.getheader("X-Content-Type-Options") == "nosniff", path
        assert response.getheader("X-Frame-Options") == "DENY", path
        assert response.getheader("Referrer-Policy") == "strict-origin-when-cross-origin", path
        assert response.getheader("Server") == "nginx", path  # server_tokens off: no version


def test_nginx_api_requires_session_and_accepts_login_cookie(site: Site,
                                                             session_cookie: str) -> None:
    assert site.https("/api/positions").status == 401
    allowed = site.https("/api/positions", headers={"Cookie": session_cookie})
    assert allowed.status == 200, allowed.body
    info = json.loads(site.https("/api/auth/session", headers={"Cookie": session_cookie}).body)
    assert info["authenticated"] is True and info["csrf_token"]


def test_nginx_docs_gated_by_auth_request(site: Site, session_cookie: str) -> None:
    denied = site.https("/docs")
    assert denied.status == 401
    site.upstream_saw("/api/auth/nginx-check", status="401", original_uri="/docs")
    assert not any(r["path"] == "/docs" for r in site.upstream_requests())
    allowed = site.https("/docs", headers={"Cookie": f"theme=dark; {session_cookie}"})
    assert allowed.status == 200, allowed.body
    assert b"<html" in allowed.body.lower()
    site.upstream_saw("/api/auth/nginx-check", status="200", original_uri="/docs")
    spec = site.https("/docs/openapi.json", headers={"Cookie": session_cookie})
    assert spec.status == 200 and json.loads(spec.body)["openapi"].startswith("3.")


def test_nginx_websocket_upgrade_returns_101_for_a_session(site: Site,
                                                           session_cookie: str) -> None:
    status_line, lines, frame, key = _ws_handshake(site, session_cookie)
    assert status_line.startswith("HTTP/1.1 101"), (status_line, lines)
    assert f"Sec-WebSocket-Accept: {_accept(key)}" in lines
    hello = json.loads(frame)  # the app's first message, relayed through nginx
    assert hello["kind"] == "hello" and "client" in hello["data"]


def test_nginx_websocket_without_session_is_refused_before_upgrade(site: Site) -> None:
    status_line, _lines, _rest, _key = _ws_handshake(site, None)
    assert status_line.startswith("HTTP/1.1 401"), status_line
    site.upstream_saw("/ws", status="401", upgrade="websocket")  # Upgrade header passed on


def test_nginx_static_served_from_disk_with_cache_headers(site: Site) -> None:
    response = site.https("/static/css/app.css")
    assert response.status == 200
    assert response.body == (ROOT / "web" / "static" / "css" / "app.css").read_bytes()
    assert "max-age=604800" in response.getheader("Cache-Control", "")
    assert response.getheader("Content-Security-Policy")
    missing = site.https("/static/absent.js")  # falls through to the web service
    assert missing.status == 404
    site.upstream_saw("/static/absent.js", status="404")
    assert all(r["path"] != "/static/css/app.css" for r in site.upstream_requests())
