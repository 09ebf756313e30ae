"""A backtest's progress as the dashboard reads it: done/total sessions while the real
BacktestActor's worker process replays the real Feb-2025 bhavcopy, an ETA, 100 % only when it
completes; a failed run shows where it stopped, never a full bar."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pykka
import pyotp
import pytest

import web
from engine.actors.backtest import BacktestActor, _JobDone
from engine.actors.base import ActorContext
from engine.actors.directory import Directory
from engine.backtest import runs
from engine.clock import RealClock
from engine.messages.base import new
from engine.messages.commands import RunBacktest
from tests.backtest.eod_fixtures import bhav_db, bhav_pool, bhav_template  # noqa: F401
from tests.conftest import eventually
from tests.web.conftest import SECRET_KEY, Api

FEB3, FEB28 = date(2025, 2, 3), date(2025, 2, 28)


@pytest.fixture
def bt_api(bhav_pool, bhav_db, tmp_path) -> Iterator[Api]:  # noqa: F811
    app = web.create_app({"POOL": bhav_pool, "DATABASE_URL": bhav_db, "SECRET_KEY": SECRET_KEY,
                          "DASHBOARD_TOTP_SECRET": pyotp.random_base32(),
                          "CHAT_CHANNELS": ("telegram",), "VAR_DIR": str(tmp_path / "var"),
                          "LOG_DIR": str(tmp_path / "logs"), "START_BRIDGE": False,
                          "TESTING": True})
    yield Api(app)
    web.shutdown(app)


@pytest.fixture
def actor(bhav_pool) -> Iterator[pykka.ActorRef]:  # noqa: F811
    """The engine's BacktestActor with its own (spawned) worker process, on the test pool."""
    ctx = ActorContext(clock=RealClock(), directory=Directory(), services={"pool": bhav_pool})
    ref = BacktestActor.start(supervisor_ref=None, name="backtest", ctx=ctx)
    yield ref
    ref.stop(timeout=30)


@pytest.fixture
def thread_actor(bhav_pool) -> Iterator[pykka.ActorRef]:  # noqa: F811
    """The same actor running its jobs on a thread (no process start-up: for runs that fail
    at once)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as executor:
        ctx = ActorContext(clock=RealClock(), directory=Directory(),
                           services={"pool": bhav_pool, "backtest_executor": executor})
        ref = BacktestActor.start(supervisor_ref=None, name="backtest", ctx=ctx)
        yield ref
        ref.stop(timeout=30)


def _queue(api: Api, **body) -> int:
    r = api.post("/api/backtest/run", json={"strategy": "DC", "start": "2025-02-03",
                                            "end": "2025-02-28", **body})
    assert r.status_code == 202, r.get_json()
    return r.get_json()["run_id"]


def _tell_run(ref: pykka.ActorRef, api: Api, run_id: int) -> None:
    row = api.get(f"/api/backtest/runs/{run_id}").get_json()
    ref.tell(new(RunBacktest, RealClock(), strategy=row["strategy"],
                 start=date.fromisoformat(row["start_date"]), end=date.fromisoformat(row["end_date"]),
                 params=row["config_snapshot"], run_id=run_id))


def test_running_backtest_reports_intermediate_progress_then_completes(bt_api, actor) -> None:
    run_id = _queue(bt_api)
    queued = bt_api.get(f"/api/backtest/runs/{run_id}").get_json()
    assert queued["status"] == "pending" and queued["progress"]["done"] is None
    _tell_run(actor, bt_api, run_id)
    seen: list[dict] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = bt_api.get(f"/api/backtest/runs/{run_id}").get_json()
        seen.append({"status": body["status"], **body["progress"]})
        if body["status"] in ("complete", "error"):
            break
        time.sleep(0.03)
    final = seen[-1]
    assert final["status"] == "complete", seen[-3:]
    # the bar moved through values between 0 and the end while the worker replayed
    middle = [s for s in seen if s["status"] == "running" and s["done"] and s["done"] < s["total"]]
    assert middle, f"no intermediate progress among {len(seen)} reads: {seen[-5:]}"
    assert all(s["total"] == 19 and s["unit"] == "sessions" for s in middle)  # Feb 2025
    assert len({s["done"] for s in middle}) >= 2, "progress should advance in steps"
    assert any(s["eta_s"] is not None and s["eta_s"] >= 0 for s in middle)
    assert all(0 < s["pct"] < 100 for s in middle)
    dones = [s["done"] for s in seen if s["done"] is not None]
    assert dones == sorted(dones), "progress never goes back"
    assert final["done"] == final["total"] == 19 and final["pct"] == 100 and final["eta_s"] == 0
    listed = next(r for r in bt_api.get("/api/backtest/runs").get_json()["runs"]
                  if r["run_id"] == run_id)
    assert listed["progress"]["done"] == 19 and "equity_curve" not in listed["metrics_json"]


def test_failed_run_shows_a_failed_state_not_a_full_bar(bt_api, thread_actor,
                                                        bhav_pool) -> None:  # noqa: F811
    actor = thread_actor
    # refused by the replay itself when it starts (a range before NIFTY weeklies existed)
    with bhav_pool.connection() as conn:
        early = conn.execute("INSERT INTO backtest_runs (strategy, start_date, end_date,"
                             " config_snapshot) VALUES ('DC', '2018-01-01', '2018-01-31',"
                             " '{\"BT_DATA\": \"bhavcopy\"}') RETURNING run_id").fetchone()["run_id"]
    _tell_run(actor, bt_api, early)
    failed = eventually(lambda: (b := bt_api.get(f"/api/backtest/runs/{early}").get_json())
                        ["status"] == "error" and b, timeout=60)
    assert "weekly" in failed["error_text"]
    assert float(failed["progress_pct"]) == 0 and failed["progress"]["pct"] == 0
    assert failed["progress"]["eta_s"] is None and failed["finished_at"]
    # a run that stops part-way keeps the progress it reached (the actor's finish, and the
    # CLI's runs.finish_run)
    with bhav_pool.connection() as conn:
        ids = [conn.execute("INSERT INTO backtest_runs (strategy, start_date, end_date, status,"
                            " started_at, progress_done, progress_total, progress_pct, progress_at)"
                            " VALUES ('DC', %s, %s, 'running', now(), 5, 19, 26.32, now())"
                            " RETURNING run_id", (FEB3, FEB28)).fetchone()["run_id"]
               for _ in range(2)]
    actor.tell(_JobDone("run", ids[0], None, "BrokenProcessPool: worker died"))
    runs.finish_run(bhav_pool, ids[1], None, "DataRefused: no rows")
    for run_id in ids:
        body = eventually(lambda rid=run_id: (b := bt_api.get(f"/api/backtest/runs/{rid}").get_json())
                          ["status"] == "error" and b)
        assert body["progress"]["done"] == 5 and body["progress"]["total"] == 19
        assert body["progress"]["pct"] == pytest.approx(26.32) and body["progress"]["eta_s"] is None


def test_progress_writer_counts_steps_and_never_touches_a_finished_row(bhav_pool) -> None:  # noqa: F811
    run_id = runs.create_run(bhav_pool, "DC", FEB3, FEB28, {})
    assert runs.start_run(bhav_pool, run_id)
    writer = runs.ProgressWriter(run_id, pool=bhav_pool, every=0)
    for n in range(4):
        writer((n + 1) / 4)  # as a replay reports its N steps
    assert writer.written == [(1, 4), (2, 4), (3, 4), (4, 4)]
    runs.finish_run(bhav_pool, run_id, {"trades": [], "metrics": {}}, None)
    with runs.ProgressWriter(run_id, pool=bhav_pool, every=0) as late:
        late.steps(1, 4)  # a late write after the run finished changes nothing
    with bhav_pool.connection() as conn:
        row = conn.execute("SELECT * FROM backtest_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert (row["status"], row["progress_done"], row["progress_total"]) == ("complete", 4, 4)
    assert float(row["progress_pct"]) == 100
