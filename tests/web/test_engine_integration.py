"""The dashboard against a running engine: commands go web -> PostgreSQL -> actors and back."""

from __future__ import annotations

import pykka
import pytest

from engine.messages.commands import GetStatus
from tests.conftest import eventually
from tests.engine.harness import Harness
from tests.web.conftest import Api


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _command(api: Api, command_id: int) -> dict:
    return api.get(f"/api/commands/{command_id}").get_json()


def test_pause_queued_while_engine_down_runs_once_after_start(db_url: str, app) -> None:
    api = Api(app)
    queued = api.post("/api/risk/pause", json={"reason": "news at 14:00"})
    assert queued.status_code == 202
    command_id = queued.get_json()["command_id"]
    assert _command(api, command_id)["status"] == "pending"  # no engine yet
    h = Harness(db_url)
    h.engine.start(with_bus=True)
    try:
        done = eventually(lambda: (c := _command(api, command_id))["status"] == "done" and c, timeout=15)
        assert done["result"]["sent"] == "PauseEntries"
        risk = eventually(lambda: (r := api.get("/api/risk").get_json())["paused"] and r)
        assert "news at 14:00" in risk["state"]["pause_reason"]
        h.run_until(10, 0)
        opened = h.query("SELECT count(*) AS n FROM executions WHERE action = 'OPEN'")[0]["n"]
        assert opened == 0, "paused envelope must block entries"
        claims = h.query("SELECT count(*) AS n FROM engine_commands WHERE status = 'done'")[0]["n"]
        assert claims == 1
    finally:
        h.stop()


def test_close_trade_from_dashboard_closes_position(db_url: str, app) -> None:
    api = Api(app)
    h = Harness(db_url)
    h.engine.start(with_bus=True)
    try:
        executor = h.engine.directory.get("executor")
        for hour, minute in ((10, 0), (10, 30), (11, 0), (11, 30), (12, 0)):
            h.run_until(hour, minute)
            open_now = executor.ask(GetStatus(), timeout=10)["open"]
            if open_now:
                break
        else:
            pytest.fail("no position opened in the simulated morning")
        tag = open_now[0]
        positions = api.get("/api/positions").get_json()
        assert tag in {p["tag"] for p in positions["positions"]}
        resp = api.post("/api/commands", json={"kind": "close_trade", "payload": {"tag": tag}})
        assert resp.status_code == 202, resp.get_json()
        eventually(lambda: _command(api, resp.get_json()["command_id"])["status"] == "done", timeout=15)
        closed = eventually(lambda: h.query("SELECT * FROM closed_trades WHERE tag = %s", tag), timeout=15)
        assert closed[0]["exit_reason"].startswith("manual close by")
        assert tag not in executor.ask(GetStatus(), timeout=10)["open"]
    finally:
        h.stop()


def test_backtest_and_grid_from_dashboard_run_to_complete(db_url: str, app) -> None:
    api = Api(app)
    h = Harness(db_url)
    h.engine.start(with_bus=True)
    try:
        run = api.post("/api/backtest/run", json={"strategy": "DC", "start": "2025-02-03",
                                                  "end": "2025-02-03",
                                                  "params": {"DC_ZSCORE_ENTRY": "2.5"}})
        assert run.status_code == 202, run.get_json()
        run_id = run.get_json()["run_id"]
        grid = api.post("/api/backtest/grid-search", json={
            "strategy": "DC", "start": "2025-02-03", "end": "2025-02-03",
            "param_space": {"DC_ZSCORE_ENTRY": [2.5, 3]}})
        assert grid.status_code == 202, grid.get_json()
        job_id = grid.get_json()["job_id"]
        bad = api.post("/api/backtest/run", json={"strategy": "DC", "start": "2025-02-03",
                                                  "end": "2025-02-03",
                                                  "params": {"DC_LOTS": "lots"}})
        bad_id = bad.get_json()["run_id"]

        def status(path: str) -> dict | None:
            body = api.get(path).get_json()
            return body if body.get("status") in ("complete", "error") else None

        done = eventually(lambda: status(f"/api/backtest/runs/{run_id}"), timeout=60)
        assert done["status"] == "complete", done
        assert done["metrics_json"]["trades"] == len(done["trades_json"]) > 0
        ranked = eventually(lambda: status(f"/api/backtest/grid-search/{job_id}"), timeout=60)
        assert ranked["status"] == "complete" and len(ranked["results_json"]) == 2
        failed = eventually(lambda: status(f"/api/backtest/runs/{bad_id}"), timeout=60)
        assert failed["status"] == "error" and "expected an integer" in failed["error_text"]
    finally:
        h.stop()
