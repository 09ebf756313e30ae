"""The trading calendar comes from nse_holidays: seeding, coverage, NOTIFY reloads."""

from __future__ import annotations

from datetime import date

import pytest

from engine.app import build
from engine.clock import ManualClock
from engine.config import load
from engine.market.calendar import CalendarNotCovered, NseCalendar
from engine.market.calendar_store import (
    SEED_KEY,
    CalendarSource,
    load_calendar,
    seed_builtin_holidays,
)
from engine.market.holidays_data import NSE_FO_HOLIDAYS
from tests.conftest import eventually
from tests.engine.harness import SESSION

MADE_UP = date(2026, 7, 15)  # a Wednesday that is no NSE holiday


def _seed(pool) -> int:
    with pool.connection() as conn:
        return seed_builtin_holidays(conn)


def _exec(pool, sql: str, *args) -> None:
    with pool.connection() as conn:
        conn.execute(sql, args)


def test_builtin_calendar_covers_2024_to_2026_and_stays_usable_outside() -> None:
    cal = NseCalendar()
    assert cal.covered_years == {2024, 2025, 2026}
    assert cal.covers(date(2026, 12, 31)) and not cal.covers(date(2027, 1, 4))
    cal.require_covered(date(2025, 2, 3))
    with pytest.raises(CalendarNotCovered, match="no NSE holiday list for 2027: run make"
                                                 " fetch-events or add rows to nse_holidays"):
        cal.require_covered(date(2027, 1, 4))
    # pure computations still work beyond the covered years
    assert cal.is_trading_day(date(2027, 1, 4))
    assert len(cal.listed_nifty_expiries(date(2026, 12, 1))) == 18
    assert NseCalendar(holidays=[]).covered_years == frozenset()


def test_load_calendar_reads_the_table_not_the_builtin_list(pool) -> None:
    _seed(pool)
    with pool.connection() as conn:
        assert load_calendar(conn).is_trading_day(MADE_UP)
    _exec(pool, "INSERT INTO nse_holidays (holiday_date, description, source)"
                " VALUES (%s, 'Made-up holiday', 'operator')", MADE_UP)
    with pool.connection() as conn:
        cal = load_calendar(conn)
    assert not cal.is_trading_day(MADE_UP)
    assert cal.descriptions[MADE_UP] == "Made-up holiday"
    assert cal.next_trading_day(date(2026, 7, 14)) == date(2026, 7, 16)
    assert cal.covered_years == {2024, 2025, 2026}
    assert cal.is_trading_day(date(2026, 2, 1))  # Budget Sunday: built-in special session
    # the seeded table gives the same calendar as the built-in list (expiries included)
    builtin = NseCalendar()
    _exec(pool, "DELETE FROM nse_holidays WHERE holiday_date = %s", MADE_UP)
    with pool.connection() as conn:
        same = load_calendar(conn)
    assert same.holidays == builtin.holidays
    for d in (date(2024, 3, 1), date(2025, 6, 2), date(2025, 12, 1), date(2026, 5, 4)):
        assert same.listed_nifty_expiries(d) == builtin.listed_nifty_expiries(d)
        assert same.lot_size(d) == builtin.lot_size(d)


def test_a_year_is_covered_once_it_has_a_row(pool) -> None:
    _seed(pool)
    with pool.connection() as conn:
        assert not load_calendar(conn).covers(date(2027, 3, 1))
    _exec(pool, "INSERT INTO nse_holidays (holiday_date, description, source)"
                " VALUES ('2027-01-26', 'Republic Day', 'operator')")
    with pool.connection() as conn:
        cal = load_calendar(conn)
    assert cal.covers(date(2027, 3, 1)) and not cal.is_trading_day(date(2027, 1, 26))


def test_running_source_picks_up_insert_and_delete_via_notify(pool, db_url) -> None:
    _seed(pool)
    source = CalendarSource(pool).listen(db_url)
    try:
        assert source.is_trading_day(MADE_UP)
        _exec(pool, "INSERT INTO nse_holidays (holiday_date, description, source)"
                    " VALUES (%s, 'Made-up holiday', 'operator')", MADE_UP)
        eventually(lambda: not source.current().is_trading_day(MADE_UP), timeout=2.0)
        assert not source.is_trading_day(MADE_UP)  # the delegating methods follow too
        _exec(pool, "DELETE FROM nse_holidays WHERE holiday_date = %s", MADE_UP)
        eventually(lambda: source.current().is_trading_day(MADE_UP), timeout=2.0)
        _exec(pool, "DELETE FROM nse_holidays WHERE holiday_date >= '2026-01-01'")
        eventually(lambda: not source.covers(date(2026, 3, 2)), timeout=2.0)
    finally:
        source.close()


def test_uncovered_year_is_alerted_once_until_it_is_covered(pool) -> None:
    _seed(pool)
    source = CalendarSource(pool)
    assert source.claim_alert(2027) and not source.claim_alert(2027)
    _exec(pool, "INSERT INTO nse_holidays (holiday_date) VALUES ('2027-01-26')")
    source.reload()
    assert source.covers(date(2027, 1, 4))
    _exec(pool, "DELETE FROM nse_holidays WHERE holiday_date = '2027-01-26'")
    source.reload()
    assert source.claim_alert(2027)  # lost its list again: tell the operator again


def test_engine_build_follows_the_table_live(pool, db_url) -> None:
    engine = build(load({"DATABASE_URL": db_url}), pool, clock=ManualClock(SESSION),
                   listen_settings=False, listen_calendar=True)
    try:
        assert engine.services["calendar"] is engine.calendar
        assert engine.calendar.is_trading_day(MADE_UP)
        _exec(pool, "INSERT INTO nse_holidays (holiday_date) VALUES (%s)", MADE_UP)
        eventually(lambda: not engine.calendar.is_trading_day(MADE_UP), timeout=2.0)
    finally:
        engine.stop()


def test_first_run_seeds_and_later_runs_keep_operator_rows(pool, db_url) -> None:
    cfg = load({"DATABASE_URL": db_url})
    build(cfg, pool, clock=ManualClock(SESSION), listen_settings=False).stop()
    rows = {r["holiday_date"]: r for r in _rows(pool)}
    assert set(rows) == set(NSE_FO_HOLIDAYS)
    assert {r["source"] for r in rows.values()} == {"seed"}
    # the operator edits a description, deletes a seeded day and adds a day of their own
    _exec(pool, "UPDATE nse_holidays SET description = 'edited', source = 'operator'"
                " WHERE holiday_date = '2025-03-14'")
    _exec(pool, "DELETE FROM nse_holidays WHERE holiday_date = '2025-04-18'")
    _exec(pool, "INSERT INTO nse_holidays (holiday_date, description, source)"
                " VALUES (%s, 'Made-up holiday', 'operator')", MADE_UP)
    engine = build(cfg, pool, clock=ManualClock(SESSION), listen_settings=False)
    engine.stop()
    after = {r["holiday_date"]: r for r in _rows(pool)}
    assert len(after) == len(NSE_FO_HOLIDAYS)  # -1 deleted, +1 added, no duplicates
    assert after[date(2025, 3, 14)]["description"] == "edited"
    assert date(2025, 4, 18) not in after
    assert after[MADE_UP]["source"] == "operator"
    cal = engine.calendar.current()
    assert cal.is_trading_day(date(2025, 4, 18)) and not cal.is_trading_day(MADE_UP)
    assert _seed(pool) == 0
    with pool.connection() as conn:
        marker = conn.execute("SELECT value FROM runtime_state WHERE key = %s",
                              (SEED_KEY,)).fetchone()
    assert marker["value"]["years"] == [2024, 2025, 2026]


def test_seed_keeps_rows_imported_before_the_first_run(pool) -> None:
    _exec(pool, "INSERT INTO nse_holidays (holiday_date, description, source)"
                " VALUES ('2025-03-14', 'Holi (imported)', 'legacy')")
    assert _seed(pool) == len(NSE_FO_HOLIDAYS) - 1
    rows = {r["holiday_date"]: r for r in _rows(pool)}
    assert rows[date(2025, 3, 14)]["description"] == "Holi (imported)"


def _rows(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM nse_holidays ORDER BY holiday_date").fetchall()
