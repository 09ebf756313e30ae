"""The dashboard against a running engine: commands go web -> PostgreSQL -> actors and back."""

from __future__ import annotations

import pykka
import pytest
from psycopg.types.json import Jsonb

from engine.bus.commands import enqueue_command
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
        run = api.post("/api/backtest/run", json={"strategy": "CAL_ARB", "start": "2025-02-03",
                                                  "end": "2025-02-03", "data": "sim",
                                                  "params": {"CAL_ARB_ZSCORE_ENTRY": "2.5"}})
        assert run.status_code == 202, run.get_json()
        run_id = run.get_json()["run_id"]
        grid = api.post("/api/backtest/grid-search", json={
            "strategy": "CAL_ARB", "start": "2025-02-03", "end": "2025-02-03", "data": "sim",
            "workers": 1, "min_trades": 0, "param_space": {"CAL_ARB_ZSCORE_ENTRY": [2.5, 3]}})
        assert grid.status_code == 202, grid.get_json()
        job_id = grid.get_json()["job_id"]
        bad = api.post("/api/backtest/run", json={"strategy": "DC", "start": "2025-02-03",
                                                  "end": "2025-02-03",
                                                  "params": {"DC_LOTS": "lots"}})
        assert bad.status_code == 400 and bad.get_json()["field"] == "params.DC_LOTS"
        assert "expected an integer" in bad.get_json()["error"]  # refused before it is queued
        with h.pool.connection() as conn:  # a run that cannot work, queued another way
            bad_id = conn.execute("INSERT INTO backtest_runs (strategy, start_date, end_date,"
                                  " config_snapshot) VALUES ('DC', '2025-02-03', '2025-02-03',"
                                  " %s) RETURNING run_id", (Jsonb({"DC_LOTS": "lots"}),)
                                  ).fetchone()["run_id"]
            with conn.transaction():
                enqueue_command(conn, "run_backtest", {"run_id": bad_id}, requested_by="test")

        def status(path: str) -> dict | None:
            body = api.get(path).get_json()
            return body if body.get("status") in ("complete", "error") else None

        done = eventually(lambda: status(f"/api/backtest/runs/{run_id}"), timeout=60)
        assert done["status"] == "complete", done
        assert done["metrics_json"]["trades"] == len(done["trades_json"]) > 0
        ranked = eventually(lambda: status(f"/api/backtest/grid-search/{job_id}"), timeout=60)
        assert ranked["status"] == "complete", ranked
        assert len(ranked["results_json"]) == 2 and float(ranked["progress_pct"]) == 100
        assert ranked["param_space"]["summary"]["tried"] == 2
        failed = eventually(lambda: status(f"/api/backtest/runs/{bad_id}"), timeout=60)
        assert failed["status"] == "error" and "expected an integer" in failed["error_text"]
    finally:
        h.stop()


def test_stage_change_for_unknown_strategy_queued_anyway_is_refused_at_claim(db_url: str,
                                                                               app) -> None:
    """A set_go_live_stage row for a strategy the engine does not have (queued by SQL or an
    older dashboard) ends as an error naming the strategy; nothing is sent, no stage row."""
    api = Api(app)  # (the dashboard itself refuses it: test_bad_input)
    h = Harness(db_url)
    with h.pool.connection() as conn, conn.transaction():
        command_id = enqueue_command(conn, "set_go_live_stage", {"strategy": "ZZZ",
                                     "stage": "paper", "confirm": True}, requested_by="test")
    h.engine.start(with_bus=True)
    try:
        done = eventually(lambda: (c := _command(api, command_id))["status"] != "pending"
                          and c["status"] != "claimed" and c, timeout=15)
        assert done["status"] == "error" and done["error"].startswith("CommandError: strategy:")
        assert "'ZZZ'" in done["error"] and "DC" in done["error"]
        assert h.query("SELECT * FROM go_live_state WHERE strategy = 'ZZZ'") == []
    finally:
        h.stop()


def test_escalation_pauses_entries_and_health_says_what_to_do(db_url: str, app) -> None:
    """An actor that keeps failing escalates: entries pause, and both the stored pause reason
    (the alert's text) and /api/health tell the operator to check the log and resume."""
    from engine.messages.base import new
    from engine.messages.commands import CheckChildren
    from engine.messages.tap import MessageTap

    api = Api(app)
    assert api.client.get("/api/health").json["action_needed"] is None
    tap = MessageTap()
    h = Harness(db_url, tap=tap,
                restart_policy={"backoff": (0.05, 5.0), "max_restarts": 0, "period_s": 60.0})
    h.start()
    try:
        h.engine.directory.get("token").stop()  # dies silently: found by the liveness check
        h.engine.supervisor.tell(new(CheckChildren, h.engine.clock))
        risk = eventually(lambda: (r := api.get("/api/risk").json)["paused"] and r, timeout=15)
        reason = risk["state"]["pause_reason"]
        assert reason.startswith("supervisor: token failed 1 times within 60s")
        assert "check the engine log for why token failed" in reason
        assert "resume entries on the dashboard's Risk page" in reason
        assert "Risk page" in risk["action_needed"]
        # /api/health may answer from rows up to WEB_HEALTH_CACHE_S (1 s) old
        health = eventually(lambda: (x := api.client.get("/api/health").json)["entries_paused"]
                            and x, timeout=5)
        assert health["entries_paused"] is True and health["paused_by"] == ["supervisor"]
        assert "repeated failures of the token actor" in health["action_needed"]
        assert "engine log" in health["action_needed"]
        assert "resume entries on the Risk page (POST /api/risk/resume)" in health["action_needed"]
        alerts = eventually(lambda: [e for e in tap.entries() if e.type == "ActorEscalated"])
        assert alerts[0].fields["reason"] == reason.removeprefix("supervisor: ")  # the alert
    finally:
        h.stop()
