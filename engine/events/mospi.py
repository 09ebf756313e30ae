"""MoSPI advance release calendar: India CPI release days.

MoSPI (NSO) publishes its advance release calendar as an HTML table (one row per release:
serial number, title of the release, reference period, date of release, time of release).
The rows whose title is the all-India Consumer Price Index (Rural, Urban, Combined) become
``IN_CPI`` events (MEDIUM); CPI-AL/RL/IW (Labour Bureau) and other releases are ignored.
"""

from __future__ import annotations

from datetime import time
from typing import Any

from engine.events.model import MarketEvent, cpi_title
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

NAME = "MoSPI release calendar"
ENV = "EVENTS_MOSPI_URL"
DEFAULT_URL = "https://www.mospi.gov.in/advance-release-calendar"
DEFAULT_TIME = time(16, 0)
_EXCLUDE = ("industrial workers", "agricultural", "rural labourers", "labour bureau")


def fetch(url: str | None = None, *, timeout: Any = TIMEOUT) -> str:
    return http_get(base_url(ENV, DEFAULT_URL, url), headers={"Accept": "text/html"},
                    timeout=timeout)


def parse(text: str, source_url: str = DEFAULT_URL) -> ParseResult:
    """CPI release events of the calendar page (pure).

    Raises:
        SourceChanged: no table with release title / reference period / release date
            columns, no CPI row, or a CPI row whose date, month or time does not parse.
    """
    for table in html_tables(text):
        if not table:
            continue
        head = table[0]
        ti = header_index(head, "release") if header_index(head, "title") is None else header_index(head, "title")
        ri = header_index(head, "reference")
        di = header_index(head, "date")
        hi = header_index(head, "time")
        if ti is None or ri is None or di is None or len({ti, ri, di}) < 3:
            continue
        events = []
        for n, row in enumerate(table[1:], 1):
            if len(row) <= max(ti, ri, di):
                continue
            title = row[ti].lower()
            if "consumer price index" not in title or any(w in title for w in _EXCLUDE):
                continue
            try:
                d = parse_day(row[di])
                y, m = parse_month(row[ri])
                t = (parse_clock(row[hi]) if hi is not None and hi < len(row) else None) or DEFAULT_TIME
            except ValueError as exc:
                raise SourceChanged(f"{NAME}: row {n} ({row[ti]!r}): {exc}") from None
            events.append(MarketEvent(date=d, time=t, kind="IN_CPI", title=cpi_title(y, m),
                                      impact="MEDIUM", country="IN", source="MoSPI",
                                      source_url=source_url))
        if events:
            return ParseResult(tuple(events))
        raise SourceChanged(f"{NAME}: the release table lists no Consumer Price Index release")
    raise SourceChanged(f"{NAME}: no table with release title, reference period and date columns")
