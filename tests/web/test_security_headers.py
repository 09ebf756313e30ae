"""Security headers come from the app itself (not only nginx): a strict CSP the pages obey,
no framing, no MIME sniffing, a referrer policy, and no caching of API answers or pages."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.web.conftest import login
from web.views import PAGES

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"


def csp_of(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy", "")
    assert policy, f"no CSP on {response.request.path if hasattr(response, 'request') else ''}"
    out: dict[str, list[str]] = {}
    for directive in filter(None, (d.strip() for d in policy.split(";"))):
        name, *values = directive.split()
        assert name not in out, f"{name} twice in {policy}"
        out[name] = values
    return out


def assert_strict_csp(response, ws_source: str) -> None:
    csp = csp_of(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:"]
    assert csp["connect-src"] == ["'self'", ws_source]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert not any(v.startswith("'unsafe-") for values in csp.values() for v in values)


def assert_common_headers(response) -> None:
    h = response.headers
    assert h["X-Frame-Options"] == "DENY"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert h["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in h["Permissions-Policy"]


def test_every_kind_of_response_carries_security_headers_and_no_store(app):
    client = app.test_client()
    login(app, client)
    bare = app.test_client()
    responses = {
        "page": client.get("/"),
        "docs page": client.get("/docs"),
        "login page": bare.get("/login"),
        "redirect to login": bare.get("/trades"),
        "api json": client.get("/api/positions"),
        "api 401": bare.get("/api/positions"),
        "api 404": client.get("/api/no-such-thing"),
        "api 400": bare.post("/api/auth/login", json={"code": "abc"}),
        "openapi": client.get("/docs/openapi.json"),
        "health": bare.get("/api/health"),
        "page 404": client.get("/no-such-page"),
    }
    expected = {"page": 200, "docs page": 200, "login page": 200, "redirect to login": 302,
                "api json": 200, "api 401": 401, "api 404": 404, "api 400": 400,
                "openapi": 200, "health": 200, "page 404": 404}
    for name, r in responses.items():
        assert r.status_code == expected[name], name
        assert_strict_csp(r, "ws://localhost")
        assert_common_headers(r)
        assert r.headers["Cache-Control"] == "no-store", name


def test_static_files_get_headers_but_stay_cacheable(app):
    r = app.test_client().get("/static/js/app.js")
    assert r.status_code == 200
    assert_common_headers(r)
    assert "no-store" not in r.headers.get("Cache-Control", "")
    assert r.headers["Content-Type"].startswith("text/javascript")


def test_csp_names_wss_of_the_forwarded_host_only_when_proxy_trusted(make_app):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example.com"}
    trusting = make_app(TRUST_PROXY=True).test_client()
    assert_strict_csp(trusting.get("/login", headers=headers), "wss://dash.example.com")
    direct = make_app().test_client()
    assert_strict_csp(direct.get("/login", headers=headers), "ws://localhost")


def test_csp_ignores_a_malformed_host_header(app):
    r = app.test_client().get("/login", headers={"Host": "evil.example; script-src *"})
    policy = r.headers["Content-Security-Policy"]
    assert "evil" not in policy and "script-src 'self';" in policy
    assert csp_of(r)["connect-src"] == ["'self'"]


def test_headers_from_the_real_server(live_server):
    r = requests.get(live_server.url + "/login", timeout=5)
    assert_strict_csp(r, f"ws://127.0.0.1:{live_server.port}")
    assert_common_headers(r)
    r = requests.get(live_server.url + "/api/health", timeout=5)
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"


class _InlineFinder(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        names = {k for k, _ in attrs}
        if tag == "style":
            self.found.append("<style> element")
        if tag == "script":
            if "src" not in names:
                self.found.append("inline <script>")
            self._in_script = True
        for name, value in attrs:
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
            if name.startswith("on"):
                self.found.append(f"{name} handler on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL in {name} on <{tag}>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append("script body")


@pytest.mark.parametrize("path", [p for _n, p, _l in PAGES] + ["/docs", "/login"])
def test_pages_have_no_inline_script_style_or_handlers(app, path):
    client = app.test_client()
    if path != "/login":
        login(app, client)
    r = client.get(path)
    assert r.status_code == 200
    finder = _InlineFinder()
    finder.feed(r.text)
    assert finder.found == [], finder.found
    assert "<script type=\"module\" src=\"/static/js/pages/" in r.text


def test_scripts_do_not_write_inline_style_attributes_or_eval():
    for path in STATIC.rglob("*.js"):
        text = path.read_text(encoding="utf-8")
        for blocked in ("setAttribute('style'", 'setAttribute("style"', "eval(",
                        "new Function(", "style=\\\"", "style='", 'style="'):
            assert blocked not in text, (path.name, blocked)
