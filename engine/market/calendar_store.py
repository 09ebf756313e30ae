"""The engine's trading calendar comes from the ``nse_holidays`` table.

* :func:`load_calendar` builds an :class:`NseCalendar` from the table. Every row is a closed
  day (the date is the primary key, so the ``segment`` column is informational). A year is
  **covered** when the table has at least one row dated in it: NSE publishes a whole year's
  list at once, and every year's list has dates in it (weekend holidays are listed too), so
  the first row of a year declares that year's list. Special weekend sessions (Budget days)
  cannot be stored in the table (it has no "open" kind of row): they stay the built-in
  ``SPECIAL_SESSIONS``.
* :func:`seed_builtin_holidays` fills the table from the built-in 2024-2026 list on the first
  run, once per built-in year (recorded in runtime_state ``nse_holidays_seed``): later runs
  neither duplicate nor overwrite rows, and a row an operator deleted stays deleted.
* :class:`CalendarSource` holds the current calendar for a process and re-reads the table when
  a NOTIFY ``nse_holidays`` arrives (statement trigger, schema/003_nse_holidays_notify.sql)
  and after a lost LISTEN connection comes back.

``NseCalendar()`` without arguments is unchanged: the built-in list (the simulators and the
backtester use it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from engine.market.calendar import NseCalendar
from engine.market.holidays_data import HOLIDAY_LIST_PUBLISHED, NSE_FO_HOLIDAYS, SPECIAL_SESSIONS
from engine.store.notify import Listener

__all__ = ["CHANNEL", "SEED_KEY", "CalendarSource", "load_calendar", "seed_builtin_holidays"]

logger = logging.getLogger(__name__)

CHANNEL = "nse_holidays"
SEED_KEY = "nse_holidays_seed"
_SEED_LOCK = 727_274_010  # advisory lock: two processes starting at once seed once


def _published(year: int) -> date:
    """When ``year``'s list became known (for dating long-dated listings): the built-in
    dates, else mid-December of the year before (NSE's usual circular date)."""
    return HOLIDAY_LIST_PUBLISHED.get(year, date(year - 1, 12, 15))


def load_calendar(conn: Any) -> NseCalendar:
    """The calendar ``nse_holidays`` describes (one read; ``conn`` is any psycopg connection).

    Holidays: every row. Covered years: the years with at least one row. Special sessions:
    the built-in list (the table cannot express an open weekend day).
    """
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute("SELECT holiday_date, description FROM nse_holidays"
                           " ORDER BY holiday_date").fetchall()
    holidays = {d: desc or "" for d, desc in rows}
    years = {d.year for d in holidays}
    return NseCalendar(holidays=holidays, special_sessions=SPECIAL_SESSIONS,
                       holiday_published={y: _published(y) for y in years},
                       covered_years=years)


def seed_builtin_holidays(conn: Any, *, now: datetime | None = None) -> int:
    """First-run seed: insert the built-in list of every built-in year not seeded before.

    Rows already present are kept as they are (``ON CONFLICT DO NOTHING``); a year once
    seeded is never seeded again, so rows an operator deleted or edited stay that way. The
    caller owns the transaction (commit to publish; the trigger NOTIFYs on insert).

    Returns:
        Number of rows inserted.
    """
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SEED_LOCK,))
        row = cur.execute("SELECT value FROM runtime_state WHERE key = %s FOR UPDATE",
                          (SEED_KEY,)).fetchone()
        seeded = {int(y) for y in (row[0].get("years", []) if row else [])}
        todo = sorted({d.year for d in NSE_FO_HOLIDAYS} - seeded)
        if not todo:
            return 0
        rows = [(d, desc, "FO", "seed") for d, desc in sorted(NSE_FO_HOLIDAYS.items())
                if d.year in todo]
        inserted = 0
        for r in rows:
            cur.execute("INSERT INTO nse_holidays (holiday_date, description, segment, source)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (holiday_date) DO NOTHING", r)
            inserted += cur.rowcount
        value = {"years": sorted(seeded | set(todo)),
                 "seeded_at": (now or datetime.now().astimezone()).isoformat()}
        cur.execute("INSERT INTO runtime_state (key, value, updated_at) VALUES (%s, %s, now())"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,"
                    " updated_at = now()", (SEED_KEY, Jsonb(value)))
    logger.info("seeded nse_holidays from the built-in list for %s: %d rows inserted",
                ", ".join(map(str, todo)), inserted)
    return inserted


class CalendarSource:
    """The current trading calendar of a process, re-read from ``nse_holidays`` on change.

    ``current()`` returns an immutable :class:`NseCalendar`; a reload swaps it atomically.
    The source also answers the calendar methods the scheduler and the engine's clock loop
    use (``is_trading_day``, ``is_market_open``, ``session_open``/``close``, ...) from the
    current calendar, so they follow changes too.

    Args:
        loader: reads a calendar (default: :func:`load_calendar` on a pool connection).
        pool: a ``psycopg_pool.ConnectionPool`` (for the default loader).
    """

    def __init__(self, pool: Any = None, *,
                 loader: Callable[[], NseCalendar] | None = None) -> None:
        if loader is None:
            if pool is None:
                raise ValueError("CalendarSource needs a pool or a loader")

            def loader() -> NseCalendar:
                with pool.connection() as conn:
                    return load_calendar(conn)

        self._loader = loader
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._alerted: set[int] = set()
        self._listener: Listener | None = None
        self._calendar = loader()
        self.reloads = 0

    # ------------------------------------------------------------ reading
    def current(self) -> NseCalendar:
        with self._lock:
            return self._calendar

    def reload(self) -> NseCalendar:
        """Re-read the table now; on a failed read the previous calendar stays."""
        with self._reload_lock:
            try:
                fresh = self._loader()
            except Exception:
                logger.exception("re-reading nse_holidays failed; keeping the previous calendar")
                return self.current()
            with self._lock:
                old, self._calendar = self._calendar, fresh
                # a year that became covered alerts again should it lose its rows later
                self._alerted -= fresh.covered_years
                self.reloads += 1
        added, removed = fresh.holidays - old.holidays, old.holidays - fresh.holidays
        if added or removed or fresh.covered_years != old.covered_years:
            logger.info("NSE calendar reloaded from nse_holidays: %d holidays, years %s%s%s",
                        len(fresh.holidays), _years(fresh.covered_years),
                        f"; added {_dates(added)}" if added else "",
                        f"; removed {_dates(removed)}" if removed else "")
        return fresh

    def claim_alert(self, year: int) -> bool:
        """True the first time ``year`` is reported uncovered (again after it was covered)."""
        with self._lock:
            if year in self._alerted:
                return False
            self._alerted.add(year)
            return True

    # ------------------------------------------------------------ LISTEN
    def listen(self, dsn: str) -> CalendarSource:
        """Re-read on every NOTIFY ``nse_holidays`` (and after a reconnect)."""
        self._listener = Listener(dsn, [CHANNEL], lambda _c, _p: self.reload(),
                                  on_reconnect=self.reload, name="calendar-listener").start()
        # a change committed between the first read and LISTEN would be missed: read again
        self.reload()
        return self

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    # ------------------------------------------------------------ calendar methods
    # is_trading_day, session_open, covers, expiries, lot sizes, ...: whatever the current
    # NseCalendar offers, read at call time so a reload is followed at once
    def __getattr__(self, name: str) -> Any:  # expiries, lot sizes, ...: the current calendar
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.current(), name)

    def __repr__(self) -> str:
        return f"CalendarSource({self.current()!r})"


def _years(years: frozenset[int]) -> str:
    return ", ".join(str(y) for y in sorted(years)) or "none"


def _dates(days: frozenset[date]) -> str:
    shown = sorted(days)
    text = ", ".join(d.isoformat() for d in shown[:10])
    return text + (f" (+{len(shown) - 10} more)" if len(shown) > 10 else "")
