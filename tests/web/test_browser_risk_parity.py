"""Headless Chromium (the app's CSP) on the Risk page's reconciliation card and kill-switch
button, and on the Backtests page's daily parity card with one day's diff."""

from __future__ import annotations

from datetime import date

from psycopg.types.json import Jsonb

from tests.web.test_browser import (  # noqa: F401
    _log_in_by_cookie,
    browser,
    expect,
    pytestmark,
    watched,
)
from tests.web.test_reconciliation_api import _seed as seed_reconciliation


def test_browser_risk_reconciliation_card_and_kill_switch(watched, expect, live_server,  # noqa: F811
                                                          pool) -> None:
    seed_reconciliation(pool)
    _log_in_by_cookie(watched, live_server)
    page = watched.page
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live_server.url + "/risk")
    expect(page.locator("#recon-state")).to_contain_text("books and broker reconciled")
    expect(page.locator("#recon-state")).to_contain_text("1 finding(s), 1 heal(s), 0 adoption(s)")
    expect(page.locator("#recon-state")).to_contain_text("04 Feb 2025")
    row = page.locator("#recon-counts tr", has_text="confirmed flat removal")
    expect(row).to_contain_text("2")
    expect(page.locator("#recon-counts")).not_to_contain_text("orphan adoption")  # 3 days old

    page.fill("#reason", "results at 2 pm")
    page.once("dialog", lambda d: d.dismiss())  # the operator changes their mind: nothing sent
    page.click("#killswitch")
    page.once("dialog", lambda d: d.accept())
    page.click("#killswitch")
    expect(page.locator("#commands")).to_contain_text("kill switch", timeout=5000)
    with pool.connection() as conn:
        sent = conn.execute("SELECT kind, payload FROM engine_commands").fetchall()
    assert sent == [{"kind": "kill_switch",
                     "payload": {"reason": "results at 2 pm", "confirm": True}}]


def test_browser_backtests_parity_card_and_day_details(watched, expect, live_server,  # noqa: F811
                                                       pool) -> None:
    day = date(2025, 2, 4)
    report = {"status": "differs", "trade_date": day.isoformat(), "live_trades": 1,
              "backtest_trades": 1, "notes": [],
              "flags": ["DC-1 entry SELL 75 of 4711: filled 119.50, modelled 120.50 "
                        "(+1.00 ₹/unit, +75.00 ₹)"],
              "matched": [{"live_tag": "DC-1", "backtest_tag": "DC-20250204-1", "strategy": "DC",
                           "entry_delay_s": 0, "exit_delay_s": 60, "exit_reason": "target",
                           "backtest_exit_reason": "target", "legs": [], "charges": "110.00",
                           "backtest_charges": "108.17", "charges_diff": "1.83",
                           "pnl": "12345.50", "backtest_pnl": "12420.50",
                           "pnl_diff": "-75.00"}],
              "live_only": [], "backtest_only": []}
    summary = {"status": "differs", "text": "Parity 2025-02-04 (DC): DIFFERS", "matched": 1,
               "flags": 1, "totals": {"entry_slippage": "75.00", "exit_slippage": "0.00",
                                      "charges": "1.83", "pnl": "-123456.78"}}
    with pool.connection() as conn:
        conn.execute("INSERT INTO parity_reports (trade_date, strategies, status, summary, report)"
                     " VALUES (%s, %s, 'differs', %s, %s)",
                     (day, ["DC"], Jsonb(summary), Jsonb(report)))
    _log_in_by_cookie(watched, live_server)
    page = watched.page
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live_server.url + "/backtests")
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=10000)
    row = page.locator("#parity tr", has_text="04 Feb 2025")
    expect(row).to_contain_text("differs")
    expect(row).to_contain_text("₹75.00")
    expect(row).to_contain_text("-₹1,23,456.78")  # Indian grouping
    row.locator("button").click()
    expect(page.locator("#parity-flags")).to_contain_text("filled 119.50, modelled 120.50")
    expect(page.locator("#parity-matched")).to_contain_text("DC-20250204-1")
    expect(page.locator("#parity-title")).to_contain_text("1 live / 1 backtest trades, 1 matched")
