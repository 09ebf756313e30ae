"""Builders of legacy data in the old bot's shapes (SQLite file, JSON tree) for the tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

LEGACY_DDL = """
CREATE TABLE open_trades (id INTEGER PRIMARY KEY, tag TEXT UNIQUE, strategy TEXT, mode TEXT,
    entry_time TEXT, entry_price REAL, qty INTEGER, legs_json TEXT, payload_json TEXT);
CREATE TABLE metrics_days (date TEXT PRIMARY KEY, realized_pnl REAL, charges REAL,
    trades_opened INTEGER, trades_closed INTEGER, wins INTEGER, losses INTEGER,
    funnel_json TEXT, session_stats_json TEXT);
CREATE TABLE executions (id INTEGER PRIMARY KEY, date TEXT, time TEXT, tag TEXT, strategy TEXT,
    mode TEXT, action TEXT, security_id TEXT, side TEXT, qty INTEGER, price REAL,
    order_id TEXT);
CREATE TABLE closed_trades (id INTEGER PRIMARY KEY, date TEXT, tag TEXT, strategy TEXT,
    mode TEXT, entry_time TEXT, exit_time TEXT, entry_price REAL, exit_price REAL,
    qty INTEGER, pnl REAL, charges REAL, reason TEXT, payload_json TEXT);
CREATE TABLE go_live_state (strategy TEXT PRIMARY KEY, state TEXT, updated_by TEXT,
    updated_at TEXT);
CREATE TABLE runtime_state (key TEXT PRIMARY KEY, value_json TEXT, updated_at TEXT);
CREATE TABLE risk_envelope_state (id INTEGER PRIMARY KEY, daily_pnl REAL, lifetime_pnl REAL,
    loss_streak INTEGER, last_close_date TEXT, updated_at TEXT);
CREATE TABLE iv_snapshots (id INTEGER PRIMARY KEY, created_at TEXT, date TEXT, spot REAL,
    near_atm_iv REAL, payload_json TEXT, smile_json TEXT);
CREATE TABLE settings_audit (id INTEGER PRIMARY KEY, key TEXT, old_value TEXT, new_value TEXT,
    updated_by TEXT, updated_at TEXT);
CREATE TABLE scanner_history (id INTEGER PRIMARY KEY, note TEXT);
"""


def build_legacy_sqlite(path: Path, *, duplicate_close: bool = True) -> Path:
    """A small legacy database with explicit ids (ids deliberately start high)."""
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_DDL)
    conn.execute("INSERT INTO open_trades VALUES (41, 'DC-0601-1', 'DC', 'dry_run', "
                 "'2026-06-01 09:31:00', 112.5, 75, '[{\"sid\": \"43120\"}]', '{\"note\": 1}')")
    conn.execute("INSERT INTO metrics_days VALUES ('2026-06-01', 1520.5, 80.25, 3, 2, 1, 1, "
                 "'{\"scans\": 120}', '{\"cycles\": 240}')")
    conn.executemany(
        "INSERT INTO executions VALUES (?, '2026-06-01', ?, ?, 'DC', 'paper', ?, '43120', ?, 75,"
        " ?, NULL)",
        [(101, "2026-06-01T09:31:00+05:30", "DC-0601-1", "OPEN", "SELL", 112.5),
         (102, "2026-06-01T14:05:00+05:30", "DC-0601-1", "CLOSE", "BUY", 80.0)])
    closes = [
        (201, "2026-06-01", "DC-0601-1", "2026-06-01 09:31:00", "2026-06-01 14:05:00", 2437.5),
        (202, "2026-06-01", "IC-0601-1", "2026-06-01 10:02:00", "2026-06-01 15:10:00", -917.5),
        # same tag on another day: a different trade, not a duplicate
        (203, "2026-06-02", "DC-0601-1", "2026-06-02 09:40:00", "2026-06-02 13:00:00", 300.0),
    ]
    if duplicate_close:  # the historical double-record of a close (later id)
        closes.append((204, "2026-06-01", "DC-0601-1", "2026-06-01 09:31:00",
                       "2026-06-01 14:05:02", 2437.5))
    conn.executemany(
        "INSERT INTO closed_trades VALUES (?, ?, ?, 'DC', 'paper', ?, ?, 112.5, 80.0, 75, ?, "
        "40.0, 'TARGET', '{\"legs\": 2}')", closes)
    conn.execute("INSERT INTO go_live_state VALUES ('DC', 'SHADOW', 'telegram:ops', "
                 "'2026-05-30 10:00:00')")
    conn.execute("INSERT INTO runtime_state VALUES ('dhan_token', "
                 "'{\"expires_at\": \"2026-06-02T08:00:00+05:30\", \"source\": \"totp\"}', "
                 "'2026-06-01 08:00:00')")
    conn.execute("INSERT INTO risk_envelope_state VALUES (1, 1520.5, 20450.75, 2, "
                 "'2026-06-01', '2026-06-01 15:31:00')")
    conn.executemany(
        "INSERT INTO iv_snapshots VALUES (?, ?, '2026-06-01', 24510.35, 13.25, ?, ?)",
        [(900 + i, f"2026-06-01T09:{20 + i:02d}:00+05:30", '{"term_structure": {"near": 13.2}}',
          '[{"strike": 24500}]') for i in range(5)])
    conn.execute("INSERT INTO settings_audit VALUES (7, 'DC_PROFIT_TARGET_PCT', NULL, '0.28', "
                 "'dashboard', '2026-05-29 11:00:00')")
    conn.execute("INSERT INTO scanner_history VALUES (1, 'obsolete')")
    conn.commit()
    conn.close()
    return path


def build_legacy_json(root: Path) -> Path:
    """The old bot's JSON records (layout documented in engine.migrate_data.json_source)."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "open_trades.json": {
            "MDC-0603-1": {"strategy": "MDC", "mode": "shadow",
                           "entry_time": "2026-06-03T09:45:00+05:30", "entry_price": 95.25,
                           "quantity": 150, "legs": [{"sid": "43200", "side": "SELL"}]},
        },
        "metrics.json": {"days": {
            "2026-06-03": {
                "realized_pnl": 640.0, "charges": 55.5, "trades_opened": 2, "trades_closed": 1,
                "wins": 1, "losses": 0, "funnel": {"scans": 90, "eligible": 4},
                "session_stats": {"cycles": 180}, "peak_pnl": 910.0,
                "executions": [
                    {"time": "2026-06-03T09:45:00+05:30", "tag": "IC-0603-1", "strategy": "IC",
                     "mode": "paper", "action": "open", "security_id": "43300", "side": "sell",
                     "qty": 75, "price": 60.1},
                    {"time": "2026-06-03T13:15:00+05:30", "tag": "IC-0603-1", "strategy": "IC",
                     "mode": "paper", "action": "close", "security_id": "43300", "side": "buy",
                     "qty": 75, "price": 51.55},
                ],
                "closed_trades": [
                    {"tag": "IC-0603-1", "strategy": "IC", "mode": "paper",
                     "entry_time": "2026-06-03T09:45:00+05:30",
                     "exit_time": "2026-06-03T13:15:00+05:30", "entry_price": 60.1,
                     "exit_price": 51.55, "quantity": 75, "pnl": 585.75, "charges": 55.5,
                     "reason": "TARGET", "mfe": 700.0},
                ],
            },
        }},
        "go_live_state.json": {"strategies": {"IC": "dry_run",
                                              "MDC": {"stage": "shadow",
                                                      "updated_at": "2026-06-02T18:00:00+05:30"}}},
        "runtime_state.json": {"strategy_slots": {"dc_family": {"used": 1, "limit": 2}}},
        "risk_envelope_state.json": {"daily_pnl": 640.0, "lifetime_pnl": 12000.0,
                                     "loss_streak": 0, "last_close_date": "2026-06-03"},
        "bot_settings.json": {"DC_PROFIT_TARGET_PCT": "0.28"},
        "nse_holidays.json": [{"date": "2026-08-15", "description": "Independence Day"}],
    }
    for name, body in files.items():
        (root / name).write_text(json.dumps(body), encoding="utf-8")
    return root
