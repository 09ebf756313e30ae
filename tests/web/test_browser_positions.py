"""Headless Chromium on a seeded database (a simulated engine at 04 Feb 2025 10:15:30 IST
holding a four-leg iron condor): ₹ with Indian grouping, the header clock on the ENGINE's
clock, a position expanding to its legs with greeks and a drawn payoff chart, the live feed
in sentences with MTM in place, and the 390 px mobile layout without horizontal overflow.
Screenshots go to the test's tmp dir and /tmp/shots for review."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

from engine.bus import publish_event
from tests.web.test_browser import _log_in_by_cookie, browser, expect, pytestmark, watched  # noqa: F401
from tests.web.test_positions_api import BIG_PNL, ENGINE_TIME, seed_four_leg

SHOTS = Path("/tmp/shots")
LAKH = re.compile(r"₹\d{1,2}(,\d{2})*,\d{3}\.\d{2}")


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / f"{name}.png")


def _no_horizontal_overflow(page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"page is {width[0]} px wide in a {width[1]} px viewport"


def test_browser_positions_overview_engine_clock_and_mobile(watched, expect, live_server, pool,  # noqa: F811
                                                            tmp_path):
    seed_four_leg(pool)
    _log_in_by_cookie(watched, live_server)
    page = watched.page
    page.set_viewport_size({"width": 1440, "height": 900})

    # Overview: ₹ with Indian grouping on a value over a lakh, the engine's clock in the header
    page.goto(live_server.url + "/")
    realized = page.locator("#pnl-realized")
    expect(realized).to_have_text("+₹1,23,456.78")
    assert LAKH.search(realized.text_content()) and BIG_PNL == "123456.78"
    clock = page.locator("#clock")
    expect(clock).to_have_text(re.compile(r"^04 Feb 2025 10:1[56]:\d\d IST · SIM$"))
    shown = datetime.fromisoformat(clock.get_attribute("data-engine-time").replace("Z", "+00:00"))
    assert abs((shown - ENGINE_TIME).total_seconds()) < 60  # the engine's clock, not the wall's
    expect(page.locator(".position[data-key='IC-0204-1'] .mtm")).to_have_text("MTM +₹2,410.50")
    expect(page.locator(".position[data-key='IC-0204-1'] .pos-head .close-btn")).to_contain_text("Close ≈ +₹")
    expect(page.locator("#ws-text")).to_have_text("live")
    # the feed speaks sentences; an MTM tick updates the row in place instead of a feed line
    publish_event(pool, "position_closed", {"tag": "DC-0204-2", "strategy": "DC", "reason": "profit target",
                                            "realized_pnl": "1596.02", "trade_id": 7})
    publish_event(pool, "mtm", {"tag": "IC-0204-1", "mtm": "2500.00"})
    expect(page.locator("#feed .line.position_closed")).to_contain_text(
        "Closed DC-0204-2 (DC): +₹1,596.02 — profit target.")
    expect(page.locator(".position[data-key='IC-0204-1'] .mtm")).to_have_text("MTM +₹2,500.00")
    assert page.locator("#feed .line.mtm").count() == 0
    expect(page.locator("#equity")).to_have_attribute("data-drawn", "1")
    _shot(page, tmp_path, "overview")

    # Positions: four legs with greeks, exit rules and a drawn payoff chart
    page.goto(live_server.url + "/positions")
    page.click(".position[data-key='IC-0204-1'] .pos-head .tag")
    detail = page.locator("[data-detail='IC-0204-1']")
    legs = detail.locator("table.legs tbody tr.leg")
    expect(legs).to_have_count(4)
    expect(legs.nth(0)).to_contain_text("NIFTY 06 FEB 23700 CE")
    expect(legs.nth(0)).to_contain_text("₹62.40 received")
    expect(detail.locator("tr.total")).to_contain_text("Trade greeks")
    assert all(legs.nth(i).locator("td").count() == 11 for i in range(4))
    expect(detail.locator(".payoff")).to_have_attribute("data-drawn", "2")
    assert detail.locator(".payoff canvas").count() >= 1
    expect(detail.locator("ul.exits")).to_contain_text("profit target")
    expect(detail.locator(".close-box")).to_contain_text("exit charges")
    _shot(page, tmp_path, "positions")

    # 390 px: Overview and Positions usable, no horizontal overflow, close reachable
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server.url + "/positions")
    expect(page.locator("[data-detail='IC-0204-1'] .payoff")).to_have_attribute("data-drawn", "2")
    _no_horizontal_overflow(page)
    assert page.locator(".position[data-key='IC-0204-1'] .pos-head .close-btn").is_visible()
    _shot(page, tmp_path, "positions-mobile")
    page.goto(live_server.url + "/")
    expect(page.locator(".position[data-key='IC-0204-1'] .mtm")).to_have_text("MTM +₹2,410.50")
    _no_horizontal_overflow(page)
    _shot(page, tmp_path, "overview-mobile")

    # my other pages load clean, with the engine's dates as defaults
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live_server.url + "/trades")
    expect(page.locator("#to")).to_have_value("2025-02-04")
    expect(page.locator("#trades")).to_contain_text("₹86.55 debit")
    expect(page.locator("#trades")).to_contain_text("₹71.90 credit")
    expect(page.locator("#trades")).to_contain_text("+₹1,23,456.78")
    page.goto(live_server.url + "/events")
    expect(page.locator(".cal .d.today")).to_have_attribute("data-date", "2025-02-04")
    for path in ("/risk", "/settings", "/logs"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
    assert watched.violations() == []
    assert watched.console == [], watched.console
