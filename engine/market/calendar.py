"""NSE trading calendar and NIFTY contract schedule (expiries, listings, lot sizes).

Rules (see /work/shared/reference/nse-data.md sections 2-3 and 8; verified against every
bhavcopy in shared/data by tests/market/test_calendar_bhavcopy.py):

* Sessions 09:15-15:30 IST; weekends and F&O holidays closed; listed special weekend sessions
  (Budget days) open. Muhurat days count as holidays (regular session closed).
* Weekly NIFTY expiry: Thursday of the week up to 2025-08-28, Tuesday from 2025-09-01.
  Monthly expiry: the last such weekday of the month. An expiry on a holiday moves to the
  previous trading day.
* Listing on day ``d`` (18 expiries): the next 4 weekly expiries that are not monthly
  expiries, the next 3 monthly expiries, the next 3 quarterly (Mar/Jun/Sep/Dec) months after
  those, and the next 8 half-yearly (Jun/Dec) months after those; all with expiry >= ``d``.
* Listed long-dated contracts are dated with what was known on ``d``: before the Tuesday
  switch was announced (NSE circular 2025-06-23) every expiry used Thursday; holidays of a
  year count once that year's list is published (mid-December before), and before that only
  fixed-date national holidays (26-Jan, 1-May, 15-Aug, 2-Oct, 25-Dec) do.
* Lot size: 50; 25 for everything from 2024-04-26; 75 for contracts listed from 2024-11-20
  (weekly/serial-monthly contracts listed earlier keep 25 to expiry, quarterly/half-yearly
  move after 2024-12-26); 65 for contracts listed from 2025-10-29 (older weekly/monthly keep
  75 to expiry, long-dated move after 2025-12-30).
"""

from __future__ import annotations

import calendar as _cal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from engine.market.holidays_data import (
    FIXED_DATE_HOLIDAYS,
    HOLIDAY_LIST_PUBLISHED,
    NSE_FO_HOLIDAYS,
    SPECIAL_SESSIONS,
)
from engine.timeutil import IST, MARKET_CLOSE, MARKET_OPEN, to_ist

__all__ = ["CalendarNotCovered", "LotChange", "NseCalendar", "seed_nse_holidays",
           "uncovered_reason"]

THURSDAY, TUESDAY = 3, 1
TUESDAY_REGIME_START = date(2025, 9, 1)  # expiries on/after this date are Tuesdays
TUESDAY_REGIME_ANNOUNCED = date(2025, 6, 23)  # from here on, listings use the new dates
N_WEEKLY, N_SERIAL, N_QUARTERLY, N_HALF_YEARLY = 4, 3, 3, 8


@dataclass(frozen=True, slots=True, kw_only=True)
class LotChange:
    """A NIFTY lot-size revision.

    Attributes:
        effective: first day contracts are listed with ``new`` lot.
        old: lot before. new: lot after.
        grandfather: if True, weekly/serial-monthly contracts listed before ``effective``
            keep ``old`` until expiry and long-dated ones keep it through ``long_switch``.
        long_switch: last day long-dated old contracts trade with ``old``.
    """

    effective: date
    old: int
    new: int
    grandfather: bool = False
    long_switch: date | None = None


NIFTY_LOT_CHANGES: tuple[LotChange, ...] = (
    LotChange(effective=date(2024, 4, 26), old=50, new=25),
    LotChange(effective=date(2024, 11, 20), old=25, new=75, grandfather=True,
              long_switch=date(2024, 12, 26)),
    LotChange(effective=date(2025, 10, 29), old=75, new=65, grandfather=True,
              long_switch=date(2025, 12, 30)),
)


def uncovered_reason(year: int) -> str:
    """Why nothing may trade on a date of ``year``: its holiday list is missing."""
    return (f"no NSE holiday list for {year}: run make fetch-events or add rows to "
            "nse_holidays")


class CalendarNotCovered(ValueError):
    """A date's year has no holiday list, so whether the exchange is open is unknown."""

    def __init__(self, d: date) -> None:
        super().__init__(uncovered_reason(d.year))
        self.date = d
        self.year = d.year


class NseCalendar:
    """NSE F&O trading calendar with the NIFTY expiry and lot-size schedule.

    Args:
        holidays: holiday dates (or date -> description); default: the 2024-2026 FO list.
        special_sessions: weekend dates with a full session; default: Budget days.
        holiday_published: year -> date the year's list became known (for dating listings).
        covered_years: years whose holiday list is known (complete); default: the years of
            ``holidays`` (2024-2026 for the built-in list). Every method works for any
            date; only :meth:`covers` / :meth:`require_covered` tell whether a date's
            sessions can be trusted (outside the covered years every weekday looks open).
    """

    def __init__(
        self,
        holidays: Iterable[date] | Mapping[date, str] | None = None,
        special_sessions: Iterable[date] | None = None,
        holiday_published: Mapping[int, date] | None = None,
        covered_years: Iterable[int] | None = None,
    ) -> None:
        hol = NSE_FO_HOLIDAYS if holidays is None else holidays
        self.holidays: frozenset[date] = frozenset(hol)
        for d in self.holidays:
            if not isinstance(d, date) or isinstance(d, datetime):
                raise ValueError(f"holiday {d!r} is not a datetime.date")
        self.descriptions: dict[date, str] = dict(hol) if isinstance(hol, Mapping) else {}
        self.special_sessions: frozenset[date] = frozenset(
            SPECIAL_SESSIONS if special_sessions is None else special_sessions)
        published = dict(
            HOLIDAY_LIST_PUBLISHED if holiday_published is None else holiday_published)
        for d in self.holidays:  # years without a publication date: always known
            published.setdefault(d.year, date.min)
        self.holiday_published = published
        self.covered_years: frozenset[int] = frozenset(
            {d.year for d in self.holidays} if covered_years is None
            else (int(y) for y in covered_years))
        self._listing_cache: dict[date, tuple[tuple[date, ...], tuple[date, ...]]] = {}

    def __repr__(self) -> str:
        years = ", ".join(str(y) for y in sorted(self.covered_years)) or "none"
        return f"NseCalendar({len(self.holidays)} holidays, covered years: {years})"

    # ------------------------------------------------------------------ coverage
    def covers(self, d: date) -> bool:
        """True if ``d``'s year has a holiday list (its sessions are known)."""
        _check_date(d, "d")
        return d.year in self.covered_years

    def require_covered(self, d: date) -> None:
        """Raise :class:`CalendarNotCovered` if ``d``'s year has no holiday list."""
        if not self.covers(d):
            raise CalendarNotCovered(d)

    # ------------------------------------------------------------------ sessions
    def is_trading_day(self, d: date) -> bool:
        """True if ``d`` has a regular (or special) 09:15-15:30 session."""
        _check_date(d, "d")
        if d in self.special_sessions:
            return True
        return d.weekday() < 5 and d not in self.holidays

    def session_open(self, d: date) -> datetime:
        """09:15 IST on ``d`` (raises ValueError if ``d`` is not a trading day)."""
        self._require_trading(d)
        return datetime.combine(d, MARKET_OPEN, tzinfo=IST)

    def session_close(self, d: date) -> datetime:
        """15:30 IST on ``d`` (raises ValueError if ``d`` is not a trading day)."""
        self._require_trading(d)
        return datetime.combine(d, MARKET_CLOSE, tzinfo=IST)

    def is_market_open(self, dt: datetime) -> bool:
        """True if the aware instant ``dt`` falls in [09:15, 15:30) IST of a trading day."""
        local = to_ist(dt)
        return self.is_trading_day(local.date()) and MARKET_OPEN <= local.time() < MARKET_CLOSE

    def next_trading_day(self, d: date) -> date:
        """First trading day strictly after ``d``."""
        return self._step(d, 1)

    def previous_trading_day(self, d: date) -> date:
        """Last trading day strictly before ``d``."""
        return self._step(d, -1)

    def _step(self, d: date, sign: int) -> date:
        _check_date(d, "d")
        cur = d
        for _ in range(40):
            cur += timedelta(days=sign)
            if self.is_trading_day(cur):
                return cur
        raise ValueError(f"no trading day within 40 days of {d}")

    def _require_trading(self, d: date) -> None:
        if not self.is_trading_day(d):
            raise ValueError(f"{d} is not an NSE trading day")

    # ------------------------------------------------------------------ expiries
    def _closed_as_of(self, d: date, as_of: date | None) -> bool:
        if d in self.special_sessions:
            return False
        if d.weekday() >= 5:
            return True
        published = self.holiday_published.get(d.year)
        known = published is not None and (as_of is None or as_of >= published)
        if known:
            return d in self.holidays
        return (d.month, d.day) in FIXED_DATE_HOLIDAYS

    def _shift(self, d: date, as_of: date | None) -> date:
        while self._closed_as_of(d, as_of):
            d -= timedelta(days=1)
        return d

    @staticmethod
    def _weekday_for(d: date, as_of: date | None) -> int:
        new_regime = d >= TUESDAY_REGIME_START and (as_of is None
                                                    or as_of >= TUESDAY_REGIME_ANNOUNCED)
        return TUESDAY if new_regime else THURSDAY

    def _nominal_weekly(self, monday: date, as_of: date | None) -> date:
        thursday = monday + timedelta(days=THURSDAY)
        return monday + timedelta(days=self._weekday_for(thursday, as_of))

    def _nominal_monthly(self, year: int, month: int, as_of: date | None) -> date:
        last = date(year, month, _cal.monthrange(year, month)[1])
        wd = self._weekday_for(last, as_of)
        return last - timedelta(days=(last.weekday() - wd) % 7)

    def monthly_expiry(self, year: int, month: int, *, as_of: date | None = None) -> date:
        """NIFTY monthly expiry (last Thu/Tue of the month, holiday-shifted)."""
        if not 1 <= month <= 12:
            raise ValueError(f"month must be 1..12, got {month}")
        return self._shift(self._nominal_monthly(year, month, as_of), as_of)

    def weekly_expiries(self, from_date: date, count: int, *,
                        as_of: date | None = None) -> list[date]:
        """The next ``count`` NIFTY weekly expiries on/after ``from_date`` (monthlies included)."""
        _check_date(from_date, "from_date")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        out: list[date] = []
        monday = from_date - timedelta(days=from_date.weekday())
        while len(out) < count:
            e = self._shift(self._nominal_weekly(monday, as_of), as_of)
            if e >= from_date:
                out.append(e)
            monday += timedelta(days=7)
        return out

    def _is_monthly_week(self, monday: date, as_of: date | None) -> bool:
        nominal = self._nominal_weekly(monday, as_of)
        return nominal == self._nominal_monthly(nominal.year, nominal.month, as_of)

    def _listing(self, d: date) -> tuple[tuple[date, ...], tuple[date, ...]]:
        """(short: weeklies + serial monthlies, long: quarterlies + half-yearlies) on ``d``."""
        hit = self._listing_cache.get(d)
        if hit is not None:
            return hit
        weeklies: list[date] = []
        monday = d - timedelta(days=d.weekday())
        while len(weeklies) < N_WEEKLY:
            e = self._shift(self._nominal_weekly(monday, d), d)
            if e >= d and not self._is_monthly_week(monday, d):
                weeklies.append(e)
            monday += timedelta(days=7)
        y, m = d.year, d.month
        serial: list[date] = []
        while len(serial) < N_SERIAL:
            e = self.monthly_expiry(y, m, as_of=d)
            if e >= d:
                serial.append(e)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        long: list[date] = []
        for months, n in (((3, 6, 9, 12), N_QUARTERLY), ((6, 12), N_HALF_YEARLY)):
            got = 0
            while got < n:
                if m in months:
                    long.append(self.monthly_expiry(y, m, as_of=d))
                    got += 1
                y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        result = (tuple(sorted(set(weeklies + serial))), tuple(long))
        self._listing_cache[d] = result
        return result

    def listed_nifty_expiries(self, d: date) -> list[date]:
        """NIFTY option expiries NSE lists on trading day ``d`` (18 of them), ascending."""
        _check_date(d, "d")
        short, long = self._listing(d)
        return sorted(set(short) | set(long))

    # ------------------------------------------------------------------ lot size
    def lot_size(self, d: date, expiry: date | None = None,
                 changes: tuple[LotChange, ...] = NIFTY_LOT_CHANGES) -> int:
        """NIFTY lot on day ``d``: for new contracts, or for the contract expiring ``expiry``."""
        _check_date(d, "d")
        lot = changes[0].old
        for ch in changes:
            if d < ch.effective:
                break
            if expiry is None or not ch.grandfather:
                lot = ch.new
                continue
            short, long = self._listing(self.previous_trading_day(ch.effective))
            key = (expiry.year, expiry.month)
            if expiry in short:
                lot = ch.old  # weekly / serial monthly listed before: old lot to expiry
            elif expiry >= short[-1] and key in {(e.year, e.month) for e in long}:
                long_switch = ch.long_switch or ch.effective
                lot = ch.old if d <= long_switch else ch.new
            else:
                lot = ch.new
        return lot


def _check_date(d: Any, name: str) -> None:
    if not isinstance(d, date) or isinstance(d, datetime):
        raise ValueError(f"{name} must be a datetime.date, got {d!r}")


def seed_nse_holidays(conn: Any, calendar: NseCalendar | None = None) -> int:
    """Upsert the calendar's holidays into ``nse_holidays`` (segment FO, source seed).

    This overwrites descriptions of existing rows; the engine itself seeds with
    ``engine.market.calendar_store.seed_builtin_holidays`` (first run only, keeps rows).

    Args:
        conn: an open psycopg connection (the caller owns the transaction).
        calendar: defaults to ``NseCalendar()`` (the built-in 2024-2026 list).

    Returns:
        Number of rows written.
    """
    cal = calendar or NseCalendar()
    rows = [(d, cal.descriptions.get(d, ""), "FO", "seed") for d in sorted(cal.holidays)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO nse_holidays (holiday_date, description, segment, source) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (holiday_date) DO UPDATE SET "
            "description = EXCLUDED.description, segment = EXCLUDED.segment",
            rows,
        )
    return len(rows)
