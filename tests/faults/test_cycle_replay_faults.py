"""Fault tests: every scan cycle is applied exactly once across kills, and a resumed engine
sees the same market as one that never stopped.

The lock-step loop runs a step's ticks (each scan cycle commits in its own transaction) and
only then saves the simulated clock. These tests force the gap between the two: a second
session holds the ``sim_clock`` row ``FOR UPDATE`` so the clock save blocks right after a
step whose scan cycle committed, and the engine process is SIGKILLed there. A restart must
not run that cycle again (no second battle-log row, spread sample or funnel count, no shifted
z-score), and one restart happens on the next trading day, where the simulated market must
be the one an uninterrupted run saw (the same trades, the same spread samples).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from engine.timeutil import IST
from tests.conftest import eventually
from tests.engine.harness import enable_only_url
from tests.faults.invariants import violations

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]
#: the futures spread trades often on the simulated market; DC and IC add four-leg options
#: structures to the books the kills must leave consistent
STRATEGIES = ("CAL_ARB", "IC")  # two- and four-leg trades (DC: tests/engine/test_options_day.py)
UNTIL = "2025-02-04T12:00"  # a trading day and a half: two sessions, one overnight resume


def _engine(db_url: str, logs: Path, until: str = UNTIL) -> subprocess.Popen:
    logs.mkdir(parents=True, exist_ok=True)
    enable_only_url(db_url, STRATEGIES)
    env = {**os.environ, "DATABASE_URL": db_url, "SIM_START": "2025-02-03",
           "SIM_SPEED": "100000", "LOG_DIR": str(logs), "ENGINE_ENV_FILE": os.devnull}
    with open(logs / "stderr.txt", "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "engine", "run", "--until", until,
                                 "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)


def _finish(proc: subprocess.Popen, logs: Path) -> None:
    try:
        code = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, (logs / "stderr.txt").read_text()[-3000:]


def _one(db_url: str, sql: str) -> Any:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def _last_cycle(db_url: str) -> datetime | None:
    return _one(db_url, "SELECT max(created_at) FROM strategy_battle_log")


def _clock_save_blocked(db_url: str) -> bool:
    return bool(_one(db_url, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                             " current_database() AND wait_event_type = 'Lock'"
                             " AND query ILIKE '%%runtime_state%%'"))


def _kill_after_cycle_before_clock(db_url: str, proc: subprocess.Popen,
                                   after: datetime) -> tuple[datetime, datetime]:
    """SIGKILL ``proc`` once a scan cycle after ``after`` has committed and the simulated
    clock saved after it has not; returns (saved clock, last committed cycle)."""
    def reached() -> bool:
        assert proc.poll() is None, f"the engine exited early with code {proc.returncode}"
        return (_last_cycle(db_url) or after) > after

    eventually(reached, timeout=240, interval=0.05)
    locker = psycopg.connect(db_url)
    try:
        for _ in range(400):
            saved = locker.execute("SELECT value->>'now' FROM runtime_state WHERE key ="
                                   " 'sim_clock' FOR UPDATE").fetchone()[0]
            eventually(lambda: _clock_save_blocked(db_url), timeout=60, interval=0.005)
            saved_at, cycle = datetime.fromisoformat(saved), _last_cycle(db_url)
            if cycle > saved_at:  # this step ran a scan cycle; its clock save is waiting
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                return saved_at, cycle
            locker.rollback()  # a step without a scan: let it save, block the next one
        raise AssertionError("never caught a committed scan cycle ahead of the saved clock")
    finally:
        if proc.poll() is None:
            proc.kill()
        locker.close()


def _wait_for_rows(db_url: str, proc: subprocess.Popen, rows: int) -> None:
    """Until the battle log has ``rows`` rows (the engine must still be running)."""
    def reached() -> bool:
        assert proc.poll() is None, f"the engine exited early with code {proc.returncode}"
        return _one(db_url, "SELECT count(*) FROM strategy_battle_log") >= rows

    eventually(reached, timeout=240, interval=0.01)


def _books(db_url: str) -> dict[str, list[dict]]:
    """What the run recorded, without surrogate ids."""
    queries = {
        "battle_log": "SELECT created_at, trade_date, spot, iv, realized_range, near_straddle,"
                      " selected_strategy, eligibility, rejections, payload"
                      " FROM strategy_battle_log ORDER BY created_at, id",
        "spread_history": "SELECT sampled_at, near_expiry, far_expiry, near_price, far_price,"
                          " spread FROM calendar_spread_history ORDER BY sampled_at, id",
        "iv_snapshots": "SELECT created_at, spot, near_atm_iv, far_atm_iv, skew, near_straddle,"
                        " realized_range, payload FROM iv_snapshots ORDER BY created_at, id",
        "executions": "SELECT tag, security_id, side, action, quantity, price, charges,"
                      " executed_at FROM executions ORDER BY executed_at, tag, security_id, action",
        "closed": "SELECT tag, opened_at, closed_at, realized_pnl, exit_reason FROM closed_trades"
                  " ORDER BY closed_at, tag",
        "open": "SELECT tag FROM open_trades ORDER BY tag",
        "metrics": "SELECT trade_date, trades_opened, realized_pnl, funnel FROM metrics_days"
                   " ORDER BY trade_date",
    }
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}


def test_kills_between_cycle_commit_and_clock_save_replay_nothing(new_database, tmp_path) -> None:
    calm_db, killed_db = new_database(), new_database()
    calm = _engine(calm_db, tmp_path / "calm")  # the uninterrupted run, alongside

    logs = tmp_path / "killed"
    faults = []
    for after in (datetime(2025, 2, 3, 10, 8, tzinfo=IST),    # a trade is open
                  datetime(2025, 2, 4, 10, 40, tzinfo=IST)):  # the next day, trade open
        faults.append(_kill_after_cycle_before_clock(killed_db, _engine(killed_db, logs), after))
    _finish(_engine(killed_db, logs), logs)
    _finish(calm, tmp_path / "calm")

    assert [cycle.date().isoformat() for _, cycle in faults] == ["2025-02-03", "2025-02-04"]
    assert all(cycle > saved for saved, cycle in faults), "the fault was not forced"

    expected, got = _books(calm_db), _books(killed_db)
    times = [r["created_at"] for r in got["battle_log"]]
    assert len(times) == len(set(times)) == 375 + 166  # Feb 3 09:15-15:29, Feb 4 09:15-12:00
    spread_times = [r["sampled_at"] for r in got["spread_history"]]
    assert len(spread_times) == len(set(spread_times)) == 100
    assert [m["funnel"]["cycles"] for m in got["metrics"]] == [375, 166]
    assert got["closed"], "the window must include trading"
    assert any(r["opened_at"].date().isoformat() == "2025-02-04" for r in got["closed"])
    for name in expected:  # the same cycles, z-scores, trades and P&L as the uninterrupted run
        assert got[name] == expected[name], name


def test_random_kills_apply_every_scan_cycle_exactly_once(db_url, tmp_path) -> None:
    """SIGKILL the engine at random moments (mid-cycle, mid-commit, mid-save, ...) and restart
    it each time: every scan cycle of the session is recorded exactly once, none is skipped,
    the spread history is the market's, sample for sample, and every invariant of the books
    (tests/faults/invariants.py) holds. ``FAULT_KILLS`` (default 5) and ``FAULT_SEED``
    (default 11) make it a soak."""
    seed = int(os.environ.get("FAULT_SEED", "11"))
    rng = random.Random(seed)
    logs, kills = tmp_path / "engine", 0
    while kills < int(os.environ.get("FAULT_KILLS", "5")):
        proc = _engine(db_url, logs, until="2025-02-03T12:00")
        try:
            _wait_for_rows(db_url, proc, _one(db_url, "SELECT count(*) FROM strategy_battle_log")
                           + rng.randint(3, 25))
            time.sleep(rng.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
    _finish(_engine(db_url, logs, until="2025-02-03T12:00"), logs)

    with psycopg.connect(db_url, autocommit=True) as conn:
        cycles = [r[0] for r in conn.execute(
            "SELECT created_at FROM strategy_battle_log ORDER BY created_at")]
        iv = [r[0] for r in conn.execute("SELECT created_at FROM iv_snapshots ORDER BY created_at")]
        spreads = conn.execute("SELECT sampled_at, near_price, far_price, spread FROM"
                               " calendar_spread_history ORDER BY sampled_at").fetchall()
        funnel = conn.execute("SELECT funnel FROM metrics_days").fetchone()[0]
        legs = conn.execute("SELECT tag, security_id, action, count(*) FROM executions"
                            " GROUP BY tag, security_id, action").fetchall()
        conn.row_factory = dict_row
        closed = conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"]
        broken = violations(conn)
    assert closed >= 1, "the session must trade for the invariants to mean much"
    assert broken == {}, f"invariants violated after {kills} kills (seed {seed}): {broken}"
    start = datetime(2025, 2, 3, 9, 15, tzinfo=IST)
    every_minute = [start + timedelta(minutes=i) for i in range(166)]  # 09:15 .. 12:00
    assert cycles == every_minute and iv == every_minute
    assert funnel["cycles"] == 166
    assert all(n == 1 for *_, n in legs), "a leg was filled twice"

    from engine.market.calendar import NseCalendar
    from engine.market.simulator import SimulatedMarket

    market = SimulatedMarket(7, start, NseCalendar())
    expected = []
    for at in every_minute[-100:]:
        snap = market.snapshot_at(at)
        near, far = snap.near_future.ltp_decimal(), snap.far_future.ltp_decimal()
        expected.append((at, near, far, far - near))
    assert spreads == expected


def test_connection_ended_during_the_clock_save_is_retried_not_fatal(db_url, tmp_path) -> None:
    """The connection saving the simulated clock is ended mid-statement, as a PostgreSQL
    restart ends it (CI once saw the engine die there with a traceback, exit 1, instead of
    riding out the restart). The save is idempotent: it is retried, and the run finishes
    with every scan cycle recorded once."""
    logs = tmp_path / "engine"
    proc = _engine(db_url, logs, until="2025-02-03T09:45")
    try:
        eventually(lambda: proc.poll() is None and _one(
            db_url, "SELECT count(*) FROM runtime_state WHERE key = 'sim_clock'"),
            timeout=120, interval=0.01)
        locker = psycopg.connect(db_url)
        try:  # the next save waits on the row; end its connection there
            locker.execute("SELECT 1 FROM runtime_state WHERE key = 'sim_clock' FOR UPDATE")
            eventually(lambda: _clock_save_blocked(db_url), timeout=60, interval=0.005)
            ended = _one(db_url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                 " WHERE datname = current_database() AND wait_event_type ="
                                 " 'Lock' AND query ILIKE '%%runtime_state%%'")
        finally:
            locker.rollback()
            locker.close()
        _finish(proc, logs)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ended == 1
    assert "simulated clock not saved" in (logs / "stderr.txt").read_text()
    start = datetime(2025, 2, 3, 9, 15, tzinfo=IST)
    with psycopg.connect(db_url, autocommit=True) as conn:
        cycles = [r[0] for r in conn.execute(
            "SELECT created_at FROM strategy_battle_log ORDER BY created_at")]
        saved = conn.execute("SELECT value->>'now' FROM runtime_state WHERE key = 'sim_clock'"
                             ).fetchone()[0]
    assert cycles == [start + timedelta(minutes=i) for i in range(31)]  # 09:15 .. 09:45
    assert datetime.fromisoformat(saved) == start + timedelta(minutes=30)


def test_clock_save_exits_with_the_restart_code_when_the_database_stays_away(
        monkeypatch, caplog) -> None:
    """A database that does not come back within SIM_CLOCK_SAVE_WAIT_S: the run exits with
    EXIT_CODE (70), as an escalation does, for the container to restart it."""
    from types import SimpleNamespace

    from psycopg_pool import ConnectionPool

    from engine import app

    monkeypatch.setattr(app, "SIM_CLOCK_SAVE_WAIT_S", 0.5)
    pool = ConnectionPool("host=127.0.0.1 port=9 dbname=gone connect_timeout=1", min_size=0, max_size=1,
                          timeout=0.2, open=True, name="nowhere")
    try:
        with pytest.raises(SystemExit) as exit_:
            app.Engine._save_sim_clock(SimpleNamespace(pool=pool),
                                       datetime(2025, 2, 3, 9, 15, tzinfo=IST))
    finally:
        pool.close()
    assert exit_.value.code == app.EXIT_CODE == 70
    assert "exiting 70 to be restarted" in caplog.text
