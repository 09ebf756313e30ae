"""The rehearsal exactly as the README writes it: two processes, ``python -m engine dhan-sim``
and ``BROKER=dhan DC_DRY_RUN=false python -m engine run`` with the simulator's env file.

Before, every entry was refused "Invalid Security ID" (the simulator listed other contracts
than the engine's simulated market) and re-sent every scan minute. Now the simulator serves
the engine's own market at the engine's clock, so the live entry fills at the prices the
engine saw, and the books match the simulator's order book.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parents[2]


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


@pytest.mark.slow
def test_readme_rehearsal_trades_live_against_the_simulator(db_url, tmp_path) -> None:
    env_file = tmp_path / "dhan-sim.env"
    base = {**os.environ, "ENGINE_ENV_FILE": os.devnull, "LOG_DIR": str(tmp_path / "logs")}
    sim = subprocess.Popen([sys.executable, "-m", "engine", "dhan-sim", "--port", "0",
                            "--env-file", str(env_file)], cwd=REPO, env=base,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists() and time.monotonic() < deadline and sim.poll() is None:
            time.sleep(0.05)
        assert env_file.exists(), "dhan-sim did not write its env file"
        sim_env = _env_file(env_file)
        assert sim_env["DHAN_SEND_ENGINE_TIME"] == "true" and sim_env["SIM_SEED"] == "7"
        # the README's variant for a rehearsal that trades within the hour: the futures spread
        # switched on and live next to DC
        assert subprocess.run([sys.executable, "-m", "engine", "settings", "set",
                               "CAL_ARB_ENABLED", "true"], cwd=REPO,
                              env={**base, "DATABASE_URL": db_url}, capture_output=True,
                              timeout=60).returncode == 0
        env = {**base, **sim_env, "DATABASE_URL": db_url, "BROKER": "dhan", "DC_DRY_RUN": "false",
               "CAL_ARB_DRY_RUN": "false",
               "SIM_START": "2025-02-03", "SIM_SPEED": "3000"}
        run = subprocess.run([sys.executable, "-m", "engine", "run", "--until",
                              "2025-02-03T10:45"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        log = (tmp_path / "logs" / "engine.log").read_text()
        assert "Invalid Security ID" not in log
        state = requests.get(sim_env["DHAN_API_BASE"].replace("/v2", "/__admin/state"),
                             timeout=10).json()
    finally:
        sim.terminate()
        sim.wait(10)

    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        recorded = conn.execute("SELECT * FROM executions").fetchall()
        intents = conn.execute("SELECT count(*) AS n FROM order_intents").fetchone()["n"]
    # DC and CAL_ARB are live (the README's *_DRY_RUN=false); the others (IC, MDC) stay on
    # paper next to them and never reach the broker
    live_tags = ("DC-", "CAL_ARB-")
    assert all((r["mode"] == "live") == r["tag"].startswith(live_tags) for r in recorded), \
        {(r["tag"], r["mode"]) for r in recorded}
    recorded = [r for r in recorded if r["mode"] == "live"]
    assert recorded, "DC / CAL_ARB in stage live should have traded through the simulator"
    sent = {(o["orderId"], o["correlationId"]) for o in state["orders"]}
    assert {(r["order_id"], r["correlation_id"]) for r in recorded} <= sent
    assert all(o["orderStatus"] == "TRADED" for o in state["orders"])
    assert intents >= len(recorded)
    by_id = {o["orderId"]: o for o in state["orders"]}
    for r in recorded:  # the books hold the broker's fill prices
        assert Decimal(str(by_id[r["order_id"]]["averageTradedPrice"])).quantize(
            Decimal("0.01")) == r["price"].quantize(Decimal("0.01"))
