"""Headless Chromium: log in with a TOTP code, see the overview, watch a live P&L update.

Every page runs under the app's own Content-Security-Policy; each test fails on any CSP
violation the browser reports (``securitypolicyviolation`` events and console messages).
Waits use locators, not ``wait_for_function`` strings, which the CSP (no 'unsafe-eval')
rightly refuses to evaluate.
"""

from __future__ import annotations

import os
from datetime import date

import pyotp
import pytest
from psycopg.types.json import Jsonb

from engine.bus import publish_event
from engine.notify.channels import TelegramChannel
from engine.timeutil import now_ist
from web.api import COOKIE_NAME
from web.views import PAGES

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent (apt-get install chromium)"),
]

#: Installed before any page script: records what the CSP blocked.
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def expect():
    return pytest.importorskip("playwright.sync_api").expect


class Watched:
    """A page with its console errors and CSP violations collected."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context()
        self.context.add_init_script(WATCH_CSP)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}")
                     if m.type == "error" or "Content Security Policy" in m.text else None)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def violations(self) -> list[str]:
        reported = self.page.evaluate("() => window.__csp || []")
        return reported + [m for m in self.console if "Content Security Policy" in m]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser):
    w = Watched(browser)
    yield w
    w.close()


def _log_in_by_cookie(w: Watched, server) -> None:
    name, value = server.session_cookie().split("=", 1)
    assert name == COOKIE_NAME
    w.context.add_cookies([{"name": name, "value": value, "url": server.url}])


def test_browser_login_overview_live_pnl_update(watched, expect, live_server, pool,
                                                totp_secret):
    today: date = now_ist().date()
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES ('DC-LIVE', 'DC', 'paper', %s,"
                     " now(), 100, 75, %s)", (today, Jsonb({"mtm": "10.00"})))
    page = watched.page
    first = page.goto(live_server.url + "/")
    page.wait_for_url("**/login?next=/")
    assert "script-src 'self'" in first.headers["content-security-policy"]  # the login page
    page.fill("#code", pyotp.TOTP(totp_secret).now())  # 6 digits auto-submit
    page.wait_for_url(live_server.url + "/")
    page.wait_for_selector(".position[data-key='DC-LIVE']")
    assert page.text_content("#pnl-total").strip() == "+₹10.00"
    expect(page.locator("#ws-text")).to_have_text("live")
    publish_event(pool, "mtm", {"tag": "DC-LIVE", "mtm": "1234.50"})
    expect(page.locator("#pnl-total")).to_have_text("+₹1,234.50", timeout=3000)
    row = page.text_content(".position[data-key='DC-LIVE']")
    assert "+₹1,234.50" in row
    assert watched.violations() == []


def test_browser_every_page_works_under_the_csp(watched, expect, live_server):
    _log_in_by_cookie(watched, live_server)
    page = watched.page
    for _name, path, label in PAGES:
        response = page.goto(live_server.url + path)
        assert response.status == 200, path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        expect(page.locator("nav a.on")).to_have_text(label)
        expect(page.locator("#engine-text")).not_to_have_text("engine")  # app.js ran
        page.wait_for_load_state("networkidle")
    page.goto(live_server.url + "/docs")
    expect(page.locator("#ops .op").first).to_be_visible()
    assert watched.violations() == []
    assert watched.console == [], watched.console


def test_browser_login_page_shows_chat_code_delivered(watched, expect, live_server, chat,
                                                      notifier):
    notifier([TelegramChannel(chat.url, "1:T", "42")])
    page = watched.page
    page.goto(live_server.url + "/login")
    page.click("#send-code")
    expect(page.locator("#login-error")).to_have_text(
        "Code delivered via telegram; valid 5 minutes.", timeout=10000)
    code = chat.requests[0][1]["text"].split(": ")[1][:6]
    page.fill("#code", code)
    page.wait_for_url(live_server.url + "/")
    assert watched.violations() == []


def test_browser_login_page_shows_chat_code_delivery_failure(watched, expect, live_server,
                                                             chat, notifier):
    chat.status = 500
    notifier([TelegramChannel(chat.url, "1:T", "42")])
    page = watched.page
    page.goto(live_server.url + "/login")
    page.click("#send-code")
    message = page.locator("#login-error")
    expect(message).to_contain_text("Delivery failed: telegram: telegram refused the message: "
                                    "HTTP 500", timeout=10000)
    expect(message).to_have_class("err")
    assert "1:T" not in message.text_content()
    assert watched.violations() == []
