"""Every seed table exists and its rules are enforced by the database itself."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import Jsonb

from engine.timeutil import IST

SEED_TABLES = ["open_trades", "metrics_days", "executions", "closed_trades", "go_live_state", "runtime_state", "risk_envelope_state", "ai_market_analysis", "ai_market_trades", "ai_predictions", "ai_exit_advisories", "ai_market_sentiment", "nse_holidays", "market_events", "reconciliation_audit", "strategy_battle_log", "iv_snapshots", "trade_journal", "calendar_spread_history", "futures_id_cache", "bot_settings", "settings_audit", "bhavcopy_ohlc", "backtest_runs", "backtest_grid_jobs", "schema_migrations"]

NOW = datetime(2025, 2, 3, 10, 0, tzinfo=IST)


def test_schema_every_seed_table_exists(pool) -> None:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='public'").fetchall()
    present = {r["table_name"] for r in rows}
    assert set(SEED_TABLES) <= present, set(SEED_TABLES) - present


def _close(conn, tag: str, pnl: str) -> None:
    conn.execute(
        "INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at, closed_at,"
        " gross_pnl, charges, realized_pnl, exit_reason) VALUES"
        " (%s, %s, 'DC', 'paper', %s, %s, %s, 0, %s, 'target')",
        (date(2025, 2, 3), tag, NOW, NOW, Decimal(pnl), Decimal(pnl)))


def test_closed_trades_duplicate_same_day_refused_first_kept(pool) -> None:
    with pool.connection() as conn:
        _close(conn, "DC-1", "100.50")
    with pytest.raises(psycopg.errors.UniqueViolation), pool.connection() as conn:
        _close(conn, "DC-1", "999")
    with pool.connection() as conn:
        rows = conn.execute("SELECT realized_pnl FROM closed_trades WHERE tag='DC-1'").fetchall()
    assert [r["realized_pnl"] for r in rows] == [Decimal("100.50")]


@pytest.mark.parametrize("statement", [
    "UPDATE settings_audit SET new_value = 'x'",
    "DELETE FROM settings_audit",
    "TRUNCATE settings_audit",
    "UPDATE reconciliation_audit SET trade_tag = 'x'",
    "DELETE FROM reconciliation_audit",
])
def test_audit_tables_update_delete_refused(pool, statement: str) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO settings_audit (key, old_value, new_value, updated_by)"
                     " VALUES ('DC_LOTS', NULL, '2', 'test')")
        conn.execute("INSERT INTO reconciliation_audit (action, trade_tag, details)"
                     " VALUES ('ORPHAN_ALERT', 'T1', %s)", (Jsonb({"qty": 75}),))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), \
            pool.connection() as conn:
        conn.execute(statement)
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM settings_audit").fetchone()["n"] == 1


def test_backtest_status_outside_lifecycle_refused(pool) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), pool.connection() as conn:
        conn.execute("INSERT INTO backtest_runs (strategy, start_date, end_date, status)"
                     " VALUES ('DC', '2025-02-03', '2025-02-07', 'finished')")
    with pytest.raises(psycopg.errors.CheckViolation), pool.connection() as conn:
        conn.execute("INSERT INTO backtest_grid_jobs (strategy, start_date, end_date, status)"
                     " VALUES ('DC', '2025-02-03', '2025-02-07', 'done')")
    with pool.connection() as conn:
        row = conn.execute("INSERT INTO backtest_runs (strategy, start_date, end_date)"
                           " VALUES ('DC', '2025-02-03', '2025-02-07') RETURNING status").fetchone()
    assert row["status"] == "pending"


def test_risk_envelope_is_a_singleton(pool) -> None:
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM risk_envelope_state").fetchone()["n"] == 1
    with pytest.raises(psycopg.errors.CheckViolation), pool.connection() as conn:
        conn.execute("INSERT INTO risk_envelope_state (id) VALUES (2)")


def test_bhavcopy_ohlc_keyed_by_date_symbol_expiry_type_strike(pool) -> None:
    sql = ("INSERT INTO bhavcopy_ohlc (trade_date, symbol, expiry, option_type, strike, close)"
           " VALUES ('2025-02-03', 'NIFTY', '2025-02-06', 'CE', 23500, %s)"
           " ON CONFLICT (trade_date, symbol, expiry, option_type, strike)"
           " DO UPDATE SET close = EXCLUDED.close")
    with pool.connection() as conn:
        conn.execute(sql, (Decimal("101.5"),))
        conn.execute(sql, (Decimal("102.25"),))
        rows = conn.execute("SELECT close FROM bhavcopy_ohlc").fetchall()
    assert [r["close"] for r in rows] == [Decimal("102.25")]


def test_jsonb_round_trip_keeps_decimal_precision(pool) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO runtime_state (key, value) VALUES ('x', %s)",
                     (Jsonb({"pnl": Decimal("1234.05"), "when": NOW}),))
        value = conn.execute("SELECT value FROM runtime_state WHERE key='x'").fetchone()["value"]
    # Decimals are written as JSON strings (lossless); JSON numbers are read back as Decimal.
    assert Decimal(value["pnl"]) == Decimal("1234.05")
    with pool.connection() as conn:
        raw = conn.execute("SELECT '{\"p\": 0.30000000000000004}'::jsonb AS v").fetchone()["v"]
    assert raw["p"] == Decimal("0.30000000000000004")
