"""Office of the Economic Adviser (DPIIT) release calendar: India WPI release days.

OEA publishes the release calendar of the Index Numbers of Wholesale Price in India as an
HTML table (serial number, reference month, date of release, time of release; provisional
figures on the 14th, the next working day when it is a holiday, 12:00 IST). Each row
becomes an ``IN_WPI`` event (LOW: it rarely moves the index).
"""

from __future__ import annotations

from datetime import time
from typing import Any

from engine.events.model import MarketEvent, wpi_title
from engine.events.sources import (
    TIMEOUT,
    ParseResult,
    SourceChanged,
    base_url,
    header_index,
    html_tables,
    http_get,
    parse_clock,
    parse_day,
    parse_month,
)

__all__ = ["DEFAULT_URL", "ENV", "NAME", "fetch", "parse"]

NAME = "OEA release calendar"
ENV = "EVENTS_OEA_URL"
DEFAULT_URL = "https://eaindustry.nic.in/release_calendar.asp"
DEFAULT_TIME = time(12, 0)


def fetch(url: str | None = None, *, timeout: Any = TIMEOUT) -> str:
    return http_get(base_url(ENV, DEFAULT_URL, url), headers={"Accept": "text/html"},
                    timeout=timeout)


def parse(text: str, source_url: str = DEFAULT_URL) -> ParseResult:
    """WPI release events of the calendar page (pure).

    Raises:
        SourceChanged: no table with reference-month and release-date columns, no row, or
            a row whose date, month or time does not parse.
    """
    for table in html_tables(text):
        if not table:
            continue
        head = table[0]
        ri = header_index(head, "reference")
        if ri is None:
            ri = header_index(head, "month")
        di = header_index(head, "date")
        hi = header_index(head, "time")
        if ri is None or di is None or ri == di:
            continue
        events = []
        for n, row in enumerate(table[1:], 1):
            if len(row) <= max(ri, di):
                continue
            if "final" in " ".join(row).lower():
                continue  # the final index (10 weeks later) is not a market event
            try:
                d = parse_day(row[di])
                y, m = parse_month(row[ri])
                t = (parse_clock(row[hi]) if hi is not None and hi < len(row) else None) or DEFAULT_TIME
            except ValueError as exc:
                raise SourceChanged(f"{NAME}: row {n} ({' | '.join(row)}): {exc}") from None
            events.append(MarketEvent(date=d, time=t, kind="IN_WPI", title=wpi_title(y, m),
                                      impact="LOW", country="IN",
                                      source="Office of the Economic Adviser, DPIIT",
                                      source_url=source_url))
        if events:
            return ParseResult(tuple(events))
        raise SourceChanged(f"{NAME}: the release table has no WPI release row")
    raise SourceChanged(f"{NAME}: no table with reference month and release date columns")
