"""Read endpoints: happy path on seeded rows, and a 400 naming the field on bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg.types.json import Jsonb

from engine.timeutil import now_ist


@pytest.fixture
def seeded(pool):
    today = now_ist().date()
    now = now_ist()
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES ('DC-1', 'DC', 'paper', %s, %s,"
                     " 101.5, 75, %s)", (today, now, Jsonb({"mtm": "250.25"})))
        for i, pnl in enumerate(("1200.50", "-300.25")):
            conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                         " closed_at, gross_pnl, realized_pnl, exit_reason) VALUES"
                         " (%s, %s, 'DC', 'paper', %s, %s, %s, %s, 'target')",
                         (today - timedelta(days=i), f"C-{i}", now, now, pnl, pnl))
        conn.execute("INSERT INTO metrics_days (trade_date, realized_pnl) VALUES (%s, 900.25)",
                     (today,))
        conn.execute("INSERT INTO trade_journal (tag, trade_date, strategy, realized_pnl)"
                     " VALUES ('C-0', %s, 'DC', 1200.50)", (today,))
        conn.execute("INSERT INTO strategy_battle_log (created_at, trade_date, spot,"
                     " selected_strategy, rejections) VALUES (%s, %s, 24500, 'DC', %s)",
                     (now, today, Jsonb({"IC": ["event risk"]})))
        conn.execute("INSERT INTO iv_snapshots (created_at, trade_date, spot, near_atm_iv,"
                     " payload) VALUES (%s, %s, 24500, 12.5, %s)",
                     (now, today, Jsonb({"term_structure": {"near": 12.5}})))
        conn.execute("INSERT INTO reconciliation_audit (action, trade_tag) VALUES"
                     " ('ORPHAN_ALERT', 'X')")
        conn.execute("INSERT INTO ai_exit_advisories (trade_date, trade_tag, strategy, reason,"
                     " action_taken) VALUES (%s, 'DC-1', 'DC', 'AI_SENTIMENT_RISK',"
                     " 'ADVISORY_ONLY')", (today,))
        conn.execute("INSERT INTO market_events (event_date, name, category, risk_level)"
                     " VALUES (%s, 'RBI MPC', 'policy', 'high')", (today + timedelta(days=3),))
        conn.execute("INSERT INTO go_live_state (strategy, stage) VALUES ('DC', 'paper')")
    return today


def test_positions_and_pnl_today_decimal_as_string(api, seeded):
    body = api.get("/api/positions").json
    assert body["count"] == 1 and body["positions"][0]["mtm"] == "250.25"
    assert body["positions"][0]["entry_price"] == "101.5000"
    pnl = api.get("/api/pnl/today").json
    assert pnl["realized"] == "1200.50" and pnl["unrealized"] == "250.25"
    assert pnl["total"] == "1450.75" and pnl["wins"] == 1


def test_equity_curve_cumulative(api, seeded):
    points = api.get("/api/pnl/equity").json["points"]
    assert [p["equity"] for p in points] == ["-300.25", "900.25"]


def test_trades_open_closed_and_filters(api, seeded):
    assert api.get("/api/trades?status=open").json["trades"][0]["tag"] == "DC-1"
    closed = api.get("/api/trades?status=closed&limit=1").json
    assert closed["count"] == 1
    only_today = api.get(f"/api/trades?from={seeded}&to={seeded}").json
    assert [t["tag"] for t in only_today["trades"]] == ["C-0"]


@pytest.mark.parametrize(("path", "field"), [
    ("/api/trades?status=half", "status"),
    ("/api/trades?limit=0", "limit"),
    ("/api/trades?limit=abc", "limit"),
    ("/api/trades?from=2024-13-01", "from"),
    ("/api/trades?from=2025-02-01&to=2025-01-01", "from"),
    ("/api/trades?colour=red", "colour"),
    ("/api/metrics/days?to=yesterday", "to"),
    ("/api/journal?limit=99999", "limit"),
    ("/api/battle-log?limit=-1", "limit"),
    ("/api/iv-snapshots?from=x", "from"),
    ("/api/reconciliation/log?limit=x", "limit"),
    ("/api/ai/exit-advisories?to=1", "to"),
    ("/api/events?from=soon", "from"),
    ("/api/pnl/equity?from=x", "from"),
    ("/api/logs/tail?lines=5000", "lines"),
    ("/api/logs/tail?file=passwd", "file"),
    ("/api/backtest/runs?limit=0", "limit"),
    ("/api/commands?limit=x", "limit"),
])
def test_read_endpoint_bad_query_400_names_field(api, path, field):
    r = api.get(path)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field and field in r.json["error"]


def test_metrics_journal_battle_iv_recon_ai_events(api, seeded):
    assert api.get("/api/metrics/days").json["days"][0]["realized_pnl"] == "900.25"
    assert api.get("/api/journal").json["entries"][0]["tag"] == "C-0"
    assert api.get("/api/battle-log?limit=5").json["rows"][0]["rejections"] == {"IC": ["event risk"]}
    snap = api.get("/api/iv-snapshots?limit=1").json["snapshots"][0]
    assert snap["payload"]["term_structure"]["near"] == "12.5"
    assert api.get("/api/reconciliation/log").json["rows"][0]["action"] == "ORPHAN_ALERT"
    assert api.get("/api/ai/exit-advisories").json["rows"][0]["trade_tag"] == "DC-1"
    events = api.get("/api/events").json
    assert events["events"][0]["name"] == "RBI MPC"
    far = api.get("/api/events?from=2020-01-01&to=2020-02-01").json
    assert far["events"] == [] and far["from"] == "2020-01-01"


def test_journal_patch_notes_and_bad_body(api, seeded):
    r = api.patch("/api/journal/C-0", json={"notes": "exited early, fine"})
    assert r.status_code == 200 and r.json["operator_notes"] == "exited early, fine"
    assert api.patch("/api/journal/NOPE", json={"notes": "x"}).status_code == 404
    bad = api.patch("/api/journal/C-0", json={"notes": 5})
    assert bad.status_code == 400 and bad.json["field"] == "notes"
    assert api.patch("/api/journal/C-0", json={"note": "x"}).json["field"] == "note"


def test_health_without_session_reports_token_expiry_never_token(app, pool):
    with pool.connection() as conn:
        conn.execute("INSERT INTO runtime_state (key, value) VALUES ('dhan_token', %s)",
                     (Jsonb({"expires_at": "2030-01-01T09:00:00+05:30", "token": "SECRET"}),))
    r = app.test_client().get("/api/health")
    assert r.status_code == 200 and b"SECRET" not in r.data
    assert r.json == {"database": "ok", "engine_heartbeat_age_s": None,
                      "token_expires_at": "2030-01-01T09:00:00+05:30", "status": "engine_down",
                      "entries_paused": False, "paused_by": [], "action_needed": None,
                      "engine_time": None, "clock": "real"}


def test_health_database_down_503(make_app, db_url):
    from engine.store.pool import open_pool

    lonely = open_pool(db_url, min_size=1, max_size=1, name="lonely", timeout=1)
    app = make_app(POOL=lonely)
    lonely.close()
    r = app.test_client().get("/api/health")
    assert r.status_code == 503 and r.json["database"] == "error"


def test_logs_tail_last_lines_redacted(make_app, tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    lines = [f"2025-01-01 INFO line {i}" for i in range(5000)]
    lines.append("2025-01-01 INFO refreshed access_token=abcdef123456 ok")
    (log_dir / "engine.log").write_text("\n".join(lines) + "\n")
    from tests.web.conftest import Api

    api = Api(make_app(LOG_DIR=str(log_dir)))
    body = api.get("/api/logs/tail?lines=3").json
    assert body["lines"][:2] == ["2025-01-01 INFO line 4998", "2025-01-01 INFO line 4999"]
    assert "abcdef123456" not in body["lines"][2] and "***" in body["lines"][2]
    assert len(api.get("/api/logs/tail").json["lines"]) == 200


def test_every_read_endpoint_requires_session(app):
    client = app.test_client()
    for path in ("/api/positions", "/api/pnl/today", "/api/trades", "/api/settings",
                 "/api/backtest/runs", "/api/logs/tail", "/api/commands/1", "/api/system"):
        assert client.get(path).status_code == 401, path


def test_unknown_api_path_json_404(api):
    r = api.get("/api/nothing-here")
    assert r.status_code == 404 and r.json["error"]



def test_pnl_today_follows_the_engine_clock_date(pool, api) -> None:
    """On a simulated market the engine's trading day is not the wall-clock date."""
    from datetime import datetime
    from decimal import Decimal

    from engine.bus.events import write_heartbeat
    from engine.timeutil import IST, now_ist

    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at, closed_at,"
            " gross_pnl, charges, realized_pnl, exit_reason) VALUES ('2025-02-03', 'DC-1', 'DC',"
            " 'paper', '2025-02-03 10:00+05:30', '2025-02-03 10:30+05:30', 100, 40, 60, 'x')")
    write_heartbeat(pool, now_ist(), datetime(2025, 2, 3, 10, 45, tzinfo=IST))
    body = api.get("/api/pnl/today").get_json()
    assert body["date"].startswith("2025-02-03")
    assert Decimal(body["realized"]) == Decimal("60")


def test_logs_tail_reads_the_engine_log_from_engine_log_dir(make_app, tmp_path):
    """Under compose the engine's log volume is mounted read-only apart from the web's own."""
    engine_dir, web_dir = tmp_path / "engine-logs", tmp_path / "web-logs"
    engine_dir.mkdir()
    web_dir.mkdir()
    (engine_dir / "engine.log").write_text("2025-01-01 INFO engine line\n")
    (web_dir / "web.log").write_text("2025-01-01 INFO web line\n")
    from tests.web.conftest import Api

    api = Api(make_app(LOG_DIR=str(web_dir), ENGINE_LOG_DIR=str(engine_dir)))
    assert api.get("/api/logs/tail").json["lines"] == ["2025-01-01 INFO engine line"]
    assert api.get("/api/logs/tail?file=web").json["lines"] == ["2025-01-01 INFO web line"]
