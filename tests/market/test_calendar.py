"""NSE calendar rules and the NIFTY contract schedule."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

import pytest

from engine.market.calendar import NseCalendar, seed_nse_holidays
from engine.market.holidays_data import NSE_FO_HOLIDAYS
from engine.timeutil import IST
from tests.market.bhav import legacy_nifty_expiries, nifty_options
from tests.shared_data import SHARED_DATA, require_shared_data

CAL = NseCalendar()


def test_calendar_weekend_holiday_and_budget_saturday():
    assert not CAL.is_trading_day(date(2025, 2, 26))  # Mahashivratri
    assert not CAL.is_trading_day(date(2025, 2, 8))  # Saturday
    assert CAL.is_trading_day(date(2025, 2, 1))  # Budget Saturday session
    assert CAL.is_trading_day(date(2026, 2, 1))  # Budget Sunday session
    assert not CAL.is_trading_day(date(2025, 10, 21))  # Muhurat: regular session closed
    assert CAL.next_trading_day(date(2025, 2, 25)) == date(2025, 2, 27)
    assert CAL.previous_trading_day(date(2025, 2, 3)) == date(2025, 2, 1)


def test_calendar_session_bounds_and_market_open():
    d = date(2025, 2, 3)
    assert CAL.session_open(d) == datetime(2025, 2, 3, 9, 15, tzinfo=IST)
    assert CAL.session_close(d) == datetime(2025, 2, 3, 15, 30, tzinfo=IST)
    assert CAL.is_market_open(datetime(2025, 2, 3, 9, 15, tzinfo=IST))
    assert not CAL.is_market_open(datetime(2025, 2, 3, 15, 30, tzinfo=IST))
    assert not CAL.is_market_open(datetime(2025, 2, 3, 9, 14, 59, tzinfo=IST))
    with pytest.raises(ValueError, match="not an NSE trading day"):
        CAL.session_open(date(2025, 2, 26))
    with pytest.raises(ValueError, match="naive"):
        CAL.is_market_open(datetime(2025, 2, 3, 10, 0))


def test_calendar_expiry_rules_thursday_tuesday_and_holiday_shift():
    assert CAL.weekly_expiries(date(2025, 8, 25), 3) == [
        date(2025, 8, 28), date(2025, 9, 2), date(2025, 9, 9)]
    assert CAL.monthly_expiry(2025, 2) == date(2025, 2, 27)
    assert CAL.monthly_expiry(2025, 9) == date(2025, 9, 30)
    assert CAL.monthly_expiry(2026, 3) == date(2026, 3, 30)  # 31-Mar holiday
    assert CAL.weekly_expiries(date(2025, 4, 7), 1) == [date(2025, 4, 9)]  # 10-Apr holiday
    assert CAL.weekly_expiries(date(2025, 10, 15), 1) == [date(2025, 10, 20)]  # 21-Oct


def test_calendar_lot_size_transitions():
    assert CAL.lot_size(date(2024, 1, 1)) == 50
    assert CAL.lot_size(date(2024, 4, 26)) == 25
    assert CAL.lot_size(date(2024, 11, 22)) == 75
    assert CAL.lot_size(date(2024, 11, 22), date(2025, 1, 30)) == 25  # grandfathered monthly
    assert CAL.lot_size(date(2024, 12, 27), date(2025, 3, 27)) == 75  # quarterly moved
    assert CAL.lot_size(date(2025, 12, 29), date(2026, 3, 30)) == 75
    assert CAL.lot_size(date(2025, 12, 31), date(2026, 3, 30)) == 65
    assert CAL.lot_size(date(2026, 1, 2)) == 65


def _udiff_files():
    if not SHARED_DATA.exists():
        return []
    return sorted(SHARED_DATA.glob("BhavCopy_NSE_FO_*.csv.zip")) + sorted(
        (SHARED_DATA / "strategy-squad_filtered").glob("BhavCopy_NSE_FO_*.csv"))


@pytest.mark.parametrize("path", _udiff_files(), ids=lambda p: p.name[16:24])
def test_calendar_listed_expiries_and_lots_match_bhavcopy(path):
    """Predicted NIFTY listing (18 expiries) and per-contract lot == the real file."""
    require_shared_data()
    lots: dict[date, set[int]] = defaultdict(set)
    trade = None
    for row in nifty_options(path):
        trade = date.fromisoformat(row["TradDt"])
        lots[date.fromisoformat(row["XpryDt"])].add(int(row["NewBrdLotQty"]))
    assert trade is not None
    assert CAL.is_trading_day(trade)
    assert CAL.listed_nifty_expiries(trade) == sorted(lots)
    for expiry, seen in lots.items():
        assert seen == {CAL.lot_size(trade, expiry)}, (trade, expiry, seen)


def test_calendar_listed_expiries_match_legacy_bhavcopies():
    folder = require_shared_data("strategy-squad_filtered")
    files = sorted(folder.glob("fo*bhav.csv"))
    assert files
    for path in files:
        trade, expiries = legacy_nifty_expiries(path)
        assert CAL.is_trading_day(trade)
        assert set(CAL.listed_nifty_expiries(trade)) == expiries, path.name
        assert CAL.lot_size(trade) == 50


def test_calendar_holidays_cover_every_missing_weekday_of_the_udiff_series():
    """Weekdays absent from the DERIVED daily-close series (2024-01-01..) are holidays."""
    path = require_shared_data("DERIVED_nifty_banknifty_underlying_close_from_udiff_2024-2026.csv")
    days = set()
    for line in path.read_text().splitlines()[1:]:
        for cell in line.split(","):
            try:
                days.add(date.fromisoformat(cell.strip()))
                break
            except ValueError:
                continue
    assert len(days) > 400
    first, last = min(days), min(max(days), date(2026, 12, 31))
    d = first
    from datetime import timedelta
    while d <= last:
        if d.weekday() < 5 and d not in days:
            assert d in NSE_FO_HOLIDAYS, d
        if d in days:
            assert CAL.is_trading_day(d) or d in NSE_FO_HOLIDAYS, d  # Muhurat files
        d += timedelta(days=1)


def test_seed_nse_holidays_upserts_rows(pool):
    with pool.connection() as conn:
        assert seed_nse_holidays(conn) == len(NSE_FO_HOLIDAYS)
        assert seed_nse_holidays(conn) == len(NSE_FO_HOLIDAYS)  # idempotent
        rows = conn.execute("SELECT holiday_date, description, segment FROM nse_holidays "
                            "ORDER BY holiday_date").fetchall()
    assert len(rows) == len(NSE_FO_HOLIDAYS)
    assert rows[0]["holiday_date"] == date(2024, 1, 22)
    assert {r["segment"] for r in rows} == {"FO"}
