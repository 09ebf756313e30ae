"""/api/strategies: stage, today's P&L and trades at the engine's (simulated) clock, the one
why-blocked answer, the latest battle-log row per strategy, and one consistent badge."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb

from engine.events.why import why_blocked
from engine.timeutil import IST

SIM_NOW = datetime(2025, 2, 4, 10, 15, tzinfo=IST)


def seed_strategies(pool) -> None:
    """A simulated 4 Feb 2025 10:15: the paper stage paused by a loss cap, IC in shadow,
    CAL_ARB disabled, a battle-log cycle that found DC and IC eligible."""
    with pool.connection() as conn:
        conn.execute("INSERT INTO runtime_state (key, value, updated_at) VALUES"
                     " ('engine_heartbeat', %s, now()) ON CONFLICT (key) DO UPDATE SET"
                     " value = excluded.value, updated_at = now()",
                     (Jsonb({"ts": datetime.now(IST).isoformat(), "clock": "simulated",
                             "engine_time": SIM_NOW.isoformat()}),))
        for name, stage in (("DC", "paper"), ("MDC", "paper"), ("IC", "shadow"),
                            ("CAL_ARB", "disabled")):
            conn.execute("INSERT INTO go_live_state (strategy, stage) VALUES (%s, %s)"
                         " ON CONFLICT (strategy) DO UPDATE SET stage = excluded.stage",
                         (name, stage))
        conn.execute("UPDATE risk_envelope_stages SET pause_reason = 'daily loss cap hit'"
                     " WHERE stage = 'paper'")
        conn.execute("INSERT INTO strategy_battle_log (created_at, trade_date, spot, iv,"
                     " selected_strategy, eligibility, rejections) VALUES"
                     " (%s, %s, 23400.5, 13.2, NULL, %s, %s)",
                     (SIM_NOW.replace(minute=14), SIM_NOW.date(),
                      Jsonb({"DC": True, "MDC": False, "IC": True}),
                      Jsonb({"MDC": ["edge 1.2% below MDC_MIN_EDGE_PCT 2%"]})))
        for tag, pnl in (("DC-A", "-1500.50"), ("DC-B", "400.00")):
            conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                         " closed_at, gross_pnl, charges, realized_pnl, exit_reason) VALUES"
                         " (%s, %s, 'DC', 'paper', %s, %s, %s, 0, %s, 'stop loss')",
                         (SIM_NOW.date(), tag, SIM_NOW, SIM_NOW, pnl, pnl))
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " quantity, payload) VALUES ('IC-1', 'IC', 'shadow', %s, %s, 75, %s)",
                     (SIM_NOW.date(), SIM_NOW, Jsonb({"mtm": "250.25"})))


@pytest.fixture
def seeded(pool):
    seed_strategies(pool)
    return pool


def test_strategies_page_data_at_the_engine_clock(api, seeded) -> None:
    body = api.get("/api/strategies").get_json()
    assert body["date"] == "2025-02-04" and body["now"].startswith("2025-02-04T10:15")
    by = {s["strategy"]: s for s in body["strategies"]}
    assert list(by) == ["CAL_ARB", "DC", "MDC", "IC"]  # the registry's order
    dc, mdc, ic, arb = by["DC"], by["MDC"], by["IC"], by["CAL_ARB"]
    # the last cycle found DC eligible, but the paper stage is paused: paused, never eligible
    assert dc["battle"]["eligible"] is True and dc["status"] == "paused"
    assert "paper stage paused: daily loss cap hit" in dc["why"]["reasons"]
    assert mdc["status"] == "paused"
    assert mdc["battle"]["reasons"] == ["edge 1.2% below MDC_MIN_EDGE_PCT 2%"]
    assert arb["status"] == "disabled" and arb["stage"] == "disabled"
    assert ic["stage"] == "shadow" and ic["status"] in ("eligible", "blocked")
    if ic["status"] == "blocked":  # only the event guard / slots may block it
        assert ic["why"]["reasons"] and not ic["why"]["risk"]["stage_pause"]
    # the same answer as the one why-blocked function at the engine's clock
    assert dc["why"] == why_blocked(seeded, "DC", SIM_NOW) | {"now": dc["why"]["now"]}
    assert Decimal(str(dc["today"]["realized"])) == Decimal("-1100.50")
    assert dc["today"]["closed"] == 2 and dc["today"]["wins"] == 1 and dc["today"]["losses"] == 1
    assert Decimal(str(ic["today"]["unrealized"])) == Decimal("250.25")
    assert ic["today"]["open"] == 1 and ic["today"]["open_tags"] == ["IC-1"]
    assert Decimal(str(ic["today"]["total"])) == Decimal("250.25")


def test_backtest_form_lists_parameters_from_the_registry(api) -> None:
    body = api.get("/api/backtest/strategies").get_json()
    dc = next(s for s in body["strategies"] if s["name"] == "DC")
    lots = next(p for p in dc["params"] if p["key"] == "DC_LOTS")
    assert lots["type"] == "int" and lots["default"] == "1" and lots["minimum"] is not None
    assert not any(p["key"].endswith("_ENABLED") for p in dc["params"])
    assert dc["eod_backtest"] is True and "DC_STRIKE_OFFSET_SD" in dc["grid_space"]
    arb = next(s for s in body["strategies"] if s["name"] == "CAL_ARB")
    assert arb["eod_backtest"] is False
    assert {p["key"] for p in body["run_settings"]} >= {"BT_CAPITAL", "PAPER_SLIPPAGE_TICKS"}
