"""Headless Chromium: log in with a TOTP code, see the overview, watch a live P&L update."""

from __future__ import annotations

import os
from datetime import date

import pyotp
import pytest
from psycopg.types.json import Jsonb

from engine.bus import publish_event
from engine.timeutil import now_ist

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent (apt-get install chromium)"),
]


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_browser_login_overview_live_pnl_update(browser, live_server, pool, totp_secret):
    today: date = now_ist().date()
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES ('DC-LIVE', 'DC', 'paper', %s,"
                     " now(), 100, 75, %s)", (today, Jsonb({"mtm": "10.00"})))
    page = browser.new_page()
    page.goto(live_server.url + "/")
    page.wait_for_url("**/login?next=/")
    page.fill("#code", pyotp.TOTP(totp_secret).now())  # 6 digits auto-submit
    page.wait_for_url(live_server.url + "/")
    page.wait_for_selector("tr[data-key='DC-LIVE']")
    assert page.text_content("#pnl-total").strip() == "10.00"
    page.wait_for_function("document.getElementById('ws-text').textContent === 'live'")
    publish_event(pool, "mtm", {"tag": "DC-LIVE", "mtm": "1234.50"})
    page.wait_for_function(
        "document.getElementById('pnl-total').textContent.trim() === '1,234.50'", timeout=3000)
    row = page.text_content("tr[data-key='DC-LIVE']")
    assert "1,234.50" in row
    page.close()
