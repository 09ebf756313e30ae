"""Endpoints that act: commands to the engine, settings with audit, backtests, OpenAPI."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from web.docs import openapi


def _command(pool, command_id):
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM engine_commands WHERE id = %s", (command_id,)).fetchone()


def test_risk_get_pause_resume_become_commands(api, pool):
    assert api.get("/api/risk").json["paused"] is False
    r = api.post("/api/risk/pause", json={"reason": "news"})
    assert r.status_code == 202
    row = _command(pool, r.json["command_id"])
    assert (row["kind"], row["payload"], row["requested_by"]) == (
        "pause_entries", {"reason": "news"}, "dashboard")
    resume = api.post("/api/risk/resume", json={})
    assert _command(pool, resume.json["command_id"])["kind"] == "resume_entries"
    got = api.get(f"/api/commands/{resume.json['command_id']}").json
    assert got["status"] == "pending"
    assert api.get("/api/commands").json["commands"][0]["id"] == resume.json["command_id"]


def test_kill_switch_needs_confirm_then_becomes_a_command(api, pool):
    refused = api.post("/api/risk/kill-switch", json={"reason": "news"})
    assert refused.status_code == 400 and "confirm" in refused.json["error"]
    refused = api.post("/api/risk/kill-switch", json={"reason": "news", "confirm": False})
    assert refused.status_code == 400 and "confirm" in refused.json["error"]
    r = api.post("/api/risk/kill-switch", json={"reason": "news", "confirm": True})
    assert r.status_code == 202
    row = _command(pool, r.json["command_id"])
    assert (row["kind"], row["payload"], row["requested_by"]) == (
        "kill_switch", {"reason": "news", "confirm": True}, "dashboard")


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/risk/kill-switch", {"confirm": True}, "reason"),
    ("/api/risk/pause", {}, "reason"),
    ("/api/risk/pause", {"reason": ""}, "reason"),
    ("/api/risk/pause", {"reason": "x" * 301}, "reason"),
    ("/api/risk/resume", {"why": 1}, "why"),
    ("/api/go-live/DC", {"stage": "live"}, "confirm"),
    ("/api/go-live/DC", {"stage": "live", "confirm": False}, "confirm"),
    ("/api/go-live/DC", {"stage": "moon", "confirm": True}, "stage"),
    ("/api/go-live/D%20C", {"stage": "live", "confirm": True}, "strategy"),
    ("/api/commands", {"kind": "pause_entries", "payload": {}}, "kind"),
    ("/api/commands", {"kind": "close_trade"}, "payload"),
    ("/api/commands", {"kind": "close_trade", "payload": {}}, "payload.tag"),
    ("/api/commands", {"kind": "close_trade", "payload": {"tag": "NOPE"}}, "payload.tag"),
    ("/api/commands", {"kind": "rerun_task", "payload": {"task": "Bad Task"}}, "payload.task"),
    ("/api/backtest/run", {"strategy": "DC", "start": "2025-01-01"}, "end"),
    ("/api/backtest/run", {"strategy": "dc", "start": "2025-01-01", "end": "2025-01-02"},
     "strategy"),
    ("/api/backtest/run", {"strategy": "DC", "start": "2025-02-01", "end": "2025-01-02"}, "end"),
    ("/api/backtest/run", {"strategy": "DC", "start": "2025-01-01", "end": "2025-01-02",
                           "params": []}, "params"),
    ("/api/backtest/run", {"strategy": "DC", "start": "2025-01-01", "end": "2025-01-02",
                           "params": {"A": {"x": 1}}}, "params.A"),
    ("/api/backtest/grid-search", {"strategy": "DC", "start": "2025-01-01", "end": "2025-01-02",
                                   "param_space": {}}, "param_space"),
    ("/api/backtest/grid-search", {"strategy": "DC", "start": "2025-01-01", "end": "2025-01-02",
                                   "param_space": {"A": 3}}, "param_space.A"),
    ("/api/backtest/grid-search", {"strategy": "DC", "start": "2025-01-01", "end": "2025-01-02",
                                   "param_space": {"CAL_ARB_WINDOW": list(range(10, 70)),
                                                   "DC_LOTS": list(range(1, 21))}},
     "param_space"),
    ("/api/settings/DC_LOTS", {"value": None}, "value"),
    ("/api/settings/DC_LOTS", {"value": [1]}, "value"),
])
def test_action_bad_body_400_names_field(api, path, body, field):
    method = api.put if path.startswith("/api/settings") else api.post
    r = method(path, json=body)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field


def test_go_live_list_and_set_stage_command(api, pool):
    with pool.connection() as conn:
        conn.execute("INSERT INTO go_live_state (strategy, stage) VALUES ('DC', 'paper')")
    assert api.get("/api/go-live").json["strategies"][0]["stage"] == "paper"
    r = api.post("/api/go-live/DC", json={"stage": "shadow", "confirm": True})
    assert r.status_code == 202
    assert _command(pool, r.json["command_id"])["payload"] == {
        "strategy": "DC", "stage": "shadow", "confirm": True}


def test_generic_command_close_trade_and_idempotency_key(api, pool):
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at)"
                     " VALUES ('DC-9', 'DC', 'paper', current_date, now())")
    body = {"kind": "close_trade", "payload": {"tag": "DC-9"}, "idempotency_key": "abc"}
    first = api.post("/api/commands", json=body)
    second = api.post("/api/commands", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json["command_id"] == second.json["command_id"]
    rerun = api.post("/api/commands", json={"kind": "rerun_task", "payload": {"task": "ai_market"}})
    assert rerun.status_code == 400 and rerun.json["field"] == "payload.task"  # no such task yet
    assert api.get("/api/commands/999999").status_code == 404


def test_settings_list_set_reset_history_with_audit(api):
    listing = api.get("/api/settings").json["settings"]
    lots = next(s for s in listing if s["key"] == "DC_LOTS")
    assert lots["overridden"] is False and "between 1 and 50" in lots["allowed"]
    r = api.put("/api/settings/DC_LOTS", json={"value": 3})
    assert r.status_code == 200 and r.json["new_value"] == "3"
    assert api.put("/api/settings/DC_ENABLED", json={"value": False}).json["new_value"] == "false"
    bad = api.put("/api/settings/DC_LOTS", json={"value": "99"})
    assert bad.status_code == 400 and bad.json["field"] == "value"
    assert "between 1 and 50" in bad.json["error"]
    assert api.put("/api/settings/NOPE", json={"value": 1}).status_code == 404
    assert api.delete("/api/settings/DC_LOTS").json["old_value"] == "3"
    history = api.get("/api/settings/DC_LOTS/history").json["history"]
    assert [(h["old_value"], h["new_value"], h["updated_by"]) for h in history] == [
        ("3", None, "dashboard"), (None, "3", "dashboard")]
    assert api.get("/api/settings/NOPE/history").status_code == 404
    assert api.get("/api/settings/DC_LOTS/history?limit=0").json["field"] == "limit"


def test_backtest_run_row_and_command_then_read(api, pool):
    r = api.post("/api/backtest/run", json={"strategy": "DC", "start": "2025-02-03",
                                            "end": "2025-02-28", "params": {"DC_LOTS": 2}})
    assert r.status_code == 202
    run_id = r.json["run_id"]
    assert _command(pool, r.json["command_id"])["payload"] == {"run_id": run_id}
    with pool.connection() as conn:
        conn.execute("UPDATE backtest_runs SET status = 'complete', trades_json = %s,"
                     " metrics_json = %s WHERE run_id = %s",
                     (Jsonb([{"tag": "B1", "pnl": "10.5"}]), Jsonb({"net": "10.5"}), run_id))
    runs = api.get("/api/backtest/runs").json["runs"]
    assert runs[0]["run_id"] == run_id and runs[0]["trade_count"] == 1
    assert "trades_json" not in runs[0]
    full = api.get(f"/api/backtest/runs/{run_id}").json
    assert full["trades_json"][0]["pnl"] == "10.5" and full["config_snapshot"] == {
        "DC_LOTS": 2, "BT_DATA": "bhavcopy", "BT_FILL_MODEL": "close"}
    assert api.get("/api/backtest/runs/424242").status_code == 404


def test_backtest_grid_search_job_and_command(api, pool):
    space = {"CAL_ARB_ZSCORE_ENTRY": [1.5, 2.0], "DC_LOTS": [1, 2, 3]}
    r = api.post("/api/backtest/grid-search", json={"strategy": "DC", "start": "2025-02-03",
                                                    "end": "2025-02-28", "param_space": space})
    assert r.status_code == 202 and r.json["combinations"] == 6
    job = api.get(f"/api/backtest/grid-search/{r.json['job_id']}").json
    assert job["status"] == "pending" and job["param_space"]["DC_LOTS"] == [1, 2, 3]
    assert _command(pool, r.json["command_id"])["kind"] == "run_grid"
    assert api.get("/api/backtest/grid-search").json["jobs"][0]["job_id"] == r.json["job_id"]
    assert api.get("/api/backtest/grid-search/999").status_code == 404
    assert job["param_space"]["_options"] == {
        "data": "bhavcopy", "fill_model": "close", "rank_by": "sharpe", "min_trades": 5,
        "oos_fraction": None, "workers": None, "source": "dashboard"}


def test_backtest_grid_search_with_the_declared_space_and_options(api, pool):
    from engine.strategies.registry import get

    r = api.post("/api/backtest/grid-search", json={
        "strategy": "MDC", "start": "2025-02-03", "end": "2025-02-28", "use_defaults": True,
        "param_space": {"MDC_MIN_EDGE_PCT": ["1", "2"]}, "rank_by": "net_pnl",
        "oos_fraction": "0.3", "min_trades": 2})
    assert r.status_code == 202, r.json
    declared = get("MDC").grid_space
    assert declared, "MDC declares a space"
    job = api.get(f"/api/backtest/grid-search/{r.json['job_id']}").json
    space = {k: v for k, v in job["param_space"].items() if k != "_options"}
    assert space["MDC_MIN_EDGE_PCT"] == ["1", "2"]  # given values win over the declared ones
    assert set(space) == set(declared) | {"MDC_MIN_EDGE_PCT"}
    n = 1
    for values in space.values():
        n *= len(values)
    assert r.json["combinations"] == n
    assert job["param_space"]["_options"]["rank_by"] == "net_pnl"
    assert float(job["param_space"]["_options"]["oos_fraction"]) == 0.3


def test_openapi_documents_every_api_route(api, app):
    spec = api.get("/docs/openapi.json").json
    assert spec["openapi"].startswith("3.") and spec == openapi()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    actual = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            actual.add((method, path))
    assert actual == documented
    assert api.get("/docs").status_code == 200
