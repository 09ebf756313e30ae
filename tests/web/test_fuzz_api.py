"""Fuzz the JSON API's state-changing endpoints with generated bodies (hypothesis).

Properties: never a 500; a refused request (4xx) writes nothing (no engine_commands,
backtest_runs or backtest_grid_jobs row); and every accepted command is one the engine can
run — its strategy is known and every backtest parameter passes the settings registry.
"""

from __future__ import annotations

import json
from datetime import date
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.bus.dispatch import GO_LIVE_STRATEGIES
from engine.settings import all_knobs, knob
from engine.strategies.registry import names as strategy_names

KEYS = [k.key for k in all_knobs()]
TABLES = ("engine_commands", "backtest_runs", "backtest_grid_jobs")

text = st.text(max_size=12) | st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "\t\n",
                                                "DC", "[{", '"', "\\"])
path_text = text.filter(lambda t: "\ud800" not in t)  # a URL path is UTF-8 bytes
json_scalar = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
               | st.floats(allow_nan=False, allow_infinity=False, width=32) | text)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(text, inner, max_size=3), max_leaves=8)
knob_value = st.sampled_from([-1, 0, 1, 2, 10, 50, 51, 1000, "2.5", "0.5", 1.5, True, False,
                              "true", "15:00", "two", "1e1", "", None]) | json_scalar
param_key = st.sampled_from(KEYS) | st.sampled_from(["NOPE", "DC_LOT", "grid", "dc_lots"]) | text
day = st.dates(date(2024, 12, 28), date(2025, 3, 10)).map(date.isoformat) | text
strategy = st.sampled_from(["DC", "MDC", "IC", "AI_MARKET", "ZZZ", "dc"]) | text
path_strategy = st.sampled_from(["DC", "MDC", "IC", "AI_MARKET", "ZZZ", "dc"]) | path_text
path_key = st.sampled_from(KEYS) | st.sampled_from(["NOPE", "DC_LOT", "dc_lots"]) | path_text


def body(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    """Objects with some of ``fields`` (plausible values or junk) and maybe an extra key."""
    return st.fixed_dictionaries({}, optional={
        **{name: s | json_value for name, s in fields.items()}, "extra": json_value,
        "\ud800\x00": json_value})


ENDPOINTS = st.one_of(
    st.tuples(st.just("POST"), st.just("/api/risk/pause"),
              body({"reason": text, "idempotency_key": text})),
    st.tuples(st.just("POST"), st.just("/api/risk/resume"), body({"idempotency_key": text})),
    st.tuples(st.just("POST"), path_strategy.map(lambda s: "/api/go-live/" + quote(s, safe="")),
              body({"stage": st.sampled_from(["paper", "shadow", "live", "disabled", "moon"]),
                    "confirm": st.booleans()})),
    st.tuples(st.just("POST"), st.just("/api/commands"),
              body({"kind": st.sampled_from(["close_trade", "rerun_task", "pause_entries"]),
                    "payload": st.fixed_dictionaries({}, optional={"tag": text, "task": text})})),
    st.tuples(st.just("POST"), st.just("/api/backtest/run"),
              body({"strategy": strategy, "start": day, "end": day,
                    "params": st.dictionaries(param_key, knob_value, max_size=3)})),
    st.tuples(st.just("POST"), st.just("/api/backtest/grid-search"),
              body({"strategy": strategy, "start": day, "end": day,
                    "param_space": st.dictionaries(param_key, st.lists(knob_value, max_size=4)
                                                   | knob_value, max_size=3)})),
    st.tuples(st.just("PUT"), path_key.map(lambda k: "/api/settings/" + quote(k, safe="")),
              body({"value": knob_value})),
    st.tuples(st.just("PATCH"), path_text.map(lambda t: "/api/journal/" + quote(t or "x", safe="")),
              body({"notes": text})),
)


def _counts(pool) -> dict[str, int]:
    with pool.connection() as conn:
        return {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in TABLES}


def _runnable(pool, command_id: int) -> None:
    """The queued command passes the checks the engine itself applies when it runs it."""
    with pool.connection() as conn:
        cmd = conn.execute("SELECT kind, payload FROM engine_commands WHERE id = %s",
                           (command_id,)).fetchone()
        payload = cmd["payload"]
        if cmd["kind"] == "set_go_live_stage":
            assert payload["strategy"] in GO_LIVE_STRATEGIES
        elif cmd["kind"] == "run_backtest":
            run = conn.execute("SELECT * FROM backtest_runs WHERE run_id = %s",
                               (payload["run_id"],)).fetchone()
            assert run["strategy"] in strategy_names()
            for key, value in run["config_snapshot"].items():
                knob(key).coerce(str(value))
        elif cmd["kind"] == "run_grid":
            job = conn.execute("SELECT * FROM backtest_grid_jobs WHERE job_id = %s",
                               (payload["job_id"],)).fetchone()
            assert job["strategy"] in strategy_names()
            for key, values in job["param_space"].items():
                for value in values:
                    knob(key).coerce(str(value))
        else:
            assert cmd["kind"] in ("pause_entries", "resume_entries", "close_trade")


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=ENDPOINTS)
def test_fuzzed_bodies_never_500_and_refused_ones_write_nothing(api, pool, request):
    method, path, data = request
    before = _counts(pool)
    # \\u-escaped JSON text, so lone surrogates and NULs reach the server's parser
    r = api.client.open(path, method=method, data=json.dumps(data),
                        content_type="application/json", headers={"X-CSRF-Token": api.csrf})
    assert r.status_code < 500, (method, path, data, r.get_data(as_text=True)[:500])
    answer = r.get_json()
    assert isinstance(answer, dict), r.get_data(as_text=True)[:200]
    if r.status_code >= 400:
        assert answer.get("error"), answer
        assert _counts(pool) == before, (method, path, data, answer)
    elif r.status_code == 202:
        _runnable(pool, answer["command_id"])


READ_PATHS = ["/api/trades", "/api/journal", "/api/backtest/runs", "/api/metrics/days",
              "/api/pnl/equity", "/api/iv-snapshots", "/api/reconciliation/log", "/api/events",
              "/api/logs/tail", "/api/battle-log", "/api/commands", "/api/backtest/grid-search",
              "/api/settings/DC_LOTS/history"]
query_value = (path_text | st.integers(-10**20, 10**20).map(str)
               | st.dates(date(2024, 12, 28), date(2025, 3, 10)).map(date.isoformat))


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(READ_PATHS) | st.integers(-1, 10**20).map(
           lambda n: f"/api/backtest/runs/{n}"),
       params=st.dictionaries(st.sampled_from(["strategy", "from", "to", "limit", "status",
                                               "lines", "file"]), query_value, max_size=3))
def test_fuzzed_queries_never_500(api, path, params):
    r = api.get(path, query_string=params)
    assert r.status_code < 500, (path, params, r.get_data(as_text=True)[:500])
    assert isinstance(r.get_json(), dict)
