"""A PostgreSQL restart in the middle of a session, on a server this test starts itself.

The engine runs as a real process against a private embedded PostgreSQL (pgserver). The
server is restarted (``pg_ctl restart -m fast``: every connection is cut, as in a crash-restart
or a failover) while the engine trades. The engine may ride it out (pools reconnect, actors
restart) or exit with code 70 after an escalation, as the container would then be restarted;
it is restarted here the same way. Afterwards every invariant of the books holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from engine.store.migrate import migrate
from engine.timeutil import IST
from tests.conftest import with_dbname
from tests.engine.harness import enable_only_url
from tests.faults.invariants import violations

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]
UNTIL = "2025-02-03T12:00"
pgserver = pytest.importorskip("pgserver", reason="pgserver (the embedded extra) not installed")


def _count(url: str, sql: str) -> int:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            return conn.execute(sql).fetchone()[0]
    except psycopg.OperationalError:
        return -1


def test_postgres_restart_mid_session_keeps_every_invariant(tmp_path) -> None:
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")
    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE engine")
    url = with_dbname(admin, "engine")
    migrate(url)
    enable_only_url(url, ("CAL_ARB",))
    env = {**os.environ, "DATABASE_URL": url, "SIM_START": "2025-02-03", "SIM_SPEED": "4000",
           "LOG_DIR": str(tmp_path / "logs"), "ENGINE_ENV_FILE": os.devnull}

    def engine() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "engine", "run", "--until", UNTIL,
                                 "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    proc = engine()
    deadline = time.monotonic() + 120
    while _count(url, "SELECT count(*) FROM closed_trades") < 1 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.1)
    assert _count(url, "SELECT count(*) FROM closed_trades") >= 1, "no close before the restart"
    pg_ctl(["-m", "fast", "-w", "restart"], pgdata=server.pgdata, user=server.system_user,
           timeout=60)
    assert proc.poll() is None, "the session ended before the restart: the test proved nothing"
    restarts = 0
    while True:
        code = proc.wait(timeout=300)
        if code == 0:
            break
        assert code == 70, f"engine died with {code}:\n{proc.stderr.read()[-3000:]}"
        restarts += 1  # an escalation: restarted as the container would be
        assert restarts <= 3, "the engine kept escalating after the database came back"
        proc = engine()

    with psycopg.connect(url, row_factory=dict_row) as conn:
        closed = conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"]
        last = conn.execute("SELECT max(created_at) AS t FROM strategy_battle_log").fetchone()["t"]
        broken = violations(conn)
    assert closed >= 1
    assert last is not None and last >= datetime(2025, 2, 3, 11, 59, tzinfo=IST), \
        f"the session did not run to its end after the restart (last cycle {last})"
    assert broken == {}, f"invariants violated after a PostgreSQL restart: {broken}"
