"""The event guard on a hand-built fortnight: the Budget Saturday session (2025-02-01) and the
RBI MPC decision of Friday 2025-02-07, plus FOMC and CPI timing and a holiday."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from engine.events.guard import event_block, event_blocks, landing_session, sessions_between
from engine.events.model import MarketEvent
from engine.market.calendar import NseCalendar
from engine.timeutil import IST

# the real list for the weeks used: Sat 1 Feb 2025 is a session, Wed 26 Feb a holiday
CAL = NseCalendar(holidays={date(2025, 2, 26): "Mahashivratri"},
                  special_sessions={date(2025, 2, 1)}, covered_years=[2025])
NO_SATURDAY = NseCalendar(holidays={date(2025, 2, 26): "Mahashivratri"}, special_sessions=(),
                          covered_years=[2025])


def ev(d: date, hhmm: str | None, title: str, impact: str = "HIGH", kind: str = "RBI_MPC") -> MarketEvent:
    return MarketEvent(date=d, time=None if hhmm is None else time.fromisoformat(hhmm), kind=kind,
                       title=title, impact=impact, country="IN", source="test", source_url="")


BUDGET = ev(date(2025, 2, 1), "11:00", "Union Budget 2025-26", kind="BUDGET")
RBI = ev(date(2025, 2, 7), "10:00", "RBI MPC decision")
WEEK = (BUDGET, RBI, ev(date(2025, 2, 4), "12:00", "India WPI (Jan 2025)", "LOW", "IN_WPI"))


def at(d: date, hhmm: str = "10:30") -> datetime:
    return datetime.combine(d, time.fromisoformat(hhmm), tzinfo=IST)


def near(d: date) -> date:
    return next(e for e in CAL.weekly_expiries(d, 2) if e > d)


@pytest.mark.parametrize(("day", "expected"), [
    # Thu 30 Jan (the January monthly expiry): the Budget is 2 sessions ahead (Fri, Sat), but
    # the near expiry (6 Feb) would hold the short legs through it
    (date(2025, 1, 30), "blocked: Union Budget 2025-26 2025-02-01 11:00 IST (HIGH) before the near "
                        "expiry 2025-02-06 (DC_EVENT_BLOCK_NEAR_EXPIRY=true)"),
    (date(2025, 1, 31), "blocked: Union Budget 2025-26 2025-02-01 11:00 IST (HIGH) within 1 day "
                        "(DC_EVENT_BLOCK_DAYS_BEFORE=1)"),
    (date(2025, 2, 1), "blocked: Union Budget 2025-26 2025-02-01 11:00 IST (HIGH) today"),
    (date(2025, 2, 3), None),    # Mon: Budget one session ago, RBI after the 6 Feb near expiry
    (date(2025, 2, 5), None),    # Wed: RBI 2 sessions ahead, still after the near expiry
    (date(2025, 2, 6), "blocked: RBI MPC decision 2025-02-07 10:00 IST (HIGH) within 1 day "
                       "(DC_EVENT_BLOCK_DAYS_BEFORE=1)"),
    (date(2025, 2, 7), "blocked: RBI MPC decision 2025-02-07 10:00 IST (HIGH) today"),
    (date(2025, 2, 10), None),
])
def test_dc_defaults_over_the_budget_and_rbi_fortnight(day: date, expected: str | None) -> None:
    assert event_block("DC", WEEK, at(day), near(day), CAL) == expected


def test_days_are_trading_days_from_the_calendar_not_weekdays() -> None:
    # with the Saturday session, Thu 30 Jan is 2 sessions before the Budget
    p = {"DC_EVENT_BLOCK_DAYS_BEFORE": 2}
    assert event_block("DC", WEEK, at(date(2025, 1, 30)), near(date(2025, 1, 30)), CAL, p) == (
        "blocked: Union Budget 2025-26 2025-02-01 11:00 IST (HIGH) within 2 days "
        "(DC_EVENT_BLOCK_DAYS_BEFORE=2)")
    assert event_block("DC", WEEK, at(date(2025, 1, 29)), date(2025, 1, 30), CAL, p) is None
    # without it, a Saturday Budget is first traded on Monday: Friday is 1 day before, Monday "today"
    assert landing_session(BUDGET, NO_SATURDAY) == date(2025, 2, 3)
    assert "within 1 day" in event_block("DC", (BUDGET,), at(date(2025, 1, 31)), None, NO_SATURDAY)
    assert event_block("DC", (BUDGET,), at(date(2025, 2, 3)), None, NO_SATURDAY).endswith("(HIGH) today")
    # a holiday in between does not count: Tue 25 Feb is 1 session before Thu 27 Feb
    thu = ev(date(2025, 2, 27), "10:00", "RBI MPC decision")
    assert sessions_between(CAL, date(2025, 2, 25), date(2025, 2, 27)) == 1
    assert "within 1 day" in event_block("DC", (thu,), at(date(2025, 2, 25)), None, CAL)
    assert sessions_between(CAL, date(2025, 2, 27), date(2025, 2, 25)) == -1


def test_days_after_and_zero_window() -> None:
    after = {"DC_EVENT_BLOCK_DAYS_AFTER": 1}
    assert event_block("DC", WEEK, at(date(2025, 2, 3)), near(date(2025, 2, 3)), CAL, after) == (
        "blocked: Union Budget 2025-26 2025-02-01 11:00 IST (HIGH) 1 day ago "
        "(DC_EVENT_BLOCK_DAYS_AFTER=1)")
    assert event_block("DC", WEEK, at(date(2025, 2, 4)), near(date(2025, 2, 4)), CAL, after) is None
    zero = {"DC_EVENT_BLOCK_DAYS_BEFORE": 0, "DC_EVENT_BLOCK_NEAR_EXPIRY": False}
    assert event_block("DC", WEEK, at(date(2025, 1, 31)), near(date(2025, 1, 31)), CAL, zero) is None
    assert event_block("DC", WEEK, at(date(2025, 2, 1)), near(date(2025, 2, 1)), CAL, zero) is not None


def test_dc_and_mdc_refuse_a_near_expiry_spanning_a_high_event_ic_does_not() -> None:
    wed = ev(date(2025, 2, 5), "10:00", "RBI MPC decision")   # before Thu 6 Feb near expiry
    mon = at(date(2025, 2, 3))
    for s in ("DC", "MDC"):
        assert event_block(s, (wed,), mon, date(2025, 2, 6), CAL) == (
            f"blocked: RBI MPC decision 2025-02-05 10:00 IST (HIGH) before the near expiry "
            f"2025-02-06 ({s}_EVENT_BLOCK_NEAR_EXPIRY=true)")
    assert event_block("IC", (wed,), mon, date(2025, 2, 6), CAL) is None
    assert event_block("DC", (wed,), mon, date(2025, 2, 6), CAL,
                       {"DC_EVENT_BLOCK_NEAR_EXPIRY": "false"}) is None
    # an event after the near expiry's session (23:30 IST on expiry day) is not spanned
    late = ev(date(2025, 2, 6), "23:30", "FOMC decision", kind="FOMC")
    assert event_block("DC", (late,), mon, date(2025, 2, 6), CAL) is None


def test_announcement_times_decide_the_session() -> None:
    # FOMC 29 Jan 2025 14:00 EST = 00:30 IST on 30 Jan: traded at that morning's open
    jan = ev(date(2025, 1, 30), "00:30", "FOMC decision", kind="FOMC")
    assert landing_session(jan, CAL) == date(2025, 1, 30)
    assert event_block("DC", (jan,), at(date(2025, 1, 30)), None, CAL).endswith("today")
    # FOMC 19 Mar 2025 14:00 EDT = 23:30 IST on 19 Mar: first traded on the 20th
    mar = ev(date(2025, 3, 19), "23:30", "FOMC decision", kind="FOMC")
    assert landing_session(mar, CAL) == date(2025, 3, 20)
    assert "within 1 day" in event_block("DC", (mar,), at(date(2025, 3, 19)), None, CAL)
    # India CPI at 16:00 (after the close) lands on the next session: MEDIUM blocks IC then
    cpi = ev(date(2025, 2, 12), "16:00", "India CPI (Jan 2025)", "MEDIUM", "IN_CPI")
    assert event_block("IC", (cpi,), at(date(2025, 2, 12)), None, CAL) is None
    assert event_block("IC", (cpi,), at(date(2025, 2, 13)), None, CAL) == (
        "blocked: India CPI (Jan 2025) 2025-02-12 16:00 IST (MEDIUM) today "
        "(IC_EVENT_BLOCK_MEDIUM=true: short gamma)")
    assert event_block("DC", (cpi,), at(date(2025, 2, 13)), None, CAL) is None
    assert event_block("DC", (cpi,), at(date(2025, 2, 13)), None, CAL,
                       {"DC_EVENT_BLOCK_MEDIUM": True}) is not None


def test_low_events_never_block_and_every_reason_is_listed() -> None:
    low = ev(date(2025, 2, 4), "12:00", "India WPI (Jan 2025)", "LOW", "IN_WPI")
    assert event_blocks("IC", (low,), at(date(2025, 2, 4)), None, CAL) == []
    both = event_blocks("DC", (BUDGET, ev(date(2025, 2, 1), "15:00", "Other", kind="FOMC")),
                        at(date(2025, 2, 1)), None, CAL)
    assert len(both) == 2 and all(r.endswith("today") for r in both)
    # rows from the table (mappings, lower-case risk) read the same
    row = {"event_date": date(2025, 2, 7), "event_time": time(10, 0), "name": "RBI MPC decision",
           "category": "RBI_MPC", "risk_level": "high"}
    assert event_block("DC", (row,), at(date(2025, 2, 6)), None, CAL).startswith(
        "blocked: RBI MPC decision 2025-02-07 10:00 IST (HIGH) within 1 day")
    with pytest.raises(ValueError, match="must be >= 0"):
        event_block("DC", (row,), at(date(2025, 2, 6)), None, CAL, {"DC_EVENT_BLOCK_DAYS_BEFORE": -1})


def test_input_events_merges_every_place_a_strategy_input_carries_them() -> None:
    from types import SimpleNamespace

    from engine.events.guard import input_events
    from engine.strategies.base import StrategyInput

    row = {"date": "2025-02-07", "time": "10:00", "kind": "RBI_MPC", "title": "RBI MPC decision",
           "impact": "HIGH"}
    inp = StrategyInput(now=at(date(2025, 2, 6)), spot=0, near=None, far=None, events=(BUDGET, RBI),
                        market=SimpleNamespace(events=(RBI,)), extra={"events": [row, {"junk": 1}]})
    assert input_events(inp) == (BUDGET, RBI)   # once each (natural key), junk skipped
