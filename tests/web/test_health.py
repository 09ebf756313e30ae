"""/api/health says whether new entries are paused and what the operator must do."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.bus import write_heartbeat
from engine.timeutil import now_ist


def _pause(pool, reason: str | None) -> None:
    with pool.connection() as conn:
        conn.execute("UPDATE risk_envelope_state SET pause_reason = %s WHERE id = 1", (reason,))


def test_health_without_pause_has_no_action(app, pool):
    write_heartbeat(pool, now_ist())
    body = app.test_client().get("/api/health").json
    assert body["status"] == "ok"
    assert (body["entries_paused"], body["paused_by"], body["action_needed"]) == (False, [], None)


@pytest.mark.parametrize(("reason", "by", "words"), [
    ("supervisor: bridge is stuck: liveness ping unanswered for 31.0s. New entries are paused",
     "supervisor", ("repeated failures of the bridge actor", "engine log",
                    "resume entries on the Risk page (POST /api/risk/resume)")),
    ("executor: DC-1 on hold: exit filled but not recorded; check the broker", "executor",
     ("on hold", "Dhan", "resume entries on the Risk page")),
    ("token: Dhan token: expired", "token", ("token", "resume entries on the Risk page")),
    ("dashboard: news at 14:00", "dashboard", ("paused by dashboard", "when ready")),
])
def test_health_after_a_pause_says_who_and_what_to_do(app, pool, reason, by, words):
    _pause(pool, reason)
    body = app.test_client().get("/api/health").json  # public: no session
    assert body["entries_paused"] is True and body["paused_by"] == [by]
    for word in words:
        assert word in body["action_needed"]
    assert "31.0s" not in body["action_needed"]  # the full reason stays on the Risk page


def test_health_reports_a_stage_cap_pause_until_it_ends(app, pool):
    now = now_ist()
    write_heartbeat(pool, now)
    with pool.connection() as conn:
        conn.execute("UPDATE risk_envelope_stages SET pause_reason = 'loss streak 4 >= 4',"
                     " paused_until = %s WHERE stage = 'live'", (now + timedelta(hours=2),))
        conn.execute("UPDATE risk_envelope_stages SET pause_reason = 'daily loss cap',"
                     " paused_until = %s WHERE stage = 'paper'", (now - timedelta(minutes=1),))
    body = app.test_client().get("/api/health").json
    assert body["entries_paused"] is True and body["paused_by"] == ["risk (live)"]
    assert body["action_needed"].startswith("Live entries are paused by the risk envelope")
    assert "resume by themselves at" in body["action_needed"]
    assert body["status"] == "ok"  # a paused engine is still a healthy engine
