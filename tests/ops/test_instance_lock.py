"""One engine per database and per Dhan client id: a second engine is refused, says who holds
the lock, and exits non-zero (real processes, real PostgreSQL advisory locks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from engine.instance_lock import EXIT_LOCKED, InstanceLock, InstanceLockHeld

REPO = Path(__file__).resolve().parents[2]


def test_second_engine_process_is_refused_and_names_the_holder(db_url, tmp_path) -> None:
    first = InstanceLock(db_url).acquire()  # the running engine
    try:
        env = {**os.environ, "DATABASE_URL": db_url, "SIM_START": "2025-02-03",
               "LOG_DIR": str(tmp_path / "logs"), "ENGINE_ENV_FILE": os.devnull}
        proc = subprocess.run([sys.executable, "-m", "engine", "run", "--until",
                               "2025-02-03T09:30", "--quiet"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180)
    finally:
        first.release()
    assert proc.returncode == EXIT_LOCKED, proc.stderr[-2000:]
    assert "another engine is already running" in proc.stderr
    assert f"nifty-engine pid={os.getpid()}" in proc.stderr, "it says who holds the lock"
    assert "engine running" not in proc.stdout, "it never started"


def test_lock_free_again_once_the_holder_ends(db_url) -> None:
    cmd = [sys.executable, "-m", "engine.instance_lock", db_url]
    holder = InstanceLock(db_url).acquire()
    held = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    holder.release()
    free = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert held.returncode == EXIT_LOCKED and "database" in held.stderr
    assert free.returncode == 0 and "lock free" in free.stdout


def test_one_engine_per_dhan_client_id_across_databases(new_database) -> None:
    a, b = new_database(), new_database()
    first = InstanceLock(a, "1000000001").acquire()
    try:
        assert InstanceLock(b).acquire().release() is None, "another database, no client id"
        with pytest.raises(InstanceLockHeld, match="Dhan client id 1000000001") as info:
            InstanceLock(b, "1000000001").acquire()
        assert "nifty-engine pid=" in str(info.value)
        other = InstanceLock(b, "1000000002").acquire()  # another account is fine
        other.release()
    finally:
        first.release()
    again = InstanceLock(b, "1000000001").acquire()
    with psycopg.connect(b) as conn:
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND granted").fetchone()[0]
    again.release()
    assert held >= 1
