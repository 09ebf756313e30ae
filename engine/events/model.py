"""One market event (a Budget, an RBI decision, a CPI print, an NSE holiday, ...).

Times are IST wall-clock times of the announcement (``None`` when the source gives none, e.g.
holidays). ``kind`` is one of :data:`KINDS`, ``impact`` one of :data:`IMPACTS`. The natural
key is (date, kind, title): the seed file and the adapters must spell a title the same way
for the same event (the title helpers below are shared).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from engine.timeutil import IST

__all__ = ["IMPACTS", "KINDS", "MarketEvent", "cpi_title", "holiday_title", "wpi_title"]

#: kind -> what it is
KINDS: dict[str, str] = {
    "BUDGET": "Union Budget (Ministry of Finance)",
    "RBI_MPC": "RBI Monetary Policy Committee decision",
    "FOMC": "US Federal Reserve FOMC decision",
    "IN_CPI": "India CPI release (MoSPI)",
    "IN_WPI": "India WPI release (Office of the Economic Adviser)",
    "US_CPI": "US CPI release (BLS)",
    "NSE_HOLIDAY": "NSE F&O trading holiday",
    "SPECIAL_SESSION": "NSE special trading session",
}
IMPACTS: tuple[str, ...] = ("HIGH", "MEDIUM", "LOW")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketEvent:
    date: date
    time: time | None
    kind: str
    title: str
    impact: str
    country: str
    source: str
    source_url: str
    confirmed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.date, date) or isinstance(self.date, datetime):
            raise ValueError(f"event date {self.date!r} is not a datetime.date")
        if self.time is not None and not isinstance(self.time, time):
            raise ValueError(f"event time {self.time!r} is not a datetime.time")
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.impact not in IMPACTS:
            raise ValueError(f"impact {self.impact!r}: expected one of {', '.join(IMPACTS)}")
        if not self.title.strip():
            raise ValueError("event title is empty")

    @property
    def key(self) -> tuple[date, str, str]:
        """The natural key: (date, kind, title)."""
        return (self.date, self.kind, self.title)

    @property
    def at(self) -> datetime | None:
        """The announcement instant (aware, IST), or None without a time."""
        return None if self.time is None else datetime.combine(self.date, self.time, tzinfo=IST)

    def when(self) -> str:
        """``2025-02-07 10:00 IST`` (or just the date)."""
        return self.date.isoformat() + ("" if self.time is None else f" {self.time:%H:%M} IST")

    def label(self) -> str:
        """``RBI MPC decision 2025-02-07 10:00 IST (HIGH)``."""
        return f"{self.title} {self.when()} ({self.impact})"

    def to_json(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(),
                "time": None if self.time is None else f"{self.time:%H:%M}",
                "kind": self.kind, "title": self.title, "impact": self.impact,
                "country": self.country, "source": self.source, "source_url": self.source_url,
                "confirmed": self.confirmed}


def _month(year: int, month: int) -> str:
    return f"{_MONTHS[month - 1]} {year}"


def cpi_title(year: int, month: int) -> str:
    """``India CPI (Jan 2025)``: the reference month of the release."""
    return f"India CPI ({_month(year, month)})"


def wpi_title(year: int, month: int) -> str:
    """``India WPI (Jan 2025)``: the reference month of the provisional release."""
    return f"India WPI ({_month(year, month)})"


def holiday_title(description: str) -> str:
    """``NSE holiday: Republic Day``."""
    return f"NSE holiday: {' '.join(description.split())}"
