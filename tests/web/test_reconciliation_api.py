"""GET /api/reconciliation/status: the start-up gate, the last check and the audit rows of
the last days per action (the Risk page's reconciliation card)."""

from __future__ import annotations

from psycopg.types.json import Jsonb


def _seed(pool) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO runtime_state (key, value, updated_at) VALUES ('reconciliation',"
                     " %s, now())", (Jsonb({"startup_done": True, "waiting": None,
                                            "last_check": {"at": "2025-02-04T10:15:00+05:30",
                                                           "findings": 1, "heals": 1,
                                                           "adoptions": 0, "differences": []}}),))
        for action, tag, age in (("CONFIRMED_FLAT_REMOVAL", "DC-1", "1 hour"),
                                 ("CONFIRMED_FLAT_REMOVAL", "DC-2", "2 hours"),
                                 ("ORPHAN_ALERT", None, "3 hours"),
                                 ("ORPHAN_ADOPTION", "ADOPTED-1", "3 days")):
            conn.execute("INSERT INTO reconciliation_audit (created_at, action, trade_tag,"
                         " security_id, details) VALUES (now() - %s::interval, %s, %s, '4711',"
                         " '{}')", (age, action, tag))


def test_status_has_the_gate_the_last_check_and_counts_per_action(api, pool) -> None:
    assert api.get("/api/reconciliation/status").json["state"] is None  # paper: never written
    _seed(pool)
    got = api.get("/api/reconciliation/status").json
    assert got["state"]["startup_done"] is True and got["state"]["last_check"]["heals"] == 1
    assert {c["action"]: c["n"] for c in got["counts"]} == {"CONFIRMED_FLAT_REMOVAL": 2,
                                                           "ORPHAN_ALERT": 1}
    assert [r["trade_tag"] for r in got["latest"]] == ["ADOPTED-1", None, "DC-2", "DC-1"]
    week = api.get("/api/reconciliation/status?days=7").json
    assert {c["action"]: c["n"] for c in week["counts"]}["ORPHAN_ADOPTION"] == 1


def test_status_refuses_a_bad_days(api) -> None:
    for bad in ("0", "91", "x"):
        r = api.get(f"/api/reconciliation/status?days={bad}")
        assert r.status_code == 400 and "days" in r.json["error"]
