"""NSE holiday master: the trading-holidays JSON NSE serves.

``GET https://www.nseindia.com/api/holiday-master?type=trading`` answers an object keyed by
segment (``CBM``, ``CM``, ``FO``, ``CD``, ``COM``, ...), each a list of
``{"tradingDate": "26-Jan-2025", "weekDay": "Sunday", "description": "Republic Day",
"Sr_no": 1}``. NSE wants a browser User-Agent and the cookies its home page sets, so the
fetch opens the home page first. The FO list becomes ``NSE_HOLIDAY`` events and refreshes
``nse_holidays`` (the engine's trading calendar; its trigger reloads every process).
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

from engine.events.model import MarketEvent, holiday_title
from engine.events.sources import (
    TIMEOUT,
    ParseResult,
    SourceChanged,
    SourceUnreachable,
    base_url,
    http_get,
)
from engine.events.store import HolidayRow

__all__ = ["DEFAULT_BASE", "ENV", "NAME", "PATH", "fetch", "parse"]

NAME = "NSE holiday master"
ENV = "EVENTS_NSE_BASE_URL"
DEFAULT_BASE = "https://www.nseindia.com"
PATH = "/api/holiday-master?type=trading"
SOURCE_URL = DEFAULT_BASE + PATH
SEGMENT = "FO"


def fetch(base: str | None = None, *, timeout: Any = TIMEOUT) -> str:
    """The holiday-master JSON text (home page first, for NSE's cookies)."""
    import requests

    root = base_url(ENV, DEFAULT_BASE, base)
    session = requests.Session()
    headers = {"Accept": "application/json, text/plain, */*", "Accept-Language": "en-US,en;q=0.9",
               "Referer": root + "/"}
    # the home page sets NSE's cookies; if it fails the API itself may still answer
    with contextlib.suppress(SourceUnreachable):
        http_get(root + "/", session=session, headers={"Accept": "text/html"}, timeout=timeout)
    return http_get(root + PATH, session=session, headers=headers, timeout=timeout)


def parse(text: str, segment: str = SEGMENT) -> ParseResult:
    """The ``segment`` holidays of a holiday-master payload (pure).

    Raises:
        SourceChanged: not JSON, no ``segment`` list, or an entry without a valid
            ``tradingDate`` (``%d-%b-%Y``), a ``weekDay`` that does not match it, or a
            description.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceChanged(f"{NAME}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise SourceChanged(f"{NAME}: expected an object keyed by segment, got {type(doc).__name__}")
    items = doc.get(segment)
    if not isinstance(items, list) or not items:
        raise SourceChanged(f"{NAME}: no {segment!r} list (segments: {', '.join(map(str, doc)) or 'none'})")
    events, rows = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise SourceChanged(f"{NAME}: {segment}[{i}] is not an object")
        raw, wd, desc = item.get("tradingDate"), item.get("weekDay"), item.get("description")
        try:
            d = datetime.strptime(str(raw), "%d-%b-%Y").date()
        except ValueError:
            raise SourceChanged(f"{NAME}: {segment}[{i}] tradingDate {raw!r} is not DD-Mon-YYYY") from None
        if wd is not None and str(wd).strip().lower() != f"{d:%A}".lower():
            raise SourceChanged(f"{NAME}: {segment}[{i}] {raw} is a {d:%A}, payload says {wd!r}")
        if not isinstance(desc, str) or not desc.strip():
            raise SourceChanged(f"{NAME}: {segment}[{i}] {raw} has no description")
        desc = " ".join(desc.split())
        rows.append(HolidayRow(date=d, description=desc, segment=segment, source="nse"))
        events.append(MarketEvent(date=d, time=None, kind="NSE_HOLIDAY", title=holiday_title(desc),
                                  impact="LOW", country="IN", source="NSE", source_url=SOURCE_URL))
    return ParseResult(tuple(events), tuple(rows))
