"""Fault tests: a close can never be lost from the risk envelope.

The executor commits a close; the RiskActor updates the counters afterwards. These tests force
the gap between the two — a second session holds the envelope rows ``FOR UPDATE`` so the risk
actor blocks right after the close committed — and then kill the engine process (SIGKILL) or
terminate the risk actor's database connection (what a PostgreSQL restart does to it). After
the restart the counters must equal the sums over ``closed_trades`` and the caps must refuse
what they should.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import psycopg
import pykka
import pytest

from engine.settings import Settings
from tests.conftest import eventually
from tests.engine.harness import Harness, enable_only

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]


def _stage_truth(conn, stage: str) -> dict:
    """The envelope of ``stage`` computed here, independently, from closed_trades."""
    rows = conn.execute("SELECT trade_date, realized_pnl FROM closed_trades WHERE mode = %s"
                        " ORDER BY trade_date, closed_at, id", (stage,)).fetchall()
    streak = 0
    for r in reversed(rows):
        if r["realized_pnl"] >= 0:
            break
        streak += 1
    last = rows[-1]["trade_date"] if rows else None
    return {"lifetime_pnl": sum((r["realized_pnl"] for r in rows), Decimal(0)),
            "daily_pnl": sum((r["realized_pnl"] for r in rows if r["trade_date"] == last),
                             Decimal(0)),
            "loss_streak": streak, "closes": len(rows)}


def _assert_envelope_matches_records(pool) -> dict:
    with pool.connection() as conn:
        truth = _stage_truth(conn, "paper")
        row = conn.execute("SELECT * FROM risk_envelope_stages WHERE stage = 'paper'").fetchone()
        total = conn.execute("SELECT coalesce(sum(realized_pnl), 0) AS s FROM closed_trades"
                             ).fetchone()["s"]
        single = conn.execute("SELECT * FROM risk_envelope_state WHERE id = 1").fetchone()
    assert truth["closes"] >= 1
    assert row["lifetime_pnl"] == truth["lifetime_pnl"]
    assert row["daily_pnl"] == truth["daily_pnl"]
    assert row["loss_streak"] == truth["loss_streak"]
    assert row["closes_seen"] == truth["closes"]
    assert single["lifetime_pnl"] == total
    return truth


def _wait_for_blocked_risk_update(db_url: str, timeout: float = 120) -> int:
    """The pid of the backend waiting for the envelope row lock (the risk actor's UPDATE)."""
    def blocked():
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query ILIKE '%%risk_envelope%%'").fetchone()
        return row[0] if row else None
    return eventually(blocked, timeout=timeout, interval=0.05)


def _count(db_url: str, sql: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def test_kill_between_close_and_risk_update_loses_no_close(db_url, pool, tmp_path) -> None:
    Settings(pool).set("RISK_MAX_LOSS_STREAK", "1", updated_by="fault-test")
    enable_only(pool, ("CAL_ARB",))
    env = {**os.environ, "DATABASE_URL": db_url, "SIM_START": "2025-02-03", "SIM_SPEED": "3000",
           "LOG_DIR": str(tmp_path / "logs"), "ENGINE_ENV_FILE": os.devnull}
    engine = subprocess.Popen([sys.executable, "-m", "engine", "run", "--until",
                               "2025-02-03T15:30", "--quiet"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locker = psycopg.connect(db_url)
    try:
        eventually(lambda: _count(db_url, "SELECT count(*) FROM strategy_battle_log"),
                   timeout=120, interval=0.1)
        locker.execute("SELECT * FROM risk_envelope_stages FOR UPDATE")  # held: tx stays open
        eventually(lambda: _count(db_url, "SELECT count(*) FROM closed_trades"), timeout=180,
                   interval=0.05)
        _wait_for_blocked_risk_update(db_url)  # the close committed, the counters did not
        engine.send_signal(signal.SIGKILL)
        engine.wait(30)
    finally:
        if engine.poll() is None:
            engine.kill()
        locker.rollback()
        locker.close()

    with pool.connection() as conn:
        stale = conn.execute("SELECT closes_seen, lifetime_pnl FROM risk_envelope_stages"
                             " WHERE stage = 'paper'").fetchone()
        closed = conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"]
    assert stale["closes_seen"] < closed, "the fault was not forced: counters already updated"

    from engine.app import simulated_start
    from engine.config import load
    from engine.market.calendar import NseCalendar

    start = simulated_start(pool, load({"DATABASE_URL": db_url}), NseCalendar())
    again = Harness(db_url, start=start).start()
    try:
        truth = _assert_envelope_matches_records(again.pool)
        if truth["loss_streak"] >= 1:  # RISK_MAX_LOSS_STREAK=1: the lost close must pause
            paused = again.query("SELECT pause_reason FROM risk_envelope_stages"
                                 " WHERE stage = 'paper'")[0]["pause_reason"]
            assert paused and "loss streak" in paused
            opens_before = again.query("SELECT count(*) AS n FROM executions"
                                       " WHERE action = 'OPEN'")[0]["n"]
            again.run_until(15, 0)
            opens_after = again.query("SELECT count(*) AS n FROM executions"
                                      " WHERE action = 'OPEN'")[0]["n"]
            assert opens_after == opens_before, "the loss-streak cap admitted a new entry"
    finally:
        again.stop()
        pykka.ActorRegistry.stop_all(timeout=10)


def test_connection_killed_during_risk_update_loses_no_close(db_url, pool) -> None:
    """The risk actor's UPDATE dies as in a PostgreSQL restart (AdminShutdown); the supervisor
    restarts it a moment later and it must rebuild from the records, not the stale row."""
    h = Harness(db_url, restart_policy={"backoff": (0.05, 0.5), "max_restarts": 10,
                                        "period_s": 60.0}).start()
    locker = psycopg.connect(db_url)
    runner = threading.Thread(target=h.run_until, args=(11, 0), daemon=True)
    try:
        locker.execute("SELECT * FROM risk_envelope_stages FOR UPDATE")
        runner.start()
        eventually(lambda: _count(db_url, "SELECT count(*) FROM closed_trades"), timeout=120,
                   interval=0.05)
        pid = _wait_for_blocked_risk_update(db_url)
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # the restarted actor (a new connection) blocks again on the same row; let it through
        def blocked_again():
            other = _wait_for_blocked_risk_update(db_url)
            return other if other != pid else None
        eventually(blocked_again, timeout=60, interval=0.05)
        locker.rollback()
        runner.join(180)
        assert not runner.is_alive()
        _assert_envelope_matches_records(h.pool)
    finally:
        locker.close()
        h.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
