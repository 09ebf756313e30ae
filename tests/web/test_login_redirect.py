"""Where the browser goes after login: only the dashboard's own pages, whatever ``next`` says.

Each Location / next value is checked the way a browser reads it (WHATWG URL parsing strips
leading/trailing C0 controls and spaces, drops tab/CR/LF anywhere and reads ``\\`` as ``/``).
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urljoin, urlsplit

import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.conftest import login
from web.security import page_paths, safe_next

ORIGIN = "http://dash.local"
PAYLOADS = [
    "/%09/evil.example/x", "/%5Cevil.example", "%5C%5Cevil.example", "/%0D%0A/evil.example",
    "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example",
    "https://evil.example/", "http:evil.example", "javascript:alert(1)", "%2F%2Fevil.example",
    "/%2F/evil.example", "/trades/%2E%2E/%2F%2Fevil.example", "%20//evil.example",
    "/%00/evil.example", "/%E3%80%80/evil.example", "/%EF%BC%8F/evil.example",
    "/.//evil.example", "/trades%3Fx=//evil.example", "/trades%23//evil.example",
    "/@evil.example", "/login?next=//evil.example", "", "trades", "%09%09//evil.example",
]
FRAGMENTS = ["/", "\\", "\t", "\r", "\n", " ", "\x00", "\x0b", "\x0c", "\x7f", "\u3000",
             "\uff0f", "\u2044", "evil.example", "@", ":", ".", "..", "?", "#", "%", "%09",
             "%5C", "%2F", "http:", "https:", "javascript:", "//", "trades", "risk", "docs",
             "login", "127.0.0.1", "[::1]"]
payloads = st.one_of(st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join),
                     st.text(max_size=30))
EXAMPLES = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def browser_view(url: str) -> str:
    """What a browser's URL parser makes of ``url`` before resolving it."""
    url = url.strip("".join(chr(c) for c in range(0x21)))
    return re.sub(r"[\t\n\r]", "", url).replace("\\", "/")


def assert_same_site(target: str) -> None:
    view = browser_view(target)
    parts = urlsplit(view)
    assert not parts.scheme and not parts.netloc, target
    assert view.startswith("/") and not view.startswith("//"), target
    resolved = urlsplit(urljoin(ORIGIN + "/login", view))
    assert (resolved.scheme, resolved.netloc) == ("http", "dash.local"), target
    assert target in page_paths() | {"/"}, target


def _rendered_next(client, query: str) -> str:
    page = client.get("/login?next=" + query)
    assert page.status_code == 200
    return html.unescape(re.search(r'id="next" value="([^"]*)"', page.text).group(1))


@given(raw=payloads)
@EXAMPLES
def test_safe_next_never_leaves_the_dashboard(raw):
    assert_same_site(safe_next(raw))


@pytest.mark.parametrize("page", sorted(page_paths()))
def test_safe_next_keeps_each_dashboard_page(page):
    assert safe_next(page) == page


@pytest.mark.parametrize("query", PAYLOADS)
def test_login_get_logged_in_redirects_only_on_site(app, query):
    client = app.test_client()
    login(app, client)
    r = client.get("/login?next=" + query)
    assert r.status_code == 302
    assert_same_site(r.headers["Location"])
    assert r.headers["Location"] == "/"  # none of these is a dashboard page


@pytest.mark.parametrize("query", PAYLOADS)
def test_login_page_renders_only_on_site_next(app, query):
    assert _rendered_next(app.test_client(), query) == "/"


@given(raw=payloads)
@EXAMPLES
def test_login_get_any_next_redirects_on_site(app, raw):
    client = app.test_client()
    login(app, client)
    r = client.get("/login?next=" + quote(raw, safe=""))
    assert r.status_code == 302
    assert_same_site(r.headers["Location"])
    assert_same_site(_rendered_next(app.test_client(), quote(raw, safe="")))


def test_login_get_keeps_a_dashboard_page(app):
    assert _rendered_next(app.test_client(), "/trades") == "/trades"
    client = app.test_client()
    login(app, client)
    assert client.get("/login?next=/risk").headers["Location"] == "/risk"
    assert client.get("/trades").status_code == 200
    bare = app.test_client().get("/settings")
    assert bare.status_code == 302 and bare.headers["Location"] == "/login?next=/settings"


def test_login_post_answers_safe_next(app, totp_secret):
    code = pyotp.TOTP(totp_secret).now()
    r = app.test_client().post("/api/auth/login",
                               json={"code": code, "next": "/%09/evil.example/x"})
    assert r.status_code == 200 and r.json["next"] == "/"
    client = app.test_client()
    login(app, client)
    assert client.get("/api/auth/session").json["authenticated"] is True


def test_login_post_next_of_a_page_kept_and_bad_next_does_not_block_login(make_app, pool,
                                                                         totp_secret):
    app = make_app()
    totp = pyotp.TOTP(totp_secret)
    r = app.test_client().post("/api/auth/login", json={"code": totp.now(), "next": "/backtests"})
    assert r.status_code == 200 and r.json["next"] == "/backtests"
    # a next that is not a string is a client bug: 400 naming it, before the code is spent
    r = app.test_client().post("/api/auth/login", json={"code": "000000", "next": ["//x"]})
    assert r.status_code == 400 and r.json["field"] == "next"


def test_login_script_follows_only_server_checked_next():
    """The page script honours no next of its own: the hidden #next (rendered through
    safe_next) and the login answer's next (safe_next again) are all it follows."""
    from pathlib import Path

    import web

    static = Path(web.__file__).parent / "static" / "js"
    for path in static.rglob("*.js"):
        text = path.read_text(encoding="utf-8")
        for reads_url in ("location.search", "location.hash", "URLSearchParams(location",
                          "URLSearchParams(window.location", "document.referrer"):
            assert reads_url not in text, (path, reads_url)
    login_js = (static / "pages" / "login.js").read_text(encoding="utf-8")
    targets = re.findall(r"location\.href\s*=\s*([^;]+);", login_js)
    assert targets and all(t.strip() in ("next()", "r.next || '/'") for t in targets), targets
