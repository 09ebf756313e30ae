"""IST helpers: every market time in this project is Asia/Kolkata."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
MARKET_OPEN = time(9, 15)
MARKET_CLOSE = time(15, 30)


def now_ist() -> datetime:
    """Return the current wall-clock instant in IST."""
    return datetime.now(IST)


def to_ist(moment: datetime) -> datetime:
    """Convert an aware datetime to IST; refuse naive datetimes."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: every market time must carry a timezone")
    return moment.astimezone(IST)
