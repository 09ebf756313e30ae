"""Random SIGKILLs of the engine process: whatever moment it dies at, the books stay whole.

The engine runs as a real process (``python -m engine run``) on the simulated market and is
killed with SIGKILL at random moments, restarted each time from the database, and finally run
to the end of the session. Every invariant of ``tests/faults/invariants.py`` must hold.

``make test`` runs a bounded form (FAULT_KILLS, default 4). The soak:
``FAULT_KILLS=40 FAULT_SEED=<n> .venv/bin/pytest tests/faults/test_random_kills.py``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.faults.invariants import violations

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]
UNTIL = "2025-02-03T13:00"


def _engine(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", "run", "--until", UNTIL, "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _scans(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM strategy_battle_log").fetchone()[0]


def test_random_kills_keep_every_invariant(db_url, tmp_path) -> None:
    kills = int(os.environ.get("FAULT_KILLS", "4"))
    seed = int(os.environ.get("FAULT_SEED", "20261202"))
    rng = random.Random(seed)
    env = {**os.environ, "DATABASE_URL": db_url, "SIM_START": "2025-02-03",
           "SIM_SPEED": "4000", "LOG_DIR": str(tmp_path / "logs"), "ENGINE_ENV_FILE": os.devnull}
    killed = 0
    for _ in range(kills):
        before = _scans(db_url)
        proc = _engine(env)
        deadline = time.monotonic() + 90
        while _scans(db_url) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # poll for the first committed cycle of this run
        time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is not None:
            break  # the session already ran to its end
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        killed += 1
    final = _engine(env)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, f"final run failed (seed {seed}):\n{err[-3000:]}"
    assert killed >= min(kills, 1), "no kill landed: the test proved nothing"

    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        closed = conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"]
        broken = violations(conn)
    assert closed >= 1, "the session must trade for the invariants to mean much"
    assert broken == {}, f"invariants violated after {killed} kills (seed {seed}): {broken}"
