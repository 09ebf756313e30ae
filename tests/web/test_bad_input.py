"""Bad input at the web boundary: a 400 (or 413) naming what was wrong, never a 500, and
nothing written — no engine_commands row, no backtest row, no changed record."""

from __future__ import annotations

import json

import pytest

ONE_DAY = {"strategy": "DC", "start": "2025-02-03", "end": "2025-02-03"}


def _count(pool, table: str) -> int:
    with pool.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


@pytest.fixture
def nothing_queued(pool):
    """After the test: no command, no backtest run, no grid job was written."""
    yield
    for table in ("engine_commands", "backtest_runs", "backtest_grid_jobs"):
        assert _count(pool, table) == 0, f"{table} has rows after a refused request"


def _raw(api, method: str, path: str, body: str | bytes, **kw):
    return api.client.open(path, method=method, data=body, content_type="application/json",
                           headers={"X-CSRF-Token": api.csrf}, **kw)


# ------------------------------------------------------------------ deep JSON
def test_settings_put_with_100000_deep_json_is_400_not_500(api, pool):
    deep = '{"value": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = _raw(api, "PUT", "/api/settings/DC_LOTS", deep)
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json["field"] == "body" and "nested" in r.json["error"]
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM settings_audit").fetchone()["n"] == 0


def test_json_depth_limit_is_32_and_brackets_inside_strings_do_not_count(api, nothing_queued):
    at_limit = {"reason": "x", "idempotency_key": None}
    body = json.dumps(at_limit)
    for _ in range(31):  # 32 levels in all: still parsed, then refused by the field check
        body = '{"reason": "x", "extra": ' + body + "}"
    r = _raw(api, "POST", "/api/risk/pause", body)
    assert r.status_code == 400 and r.json["field"] == "extra"
    r = _raw(api, "POST", "/api/risk/pause", '{"x": ' + body + "}")  # 33 levels
    assert r.status_code == 400 and r.json["field"] == "body"
    assert "at most 32" in r.json["error"]
    # brackets in a string are text, not nesting
    r = _raw(api, "POST", "/api/risk/pause", json.dumps({"reason": "[{" * 200 + '\\"' + "]}"}))
    assert r.status_code == 400 and r.json["field"] == "reason"  # too long (400 chars > 300)


@pytest.mark.parametrize("body", ["{", '{"reason": NaN}', '{"reason": Infinity}', "\xff\xfe{",
                                  '{"reason": "x"} trailing', "[1]", '"text"', ""])
def test_malformed_json_body_is_400_body(api, body, nothing_queued):
    r = _raw(api, "POST", "/api/risk/pause", body.encode("latin-1"))
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json["field"] == "body"


# ------------------------------------------------------------------ NUL and control bytes
@pytest.mark.parametrize("notes", ["bad\x00note", "bell\x07", "esc\x1b[31m", "half \ud800"])
def test_control_characters_in_journal_notes_are_400_and_nothing_written(api, pool, notes):
    with pool.connection() as conn:
        conn.execute("INSERT INTO trade_journal (tag, trade_date, strategy, operator_notes)"
                     " VALUES ('T-1', current_date, 'DC', 'before')")
    r = _raw(api, "PATCH", "/api/journal/T-1", json.dumps({"notes": notes}))  # \u escapes
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json["field"] == "notes"
    with pool.connection() as conn:
        row = conn.execute("SELECT operator_notes FROM trade_journal WHERE tag = 'T-1'").fetchone()
    assert row["operator_notes"] == "before"
    ok = api.patch("/api/journal/T-1", json={"notes": "line one\nline two\ttab\r\n"})
    assert ok.status_code == 200 and ok.json["operator_notes"] == "line one\nline two\ttab"


def test_nul_in_journal_path_tag_is_400(api):
    r = api.patch("/api/journal/T%00X", json={"notes": "n"})
    assert r.status_code == 400 and r.json["field"] == "tag"


@pytest.mark.parametrize("path", ["/api/trades?strategy=D%00C", "/api/journal?strategy=%00",
                                  "/api/backtest/runs?strategy=DC%01"])
def test_control_characters_in_query_are_400_naming_the_parameter(api, path):
    r = api.get(path)
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json["field"] == "strategy" and "character" in r.json["error"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/risk/pause", {"\ud800": 1}, "\\ud800"),
    ("/api/backtest/run", {**ONE_DAY, "params": {"\ud800\x00": 1}}, "params"),  # bad key
    ("/api/commands", {"kind": "close_trade", "payload": {"ta\ud800": "x"}}, "payload"),
])
def test_lone_surrogate_in_a_key_is_named_in_a_400(api, path, body, field, nothing_queued):
    r = _raw(api, "POST", path, json.dumps(body))
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json["field"] == field


def test_nul_in_pause_reason_and_login_code_refused(api, app, nothing_queued):
    r = api.post("/api/risk/pause", json={"reason": "news\x00"})
    assert r.status_code == 400 and r.json["field"] == "reason"
    assert "U+0000" in r.json["error"]
    login = app.test_client().post("/api/auth/login", json={"code": "12345\x00"})
    assert login.status_code == 400 and login.json["field"] == "code"


# ------------------------------------------------------------------ body size
def test_body_over_the_limit_is_413_json_naming_the_limit(make_app, pool):
    from tests.web.conftest import Api

    api = Api(make_app(MAX_CONTENT_LENGTH=4096))
    big = json.dumps({"reason": "x" * 5000})
    r = _raw(api, "POST", "/api/risk/pause", big)
    assert r.status_code == 413
    assert r.json["field"] == "body" and "4096" in r.json["error"]
    assert _count(pool, "engine_commands") == 0
    small = api.post("/api/risk/pause", json={"reason": "fits"})
    assert small.status_code == 202 and _count(pool, "engine_commands") == 1


def test_default_body_limit_is_one_mebibyte(app):
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


# ------------------------------------------------------------------ backtests
@pytest.mark.parametrize(("params", "field", "words"), [
    ({"DC_LOTS": -1}, "params.DC_LOTS", "between 1 and 50"),
    ({"DC_LOTS": "two"}, "params.DC_LOTS", "expected an integer"),
    ({"DC_LOTS": 1.5}, "params.DC_LOTS", "expected an integer"),
    ({"DC_ENABLED": "maybe"}, "params.DC_ENABLED", "true or false"),
    ({"NOPE": 1}, "params.NOPE", "unknown setting"),
    ({"DC_LOT": 1}, "params.DC_LOT", "did you mean DC_LOTS"),
    ({"CAL_ARB_ZSCORE_ENTRY": "2\x00"}, "params.CAL_ARB_ZSCORE_ENTRY", "character"),
])
def test_backtest_run_params_checked_by_the_registry(api, params, field, words, nothing_queued):
    r = api.post("/api/backtest/run", json={**ONE_DAY, "params": params})
    assert r.status_code == 400, r.json
    assert r.json["field"] == field and words in r.json["error"]


@pytest.mark.parametrize(("body", "field", "words"), [
    ({**ONE_DAY, "strategy": "AI_MARKET"}, "strategy", "CAL_ARB, DC, MDC, IC"),
    ({**ONE_DAY, "strategy": "ZZZ"}, "strategy", "no backtest"),
    ({**ONE_DAY, "start": "2025-02-08", "end": "2025-02-09"}, "end", "no trading day"),
])
def test_backtest_run_strategy_and_dates_that_cannot_run_are_400(api, body, field, words,
                                                                 nothing_queued):
    r = api.post("/api/backtest/run", json=body)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field and words in r.json["error"]


def test_grid_search_of_4950_combinations_is_refused_with_the_count(api, nothing_queued):
    space = {"CAL_ARB_WINDOW": list(range(10, 109)), "DC_LOTS": list(range(1, 51))}
    r = api.post("/api/backtest/grid-search", json={**ONE_DAY, "param_space": space})
    assert r.status_code == 400, r.json
    assert r.json["field"] == "param_space"
    assert "4950 combinations" in r.json["error"] and "1000" in r.json["error"]


@pytest.mark.parametrize(("space", "field", "words"), [
    ({"DC_LOTS": [1, -1]}, "param_space.DC_LOTS", "between 1 and 50"),
    ({"NOPE": [1, 2]}, "param_space.NOPE", "unknown setting"),
    ({"grid": [1]}, "param_space.grid", "unknown setting"),
    ({"DC_LOTS": [1, 2, "1"]}, "param_space.DC_LOTS", "twice"),
])
def test_grid_search_values_checked_by_the_registry(api, space, field, words, nothing_queued):
    r = api.post("/api/backtest/grid-search", json={**ONE_DAY, "param_space": space})
    assert r.status_code == 400, r.json
    assert r.json["field"] == field and words in r.json["error"]


@pytest.mark.parametrize(("extra", "field", "words"), [
    ({"rank_by": "luck"}, "rank_by", "expected one of"),
    ({"oos_fraction": "0.95"}, "oos_fraction", "between 0.05 and 0.8"),
    ({"data": "snapshots"}, "data", "expected one of"),
    ({"strategy": "CAL_ARB"}, "data", "intraday samples"),
    ({"param_space": {}}, "param_space", "use_defaults"),
    ({"min_trades": -1}, "min_trades", "between"),
])
def test_grid_search_options_are_checked(api, extra, field, words, nothing_queued):
    body = {**ONE_DAY, "param_space": {"DC_LOTS": [1, 2]}, **extra}
    r = api.post("/api/backtest/grid-search", json=body)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field and words in r.json["error"]


def test_grid_search_unknown_strategy_is_400(api, nothing_queued):
    r = api.post("/api/backtest/grid-search", json={**ONE_DAY, "strategy": "AI_MARKET",
                                                    "param_space": {"DC_LOTS": [1, 2]}})
    assert r.status_code == 400 and r.json["field"] == "strategy"


def test_grid_search_at_the_cap_is_accepted(api, pool):
    space = {"CAL_ARB_WINDOW": list(range(10, 60)), "DC_LOTS": list(range(1, 21))}  # 1000
    r = api.post("/api/backtest/grid-search", json={**ONE_DAY, "param_space": space})
    assert r.status_code == 202 and r.json["combinations"] == 1000
    assert _count(pool, "backtest_grid_jobs") == _count(pool, "engine_commands") == 1


# ------------------------------------------------------------------ commands
def test_stage_change_for_unknown_strategy_is_400(api, nothing_queued):
    r = api.post("/api/go-live/NOPE", json={"stage": "live", "confirm": True})
    assert r.status_code == 400
    assert r.json["field"] == "strategy" and "DC" in r.json["error"]


def test_rerun_task_that_the_engine_does_not_run_is_400(api, nothing_queued):
    r = api.post("/api/commands", json={"kind": "rerun_task", "payload": {"task": "ai_market"}})
    assert r.status_code == 400 and r.json["field"] == "payload.task"
