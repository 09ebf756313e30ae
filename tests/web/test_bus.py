"""The PostgreSQL bridge: commands claimed exactly once, stale claims, events, heartbeat."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from engine.bus import (
    CommandBus,
    CommandError,
    EventTooLarge,
    build_event,
    enqueue_command,
    publish_event,
    write_heartbeat,
)
from engine.store.notify import Listener
from engine.store.tx import transaction
from engine.timeutil import now_ist
from tests.conftest import eventually


class Recorder:
    def __init__(self, fail_kinds: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()
        self.fail_kinds = fail_kinds

    def __call__(self, command):
        with self.lock:
            self.calls.append((command.claimed_by, command.id, command.kind))
        if command.kind in self.fail_kinds:
            raise RuntimeError(f"cannot {command.kind}")
        return {"ok": True, "echo": command.payload}


def _status(pool, command_id):
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM engine_commands WHERE id = %s", (command_id,)).fetchone()


def test_command_issued_while_no_engine_runs_executed_once_after_bus_starts(pool, db_url):
    with transaction(pool) as conn:
        cid = enqueue_command(conn, "close_trade", {"tag": "T1"}, requested_by="test")
    recorder = Recorder()
    bus = CommandBus(pool, db_url, recorder, "engine-a", poll_interval=0.2).start()
    try:
        row = eventually(lambda: (r := _status(pool, cid))["status"] == "done" and r)
        assert row["result"] == {"ok": True, "echo": {"tag": "T1"}}
        assert row["claimed_by"] == "engine-a" and row["finished_at"] is not None
        with transaction(pool) as conn:  # a new one arrives by NOTIFY while running
            cid2 = enqueue_command(conn, "pause_entries", {"reason": "x"}, requested_by="test")
        eventually(lambda: _status(pool, cid2)["status"] == "done", timeout=2)
    finally:
        bus.stop()
    assert [c[1] for c in recorder.calls] == [cid, cid2]


def test_two_buses_racing_claim_each_command_once(pool, db_url):
    with transaction(pool) as conn:
        ids = [enqueue_command(conn, "rerun_task", {"task": f"t{i}"}, requested_by="test")
               for i in range(60)]
    recorder = Recorder()
    buses = [CommandBus(pool, db_url, recorder, f"engine-{n}", poll_interval=0.1)
             for n in "ab"]
    for bus in buses:
        bus.start()
    try:
        eventually(lambda: len(recorder.calls) >= 60, timeout=15)
        eventually(lambda: all(_status(pool, i)["status"] == "done" for i in ids[-3:]))
    finally:
        for bus in buses:
            bus.stop()
    counts = Counter(c[1] for c in recorder.calls)
    assert sorted(counts) == ids and set(counts.values()) == {1}
    with pool.connection() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM engine_commands GROUP BY 1").fetchall()
    assert rows == [{"status": "done", "n": 60}]


def test_dispatch_error_recorded_and_result_notified(pool, db_url):
    seen = []
    listener = Listener(db_url, ["engine_command_results"], lambda c, p: seen.append(p)).start()
    bus = CommandBus(pool, db_url, Recorder(fail_kinds=("close_trade",)), "engine-e")
    try:
        with transaction(pool) as conn:
            cid = enqueue_command(conn, "close_trade", {"tag": "X"}, requested_by="test")
        assert bus.drain() == 1
        row = _status(pool, cid)
        assert row["status"] == "error" and "cannot close_trade" in row["error"]
        eventually(lambda: seen)
        assert seen[0] == {"id": cid, "kind": "close_trade", "status": "error"}
    finally:
        listener.stop()


def test_stale_claim_non_idempotent_marked_error_idempotent_requeued(pool, db_url):
    with transaction(pool) as conn:
        close = enqueue_command(conn, "close_trade", {"tag": "T"}, requested_by="test")
        pause = enqueue_command(conn, "pause_entries", {"reason": "r"}, requested_by="test")
        conn.execute("UPDATE engine_commands SET status = 'claimed', claimed_by = 'dead',"
                     " claimed_at = now() - interval '30 minutes'")
    recorder = Recorder()
    bus = CommandBus(pool, db_url, recorder, "engine-new", stale_after=timedelta(minutes=10))
    assert bus.recover_stale() == 2
    assert _status(pool, close)["status"] == "error"
    assert _status(pool, close)["error"] == "engine restarted while running; check state"
    assert _status(pool, pause)["status"] == "pending"
    assert bus.drain() == 1 and recorder.calls == [("engine-new", pause, "pause_entries")]


def test_recent_claim_not_touched_by_recovery(pool, db_url):
    with transaction(pool) as conn:
        cid = enqueue_command(conn, "close_trade", {"tag": "T"}, requested_by="test")
        conn.execute("UPDATE engine_commands SET status = 'claimed', claimed_by = 'other',"
                     " claimed_at = now()")
    assert CommandBus(pool, db_url, Recorder(), "e").recover_stale() == 0
    assert _status(pool, cid)["status"] == "claimed"


def test_enqueue_idempotency_key_returns_same_command(pool):
    with transaction(pool) as conn:
        a = enqueue_command(conn, "resume_entries", {}, requested_by="t", idempotency_key="k1")
        b = enqueue_command(conn, "resume_entries", {}, requested_by="t", idempotency_key="k1")
    assert a == b


def test_enqueue_bad_kind_or_missing_payload_field_refused(pool):
    with transaction(pool) as conn:
        with pytest.raises(CommandError, match="kind"):
            enqueue_command(conn, "launch_rocket", {}, requested_by="t")
        with pytest.raises(CommandError, match=r"payload\.tag"):
            enqueue_command(conn, "close_trade", {}, requested_by="t")


def test_publish_event_delivers_small_json(pool, db_url):
    seen = []
    listener = Listener(db_url, ["engine_events"], lambda c, p: seen.append(p)).start()
    try:
        sent = publish_event(pool, "mtm", {"tag": "T1", "mtm": "12.5"})
        eventually(lambda: seen)
    finally:
        listener.stop()
    assert seen[0] == sent and seen[0]["kind"] == "mtm" and seen[0]["data"]["tag"] == "T1"
    assert seen[0]["ts"].endswith("+05:30")


def test_build_event_too_large_truncated_or_refused():
    big = {"blob": "x" * 9000}
    assert build_event("mtm", big)["data"] == {"truncated": True, "bytes": pytest.approx(9050, abs=100)}
    with pytest.raises(EventTooLarge):
        build_event("mtm", big, strict=True)
    with pytest.raises(ValueError, match="unknown event kind"):
        build_event("fireworks", {})


def test_write_heartbeat_sets_runtime_state_and_health_age(pool, api):
    write_heartbeat(pool, now_ist() - timedelta(seconds=5))
    with pool.connection() as conn:
        value = conn.execute("SELECT value FROM runtime_state WHERE key = 'engine_heartbeat'"
                             ).fetchone()["value"]
    assert set(value) == {"ts", "pid", "engine_time", "clock"}
    health = api.client.get("/api/health").json
    assert 4 <= health["engine_heartbeat_age_s"] < 60 and health["status"] == "ok"


def test_old_risk_adding_commands_expire_risk_reducing_ones_still_run(pool, db_url):
    """A queue left while the engine was down: closes and pauses still run (they reduce risk),
    a resume or a promotion to live an hour old does not."""
    with transaction(pool) as conn:
        ids = {
            "close": enqueue_command(conn, "close_trade", {"tag": "T"}, requested_by="t"),
            "pause": enqueue_command(conn, "pause_entries", {"reason": "r"}, requested_by="t"),
            "down": enqueue_command(conn, "set_go_live_stage", {"strategy": "DC", "stage": "paper",
                                    "confirm": True}, requested_by="t"),
            "resume": enqueue_command(conn, "resume_entries", {}, requested_by="t"),
            "live": enqueue_command(conn, "set_go_live_stage", {"strategy": "DC", "stage": "live",
                                    "confirm": True}, requested_by="t"),
        }
        conn.execute("UPDATE engine_commands SET created_at = now() - interval '1 hour'")
        fresh = enqueue_command(conn, "resume_entries", {}, requested_by="t")
    recorder = Recorder()
    bus = CommandBus(pool, db_url, recorder, "engine-x")
    assert bus.drain() == 6
    ran = {c[1] for c in recorder.calls}
    assert ran == {ids["close"], ids["pause"], ids["down"], fresh}
    for name in ("resume", "live"):
        row = _status(pool, ids[name])
        assert row["status"] == "error" and row["error"].startswith("expired:")
        assert "send it again" in row["error"]
