"""Legacy SQLite/JSON -> PostgreSQL import: idempotence, sequences, dedupe, dry run, CLI."""

from __future__ import annotations

import argparse
import sqlite3
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg.types.json import Jsonb

from engine.migrate_data import (
    LegacyDataError,
    add_cli,
    dedupe_closed_trades,
    import_json,
    import_sqlite,
)
from tests.ops.legacy_fixtures import build_legacy_json, build_legacy_sqlite


def _count(pool, table: str) -> int:
    with pool.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def test_import_sqlite_twice_inserts_once_and_keeps_earliest_close(pool, tmp_path: Path) -> None:
    legacy = build_legacy_sqlite(tmp_path / "arb_bot_records.sqlite3")

    first = import_sqlite(pool, legacy, dry_run=False)
    assert first.tables["closed_trades"].read == 4
    assert first.tables["closed_trades"].inserted == 3
    assert first.tables["closed_trades"].skipped == 1  # the historical duplicate
    assert first.tables["iv_snapshots"].inserted == 5
    assert first.tables["executions"].inserted == 2
    assert any("scanner_history" in n for n in first.notes)

    second = import_sqlite(pool, legacy, dry_run=False)
    assert second.inserted == 0
    assert second.updated == 0
    assert second.skipped == first.inserted + first.updated + first.skipped
    assert _count(pool, "closed_trades") == 3
    assert _count(pool, "iv_snapshots") == 5

    with pool.connection() as conn:
        kept = conn.execute("SELECT id, closed_at FROM closed_trades "
                            "WHERE trade_date = '2026-06-01' AND tag = 'DC-0601-1'").fetchall()
        trade = conn.execute("SELECT * FROM open_trades WHERE id = 41").fetchone()
        day = conn.execute("SELECT * FROM metrics_days").fetchone()
        stage = conn.execute("SELECT stage FROM go_live_state WHERE strategy = 'DC'").fetchone()
        risk = conn.execute("SELECT * FROM risk_envelope_state").fetchone()
    assert [r["id"] for r in kept] == [201]
    assert trade["mode"] == "paper" and trade["quantity"] == 75
    assert trade["entry_price"] == Decimal("112.5")
    assert trade["payload"]["legs"] == [{"sid": "43120"}] and trade["payload"]["note"] == 1
    assert trade["opened_at"].utcoffset().total_seconds() == 5.5 * 3600  # naive = IST
    assert day["trade_date"] == date(2026, 6, 1) and day["funnel"] == {"scans": 120}
    assert stage["stage"] == "shadow"
    assert risk["lifetime_pnl"] == Decimal("20450.75") and risk["loss_streak"] == 2


def test_import_sqlite_explicit_ids_then_new_insert_gets_next_id(pool, tmp_path: Path) -> None:
    legacy = build_legacy_sqlite(tmp_path / "legacy.sqlite3")
    report = import_sqlite(pool, legacy, dry_run=False)
    assert report.sequences["public.iv_snapshots_id_seq"] == 904
    with pool.connection() as conn:
        new_id = conn.execute(
            "INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at, closed_at, "
            "gross_pnl, realized_pnl, exit_reason) VALUES ('2026-06-04', 'NEW-1', 'DC', 'paper', "
            "now(), now(), 1, 1, 'TARGET') RETURNING id").fetchone()["id"]
        snap = conn.execute("INSERT INTO iv_snapshots (created_at, trade_date, spot) "
                            "VALUES (now(), current_date, 1) RETURNING id").fetchone()["id"]
    assert new_id == 204  # MAX(imported id 203) + 1 (204 was the skipped duplicate)
    assert snap == 905


def test_import_sqlite_dry_run_reports_and_rolls_back(pool, tmp_path: Path) -> None:
    legacy = build_legacy_sqlite(tmp_path / "legacy.sqlite3")
    report = import_sqlite(pool, legacy, dry_run=True)
    assert report.dry_run and report.tables["open_trades"].inserted == 1
    assert "DRY RUN" in report.format() and "would advance" in report.format()
    assert _count(pool, "open_trades") == 0
    assert _count(pool, "closed_trades") == 0
    with pool.connection() as conn:
        nxt = conn.execute("INSERT INTO settings_audit (key, new_value, updated_by) "
                           "VALUES ('X', '1', 't') RETURNING id").fetchone()["id"]
    assert nxt < 7  # setval was not applied in the dry run


def test_import_sqlite_bad_row_names_it_and_commits_nothing(pool, tmp_path: Path) -> None:
    legacy = build_legacy_sqlite(tmp_path / "legacy.sqlite3")
    with sqlite3.connect(legacy) as conn:
        conn.execute("UPDATE iv_snapshots SET spot = 'n/a' WHERE id = 902")
    with pytest.raises(LegacyDataError, match=r"iv_snapshots row 902: column 'spot'"):
        import_sqlite(pool, legacy, dry_run=False)
    assert _count(pool, "open_trades") == 0


def test_import_sqlite_state_rows_respect_newer_target(pool, tmp_path: Path) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO go_live_state (strategy, stage, updated_by, updated_at) "
                     "VALUES ('DC', 'live', 'telegram:ops', '2026-06-10T10:00:00+05:30')")
        conn.execute("INSERT INTO runtime_state (key, value, updated_at) VALUES "
                     "('dhan_token', %s, '2026-05-01T00:00:00+05:30')", (Jsonb({"old": 1}),))
    report = import_sqlite(pool, build_legacy_sqlite(tmp_path / "l.sqlite3"), dry_run=False)
    with pool.connection() as conn:
        stage = conn.execute("SELECT stage FROM go_live_state").fetchone()["stage"]
        token = conn.execute("SELECT value FROM runtime_state").fetchone()["value"]
    assert stage == "live"  # operator's newer decision wins over the legacy file
    assert report.tables["go_live_state"].skipped == 1
    assert token["source"] == "totp"  # legacy row is newer than the stale target row
    assert report.tables["runtime_state"].updated == 1
    assert report.tables["risk_envelope_state"].updated == 1  # pristine singleton replaced


def test_import_json_twice_without_duplicates(pool, tmp_path: Path) -> None:
    root = build_legacy_json(tmp_path / "json")
    first = import_json(pool, root, dry_run=False)
    assert first.tables["metrics_days"].inserted == 1
    assert first.tables["executions"].inserted == 2
    assert first.tables["closed_trades"].inserted == 1
    assert first.tables["open_trades"].inserted == 1
    assert first.tables["go_live_state"].inserted == 2
    assert first.tables["nse_holidays"].inserted == 1

    second = import_json(pool, root, dry_run=False)
    assert second.inserted == 0 and second.updated == 0
    assert _count(pool, "executions") == 2
    with pool.connection() as conn:
        close = conn.execute("SELECT * FROM closed_trades").fetchone()
        execs = conn.execute("SELECT action, side FROM executions ORDER BY id").fetchall()
        day = conn.execute("SELECT session_stats FROM metrics_days").fetchone()
        stages = {r["strategy"]: r["stage"] for r in conn.execute(
            "SELECT strategy, stage FROM go_live_state").fetchall()}
        new_id = conn.execute(
            "INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at) VALUES "
            "('N-1', 'DC', 'paper', current_date, now()) RETURNING id").fetchone()["id"]
    assert close["trade_date"] == date(2026, 6, 3)
    assert close["gross_pnl"] == Decimal("641.25")  # realised + charges
    assert close["payload"]["mfe"] == 700.0
    assert [(r["action"], r["side"]) for r in execs] == [("OPEN", "SELL"), ("CLOSE", "BUY")]
    assert day["session_stats"] == {"cycles": 180, "peak_pnl": Decimal("910.0")}
    assert stages == {"IC": "paper", "MDC": "shadow"}
    assert new_id > 1


def test_import_json_bad_shape_is_named(pool, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "metrics.json").write_text('{"day": []}', encoding="utf-8")
    with pytest.raises(LegacyDataError, match=r"metrics\.json"):
        import_json(pool, root, dry_run=False)


def test_dedupe_closed_trades_sqlite_removes_only_true_duplicates(tmp_path: Path) -> None:
    legacy = build_legacy_sqlite(tmp_path / "legacy.sqlite3")
    dry = dedupe_closed_trades(legacy, dry_run=True)
    assert dry.tables["closed_trades"].removed == 1
    with sqlite3.connect(legacy) as conn:
        assert conn.execute("SELECT count(*) FROM closed_trades").fetchone()[0] == 4

    report = dedupe_closed_trades(legacy, dry_run=False)
    assert report.tables["closed_trades"].removed == 1
    with sqlite3.connect(legacy) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM closed_trades ORDER BY id")]
    assert ids == [201, 202, 203]  # later duplicate 204 gone; other day/other tag kept
    assert dedupe_closed_trades(legacy, dry_run=False).tables["closed_trades"].removed == 0


def test_dedupe_closed_trades_postgres_constraint_present_noop(pool) -> None:
    report = dedupe_closed_trades(pool, dry_run=False)
    assert report.tables["closed_trades"].removed == 0
    assert any("enforced" in n for n in report.notes)


def test_dedupe_closed_trades_postgres_without_constraint_repairs(pool) -> None:
    rows = [("2026-06-01", "A"), ("2026-06-01", "A"), ("2026-06-02", "A"), ("2026-06-01", "B")]
    with pool.connection() as conn:
        conn.execute("ALTER TABLE closed_trades DROP CONSTRAINT closed_trades_day_tag_uq")
        for day, tag in rows:
            conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at, "
                         "closed_at, gross_pnl, realized_pnl, exit_reason) VALUES "
                         "(%s, %s, 'DC', 'paper', now(), now(), 1, 1, 'T')", (day, tag))
    assert dedupe_closed_trades(pool, dry_run=True).tables["closed_trades"].removed == 1
    assert _count(pool, "closed_trades") == 4
    report = dedupe_closed_trades(pool, dry_run=False)
    assert report.tables["closed_trades"].removed == 1
    with pool.connection() as conn:
        left = conn.execute("SELECT id, trade_date::text AS d, tag FROM closed_trades "
                            "ORDER BY id").fetchall()
    assert [(r["d"], r["tag"]) for r in left] == [("2026-06-01", "A"), ("2026-06-02", "A"),
                                                  ("2026-06-01", "B")]
    assert left[0]["id"] == 1  # the earliest kept


def test_add_cli_registers_subcommands_and_runs_dedupe(tmp_path: Path, capsys) -> None:
    legacy = build_legacy_sqlite(tmp_path / "legacy.sqlite3")
    parser = argparse.ArgumentParser(prog="engine")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["import-sqlite", str(legacy), "--dry-run"])
    assert args.dry_run is True and args.path == legacy
    assert parser.parse_args(["import-json", "--root", str(tmp_path)]).root == tmp_path
    dedupe_args = parser.parse_args(["dedupe-closed-trades", "--sqlite", str(legacy)])
    assert dedupe_args.sqlite == legacy and dedupe_args.dry_run is False

    assert dedupe_args.handler(dedupe_args) == 0
    assert "closed_trades" in capsys.readouterr().out
    missing = parser.parse_args(["import-sqlite", str(tmp_path / "absent.sqlite3")])
    assert missing.handler(missing) == 1
    assert "does not exist" in capsys.readouterr().err
    no_root = parser.parse_args(["import-json", "--root", str(tmp_path / "nope")])
    assert no_root.handler(no_root) == 1
