"""/api/events (events, holidays, expiries) and /api/events/why-blocked (400 / 200)."""

from __future__ import annotations

from datetime import date, time

from engine.events.model import MarketEvent
from engine.events.store import upsert_events
from engine.store.tx import transaction
from engine.timeutil import now_ist


def test_events_lists_events_holidays_and_expiries(api, pool):
    with transaction(pool) as conn:
        upsert_events(conn, [MarketEvent(date=date(2025, 2, 7), time=time(10, 0), kind="RBI_MPC",
                                         title="RBI MPC decision", impact="HIGH", country="IN",
                                         source="RBI", source_url="https://rbi.org.in")])
        conn.execute("INSERT INTO nse_holidays (holiday_date, description) VALUES"
                     " ('2025-02-26', 'Mahashivratri')")
    body = api.get("/api/events?from=2025-02-01&to=2025-02-28").json
    assert [(e["event_date"], e["name"], e["risk_level"], e["category"]) for e in body["events"]] == [
        ("2025-02-07", "RBI MPC decision", "high", "RBI_MPC")]
    assert body["events"][0]["source_url"] == "https://rbi.org.in"
    assert [h["holiday_date"] for h in body["holidays"]] == ["2025-02-26"]
    # Thursday weeklies of Feb 2025; the 27th is the monthly (from the stored calendar)
    assert body["expiries"] == [{"date": "2025-02-06", "monthly": False},
                                {"date": "2025-02-13", "monthly": False},
                                {"date": "2025-02-20", "monthly": False},
                                {"date": "2025-02-27", "monthly": True}]
    r = api.get("/api/events?from=2025-01-01&to=2027-01-01")
    assert r.status_code == 400 and r.json["field"] == "to"


def test_why_blocked_unknown_strategy_is_400_listing_the_valid_ones(api):
    r = api.get("/api/events/why-blocked?strategy=XX")
    assert r.status_code == 400 and r.json["field"] == "strategy"
    assert "CAL_ARB, DC, MDC, IC" in r.json["error"]
    assert api.get("/api/events/why-blocked").status_code == 400


def test_why_blocked_answers_for_a_strategy(api, pool):
    today = now_ist().date()
    with transaction(pool) as conn:
        upsert_events(conn, [MarketEvent(date=today, time=time(10, 0), kind="BUDGET",
                                         title="Union Budget test", impact="HIGH", country="IN",
                                         source="MoF", source_url="https://www.indiabudget.gov.in/")])
    body = api.get("/api/events/why-blocked?strategy=DC").json
    assert body["strategy"] == "DC" and body["blocked"] is True
    # whether today is a session depends on the wall clock; the event is named either way
    assert any("Union Budget test" in r for r in body["reasons"])
    assert body["upcoming_events"][0]["title"] == "Union Budget test"
