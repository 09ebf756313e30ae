"""why_blocked: the event guard, the risk envelope, slots and the last battle-log row."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from psycopg.types.json import Jsonb

from engine.events.model import MarketEvent
from engine.events.store import upsert_events
from engine.events.why import near_weekly_expiry, why_blocked
from engine.market.calendar import NseCalendar
from engine.store.tx import transaction
from engine.strategies.registry import UnknownStrategy
from engine.timeutil import IST

CAL = NseCalendar()
THU = datetime(2025, 2, 6, 11, 0, tzinfo=IST)      # the day before RBI (Fri 7 Feb 2025)
RBI = MarketEvent(date=date(2025, 2, 7), time=time(10, 0), kind="RBI_MPC", title="RBI MPC decision",
                  impact="HIGH", country="IN", source="RBI", source_url="https://rbi.org.in")


def _seed(pool, *, pause: str | None = None, used: int = 0) -> None:
    with transaction(pool) as conn:
        upsert_events(conn, [RBI])
        conn.execute("INSERT INTO strategy_battle_log (created_at, trade_date, selected_strategy,"
                     " eligibility, rejections) VALUES (%s, %s, NULL, %s, %s)",
                     (THU - timedelta(minutes=5), THU.date(), Jsonb({"DC": True, "IC": False}),
                      Jsonb({"DC": ["front not rich: near − far IV -0.40 vol pts"]})))
        conn.execute("INSERT INTO runtime_state (key, value) VALUES ('strategy_slots', %s)",
                     (Jsonb({"dc_family": {"used": used, "limit": 1, "tags": ["DC-1"] * used}}),))
        if pause:
            conn.execute("UPDATE risk_envelope_state SET pause_reason = %s, paused_until = %s",
                         (pause, THU + timedelta(hours=2)))


def test_why_blocked_names_the_event_the_pause_the_slots_and_the_last_cycle(pool) -> None:
    _seed(pool, pause="daily loss cap", used=1)
    got = why_blocked(pool, "DC", THU, calendar=CAL)
    assert got["blocked"] is True and got["near_expiry"] == "2025-02-13"
    assert got["reasons"] == [
        "risk paused: daily loss cap (until 2025-02-06T13:00:00+05:30)",
        "dc_family slots full (1/1)",
        "blocked: RBI MPC decision 2025-02-07 10:00 IST (HIGH) within 1 day "
        "(DC_EVENT_BLOCK_DAYS_BEFORE=1)"]
    assert got["event_guard"] == got["reasons"][-1:]
    assert got["slots"]["used"] == 1 and got["slots"]["family"] == "dc_family"
    assert got["last_cycle"]["reasons"] == ["front not rich: near − far IV -0.40 vol pts"]
    assert got["last_cycle"]["eligible"] is True and got["last_cycle"]["selected_strategy"] is None
    assert got["upcoming_events"][0]["title"] == "RBI MPC decision"
    assert got["guard_settings"]["DC_EVENT_BLOCK_DAYS_BEFORE"] == 1


def test_after_the_event_and_the_pause_only_the_last_cycle_explains(pool) -> None:
    _seed(pool, pause="daily loss cap")
    mon = datetime(2025, 2, 10, 11, 0, tzinfo=IST)        # pause over, RBI behind
    got = why_blocked(pool, "DC", mon, calendar=CAL)
    assert got["reasons"] == [] and got["event_guard"] == []
    assert got["blocked"] is True                        # the last cycle recorded why not
    ic = why_blocked(pool, "IC", THU, calendar=CAL)
    assert ic["slots"]["family"] == "IC" and ic["slots"]["used"] is None
    assert any("RBI MPC decision" in r for r in ic["reasons"])
    with pytest.raises(UnknownStrategy, match="expected one of CAL_ARB, DC, MDC, IC"):
        why_blocked(pool, "XX", THU, calendar=CAL)


def test_near_weekly_expiry_skips_today_on_an_expiry_day() -> None:
    assert near_weekly_expiry(CAL, date(2025, 2, 6)) == date(2025, 2, 13)
    assert near_weekly_expiry(CAL, date(2025, 2, 5)) == date(2025, 2, 6)
