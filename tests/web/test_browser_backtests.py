"""Headless Chromium on the Backtests and Strategies pages (seeded database, the app's CSP):
a bad parameter refused next to its field, a run's bar moving through intermediate progress
to formatted results, a failed run in red, two runs compared, the grid heatmap's zero-centred
colours; a risk-paused strategy badged "paused", never "eligible", and a stage change that
stays on its strategy. Screenshots go to the test's tmp dir and /tmp/shots/."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import pyotp
from psycopg.types.json import Jsonb

from engine.timeutil import IST
from tests.web.test_api_strategies import seed_strategies
from tests.web.test_browser import (  # noqa: F401
    _log_in_by_cookie,
    browser,
    expect,
    pytestmark,
    watched,
)

SHOTS = Path("/tmp/shots")
SIM_NOW = datetime(2025, 2, 4, 10, 15, tzinfo=IST)


def _shot(page, tmp_path: Path, name: str) -> None:
    out = tmp_path / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, SHOTS / f"{name}.png")


def _heartbeat(conn) -> None:
    conn.execute("INSERT INTO runtime_state (key, value, updated_at) VALUES ('engine_heartbeat', %s,"
                 " now()) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
                 (Jsonb({"ts": datetime.now(IST).isoformat(), "clock": "simulated",
                         "engine_time": SIM_NOW.isoformat()}),))


def _leg(side: str, strike: int, kind: str, expiry: str, entry: str, exit_: str) -> dict:
    return {"security_id": f"{expiry}{strike}{kind}", "side": side, "quantity": 75, "lot_size": 75,
            "kind": "OPTION", "option_type": kind, "expiry": expiry, "strike": str(strike),
            "entry_price": entry, "entry_source": "close", "exit_price": exit_,
            "exit_source": "close"}


def _result(net: str, win_rate: float, curve: list[str]) -> tuple[dict, list]:
    trades = [{"tag": "DC-20250203-1", "strategy": "DC", "status": "closed", "direction": "debit",
               "entry_day": "2025-02-03", "opened_at": "2025-02-03T15:29:00+05:30",
               "exit_day": "2025-02-05", "closed_at": "2025-02-05T15:29:00+05:30",
               "legs": [_leg("SELL", 23400, "CE", "2025-02-06", "120.50", "80.10"),
                        _leg("BUY", 23400, "CE", "2025-02-13", "190.00", "150.00"),
                        _leg("SELL", 23200, "PE", "2025-02-06", "95.00", "60.00"),
                        _leg("BUY", 23200, "PE", "2025-02-13", "160.00", "120.00")],
               "gross_pnl": "-2000.00", "charges": "108.17", "realized_pnl": "-2108.17",
               "exit_reason": "stop loss: MTM -31% of debit", "exit_kind": "stop loss"}]
    metrics = {"trades": 15, "net_pnl": net, "gross_pnl": "15000.00", "charges": "2345.60",
               "win_rate": win_rate, "avg_win": "3400.00", "avg_loss": "-1500.25",
               "profit_factor": 1.42, "expectancy": "843.36", "final_equity": net,
               "max_drawdown": "4500.00", "max_drawdown_pct": 0.009, "sharpe": 1.23,
               "sortino": 1.8, "calmar": 2.1, "annualized_return": 0.19, "capital": "500000.00",
               "capital_source": "BT_CAPITAL", "sessions": len(curve), "exposure": 0.6,
               "data": "bhavcopy", "fill_model": "close",
               "pnl_by_exit_reason": {"stop loss": {"trades": 5, "net_pnl": "-7501.25"},
                                      "profit target": {"trades": 10, "net_pnl": "20155.65"}},
               "equity_curve": [{"date": f"2025-02-{3 + i:02d}", "equity": e}
                                for i, e in enumerate(curve)]}
    return metrics, trades


def _seed_backtests(pool) -> dict[str, int]:
    with pool.connection() as conn:
        _heartbeat(conn)
        ids = {}
        for name, net, rate, curve in (("a", "12654.40", 0.0667, ["0", "-2108.17", "5000", "12654.40"]),
                                       ("b", "-3200.00", 0.4, ["0", "1000", "-4500", "-3200"])):
            metrics, trades = _result(net, rate, curve)
            ids[name] = conn.execute(
                "INSERT INTO backtest_runs (strategy, start_date, end_date, status, config_snapshot,"
                " metrics_json, trades_json, progress_pct, progress_done, progress_total, started_at,"
                " progress_at, finished_at) VALUES ('DC', '2025-02-03', '2025-02-06', 'complete', %s,"
                " %s, %s, 100, 4, 4, now() - interval '30 s', now(), now()) RETURNING run_id",
                (Jsonb({"BT_DATA": "bhavcopy", "BT_FILL_MODEL": "close",
                        "DC_PROFIT_TARGET_PCT": "0.28" if name == "a" else "0.15"}),
                 Jsonb(metrics), Jsonb(trades))).fetchone()["run_id"]
        ids["failed"] = conn.execute(
            "INSERT INTO backtest_runs (strategy, start_date, end_date, status, config_snapshot,"
            " progress_pct, progress_done, progress_total, started_at, progress_at, finished_at,"
            " error_text) VALUES ('IC', '2025-02-03', '2025-02-28', 'error', '{}', 26.32, 5, 19,"
            " now() - interval '9 s', now(), now(), 'BrokenProcessPool: worker died')"
            " RETURNING run_id").fetchone()["run_id"]
        ids["running"] = conn.execute(
            "INSERT INTO backtest_runs (strategy, start_date, end_date, status, config_snapshot,"
            " progress_pct, progress_done, progress_total, started_at, progress_at) VALUES"
            " ('DC', '2025-02-03', '2025-02-28', 'running', %s, 36.84, 7, 19,"
            " now() - interval '7 s', now()) RETURNING run_id",
            (Jsonb({"BT_DATA": "bhavcopy", "BT_FILL_MODEL": "close", "DC_LOTS": "2"}),)
        ).fetchone()["run_id"]
        results = [{"params": {"DC_STRIKE_OFFSET_SD": x, "DC_STOP_LOSS_PCT": y}, "rank": None,
                    "metrics": {"trades": 9, "net_pnl": v, "sharpe": 0.1, "win_rate": 0.5}}
                   for (x, y), v in {("0.5", "0.2"): "-5000.00", ("1.0", "0.2"): "-100.00",
                                     ("0.5", "0.3"): "2000.00", ("1.0", "0.3"): "800.00"}.items()]
        ids["job"] = conn.execute(
            "INSERT INTO backtest_grid_jobs (strategy, start_date, end_date, status, param_space,"
            " results_json, progress_pct, progress_done, progress_total, started_at, finished_at)"
            " VALUES ('DC', '2025-02-03', '2025-02-28', 'complete', %s, %s, 100, 4, 4, now(), now())"
            " RETURNING job_id",
            (Jsonb({"DC_STRIKE_OFFSET_SD": ["0.5", "1.0"], "DC_STOP_LOSS_PCT": ["0.2", "0.3"],
                    "summary": {"tried": 4, "ranked": 0}}), Jsonb(results))).fetchone()["job_id"]
    return ids


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(x) for x in re.findall(r"[\d.]+", css)[:3])


def test_browser_backtests_progress_results_errors_heatmap(watched, expect, live_server, pool,  # noqa: F811
                                                           totp_secret, tmp_path) -> None:
    ids = _seed_backtests(pool)
    page = watched.page
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live_server.url + "/backtests")
    page.wait_for_url("**/login?next=/backtests")
    page.fill("#code", pyotp.TOTP(totp_secret).now())
    page.wait_for_url(live_server.url + "/backtests")
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=10000)
    # default dates follow the engine's (simulated) clock, not the browser's
    assert page.input_value("#bt-start") == "2024-12-06" and page.input_value("#bt-end") == "2025-02-03"

    # a running run: its bar shows done/total, then moves as the worker writes progress
    running = page.locator(f"#runs tr[data-key='{ids['running']}'] .bt-progress")
    expect(running).to_have_attribute("data-pct", "36.84")
    expect(running).to_contain_text("7/19 sessions · ETA")
    with pool.connection() as conn:
        conn.execute("UPDATE backtest_runs SET progress_done = 12, progress_pct = 63.16,"
                     " progress_at = now() WHERE run_id = %s", (ids["running"],))
    expect(running).to_contain_text("12/19 sessions", timeout=5000)
    expect(running).to_have_attribute("data-pct", "63.16")
    # a failed run stops red where it stopped, not a full bar
    failed = page.locator(f"#runs tr[data-key='{ids['failed']}'] .bt-progress")
    expect(failed).to_have_attribute("data-status", "error")
    expect(failed).to_have_attribute("data-pct", "26.32")
    expect(failed).to_contain_text("failed at 5/19 sessions")
    # each run lists its parameters
    expect(page.locator(f"#runs tr[data-key='{ids['a']}']")).to_contain_text("DC_PROFIT_TARGET_PCT=0.28")

    # the run's results, formatted: win rate in %, rupees with Indian grouping, dates in IST
    page.click(f"#runs a[href='#run-{ids['a']}']")
    expect(page.locator("#run-metrics td[data-metric='win_rate']")).to_have_text("6.7%")
    expect(page.locator("#run-metrics td[data-metric='net_pnl']")).to_have_text("+₹12,654.40")
    expect(page.locator("#run-metrics td[data-metric='capital']")).to_have_text("₹5,00,000.00")
    expect(page.locator("#run-equity .uplot")).to_have_count(1)
    expect(page.locator("#run-dd .uplot")).to_have_count(1)
    expect(page.locator("#run-reasons")).to_contain_text("-₹7,501.25")
    trade = page.locator("#run-trades tr.bt-trade").first
    expect(trade).to_contain_text("03 Feb 2025 15:29 IST")
    expect(trade).to_contain_text("-₹2,108.17")
    trade.click()
    legs = page.locator("#run-trades tr.bt-legs").first
    expect(legs).to_contain_text("NIFTY 06 FEB 23400 CE")
    expect(legs).to_contain_text("NIFTY 13 FEB 23200 PE")
    expect(legs.locator("tbody tr")).to_have_count(4)

    # compare two runs: metrics side by side, both equity curves on one chart
    page.check(f"#runs tr[data-key='{ids['a']}'] input[type=checkbox]")
    page.check(f"#runs tr[data-key='{ids['b']}'] input[type=checkbox]")
    page.click("#cmp-btn")
    expect(page.locator("#cmp-metrics td[data-metric='net_pnl']")).to_have_text(["+₹12,654.40", "-₹3,200.00"])
    expect(page.locator("#cmp-equity[data-drawn='2'] .uplot")).to_have_count(1)

    # the heatmap's scale is centred at zero: the least-bad loss is red, not green
    page.click(f"#jobs a[href='#job-{ids['job']}']")
    page.select_option("#heat-x", "DC_STRIKE_OFFSET_SD")
    page.select_option("#heat-y", "DC_STOP_LOSS_PCT")
    colour = {v: _rgb(page.locator(f"#heat td[data-value='{v}']").evaluate(
        "e => getComputedStyle(e).backgroundColor")) for v in ("-5000", "-100", "2000", "800")}
    for v in ("-5000", "-100"):
        r, g, _b = colour[v]
        assert r > g + 50, f"loss {v} should be red-ish, got {colour[v]}"
    for v in ("2000", "800"):
        r, g, _b = colour[v]
        assert g > r + 50, f"gain {v} should be green-ish, got {colour[v]}"

    # a bad parameter is refused at submit, next to its field (checked in the page) ...
    page.fill("#p-DC_LOTS", "lots")
    page.click("#run-btn")
    err = page.locator(".bt-param .field-err[data-for='params.DC_LOTS']")
    expect(err).to_contain_text("expected an integer")
    expect(page.locator("#p-DC_LOTS")).to_have_class(re.compile(r"\binvalid\b"))
    # ... and what only the API knows (no trading day on a weekend), next to "end"
    page.fill("#p-DC_LOTS", "")
    page.fill("#bt-start", "2025-02-08")
    page.fill("#bt-end", "2025-02-09")
    page.click("#run-btn")
    expect(page.locator(".field-err[data-for='end']")).to_contain_text("no trading day")
    with pool.connection() as conn:
        queued = conn.execute("SELECT count(*) AS n FROM backtest_runs").fetchone()["n"]
    assert queued == 4, "refused submissions must not queue runs"

    # the running run completes: its bar goes to 100 % and the results appear
    with pool.connection() as conn:
        metrics, trades = _result("900.00", 0.5, ["0", "900"])
        conn.execute("UPDATE backtest_runs SET status = 'complete', progress_done = 19,"
                     " progress_pct = 100, metrics_json = %s, trades_json = %s, finished_at = now()"
                     " WHERE run_id = %s", (Jsonb(metrics), Jsonb(trades), ids["running"]))
    expect(running).to_have_attribute("data-status", "complete", timeout=5000)
    expect(running).to_have_attribute("data-pct", "100")
    page.click(f"#runs a[href='#run-{ids['running']}']")
    expect(page.locator("#run-metrics td[data-metric='win_rate']")).to_have_text("50.0%")
    page.locator("#run-card").scroll_into_view_if_needed()
    _shot(page, tmp_path, "backtests")
    assert watched.violations() == []
    # the one refused POST (the weekend range) is logged by Chromium as a failed resource;
    # nothing else may reach the console
    refused = "error: Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    assert watched.console == [refused], watched.console


def test_browser_strategies_paused_badge_and_stage_form(watched, expect, live_server, pool,  # noqa: F811
                                                        tmp_path) -> None:
    seed_strategies(pool)
    _log_in_by_cookie(watched, live_server)
    page = watched.page
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live_server.url + "/strategies")
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=10000)
    dc = page.locator("article.st-card[data-strategy='DC']")
    # the last cycle found DC eligible, but its stage is risk-paused: "paused", never "eligible"
    expect(dc.locator("[data-role=status]")).to_have_text("paused")
    expect(dc.locator(".st-why")).to_contain_text("paper stage paused: daily loss cap hit")
    assert "eligible" not in dc.locator("header").text_content()
    expect(dc.locator(".st-today")).to_contain_text("-₹1,100.50")
    expect(page.locator("article.st-card[data-strategy='CAL_ARB'] [data-role=status]")).to_have_text("disabled")
    ic = page.locator("article.st-card[data-strategy='IC']")
    expect(ic.locator(".st-today")).to_contain_text("+₹250.25")
    expect(page.locator("#st-at")).to_contain_text("04 Feb 2025 10:15 IST")
    # a stage change on IC stays on IC (the form never jumps to another strategy)
    ic.locator("[data-role=stage-select]").select_option("live")
    ic.locator("input[type=checkbox]").check()
    ic.locator("button[type=submit]").click()
    expect(ic.locator(".st-pending")).to_contain_text("IC → live: queued")
    with pool.connection() as conn:
        cmd = conn.execute("SELECT payload FROM engine_commands WHERE kind = 'set_go_live_stage'"
                           " ORDER BY id DESC LIMIT 1").fetchone()
    assert cmd["payload"]["strategy"] == "IC" and cmd["payload"]["stage"] == "live"
    page.evaluate("() => new Promise(r => setTimeout(r, 300))")
    assert ic.locator("[data-role=stage-select]").input_value() == "live"
    assert dc.locator("[data-role=stage-select]").input_value() == "paper"
    expect(page.locator("#battle tbody tr")).to_have_count(1)
    _shot(page, tmp_path, "strategies")
    assert watched.violations() == []
    assert watched.console == [], watched.console

