"""What every source adapter shares: HTTP fetch with timeouts, errors, HTML tables, dates.

An adapter is a ``fetch`` (network, here) plus a pure ``parse`` (text -> events). A fetch
failure raises :class:`SourceUnreachable`, a payload that no longer looks like the source's
format raises :class:`SourceChanged`; the fetch job reports either and skips the source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from html.parser import HTMLParser
from typing import Any

from engine.events.model import MarketEvent

__all__ = ["BROWSER_UA", "ParseResult", "SourceChanged", "SourceError", "SourceUnreachable",
           "base_url", "header_index", "html_tables", "http_get", "parse_clock", "parse_day",
           "parse_month"]

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")
#: (connect, read) seconds
TIMEOUT = (5.0, 15.0)


class SourceError(Exception):
    """A source could not be used this time (reported, skipped; nothing is deleted)."""


class SourceUnreachable(SourceError):
    pass


class SourceChanged(SourceError):
    pass


@dataclass(frozen=True, slots=True)
class ParseResult:
    events: tuple[MarketEvent, ...]
    holidays: tuple[Any, ...] = ()   # engine.events.store.HolidayRow (NSE only)


def base_url(env: str, default: str, override: str | None = None) -> str:
    """``override``, else ``$env``, else ``default`` (no trailing slash)."""
    return (override or os.environ.get(env) or default).rstrip("/")


def http_get(url: str, *, session: Any = None, headers: Mapping[str, str] | None = None,
             timeout: Any = TIMEOUT) -> str:
    """GET ``url`` and return the body text; raises :class:`SourceUnreachable`."""
    import requests

    s = session or requests.Session()
    try:
        resp = s.get(url, headers={"User-Agent": BROWSER_UA, **(headers or {})},
                     timeout=timeout)
    except requests.RequestException as exc:
        raise SourceUnreachable(f"GET {url}: {type(exc).__name__}: {_short(exc)}") from None
    if resp.status_code != 200:
        raise SourceUnreachable(f"GET {url}: HTTP {resp.status_code}")
    return resp.text


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._stack: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self._stack.append([])
        elif tag == "tr" and self._stack:
            self._stack[-1].append([])
        elif tag in ("td", "th") and self._stack and self._stack[-1]:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._stack and self._stack[-1]:
            self._stack[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._stack:
            self.tables.append([r for r in self._stack.pop() if r])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(text: str) -> list[list[list[str]]]:
    """Every ``<table>`` of an HTML page as rows of cell texts (whitespace collapsed)."""
    p = _Tables()
    p.feed(text)
    p.close()
    return p.tables


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def _month_no(word: str) -> int | None:
    return _MONTHS.get(word.strip().lower()[:3])


def parse_day(text: str) -> date:
    """13.01.2025, 13-01-2025, 13/01/2025, 2025-01-13, 13-Jan-2025, 13 January 2025, January 13, 2025."""
    try:
        return _parse_day(text)
    except ValueError as exc:
        if str(exc).startswith("not a date"):
            raise
        raise ValueError(f"not a date: {text!r} ({exc})") from None


def _parse_day(text: str) -> date:
    t = " ".join(text.replace(",", " ").split())
    m = re.fullmatch(r"(\d{1,2})[./-](\d{1,2})[./-](\d{4})", t)
    if m:
        return date(int(m[3]), int(m[2]), int(m[1]))
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", t)
    if m:
        return date(int(m[1]), int(m[2]), int(m[3]))
    m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?[ -]([A-Za-z]+)[ -](\d{4})", t)
    if m and _month_no(m[2]):
        return date(int(m[3]), _month_no(m[2]) or 0, int(m[1]))
    m = re.fullmatch(r"([A-Za-z]+) (\d{1,2}) (\d{4})", t)
    if m and _month_no(m[1]):
        return date(int(m[3]), _month_no(m[1]) or 0, int(m[2]))
    raise ValueError(f"not a date: {text!r}")


def parse_month(text: str) -> tuple[int, int]:
    """``December, 2024`` / ``Dec 2024`` / ``December-2024`` -> (2024, 12)."""
    m = re.search(r"([A-Za-z]{3,})[\s,.-]*(\d{4})", text)
    if not m or _month_no(m[1]) is None:
        raise ValueError(f"not a month: {text!r}")
    return int(m[2]), _month_no(m[1]) or 0


def parse_clock(text: str) -> time | None:
    """``4:00 PM`` / ``16:00`` / ``12:00 Noon`` / ``11.00 AM`` -> time; empty -> None."""
    t = text.strip().lower().replace(".", ":")
    if not t or t in ("-", "—"):
        return None
    if "noon" in t:
        return time(12, 0)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})\s*(am|pm|hrs|hours)?", t)
    if not m:
        raise ValueError(f"not a time: {text!r}")
    h, mi = int(m[1]), int(m[2])
    if m[3] == "pm" and h < 12:
        h += 12
    if m[3] == "am" and h == 12:
        h = 0
    return time(h, mi)


def header_index(header: list[str], *words: str) -> int | None:
    """The first column whose header contains every word (case-insensitive)."""
    for i, cell in enumerate(header):
        low = cell.lower()
        if all(w in low for w in words):
            return i
    return None


def today_ist() -> date:
    from engine.timeutil import IST

    return datetime.now(IST).date()
