"""NSE archive downloader for the F&O bhavcopy (UDiFF and legacy), resumable, state in the DB.

URLs (../shared/reference/nse-data.md §1):

* UDiFF, for sessions from 2024-01-01 (preferred where both exist, Jan–Jul 2024):
  ``{base}/content/fo/BhavCopy_NSE_FO_0_0_0_YYYYMMDD_F_0000.csv.zip``
* legacy, for sessions up to 2024-07-05 (and as the fallback when the UDiFF file of a
  parallel-run day answers 404): ``{base}/content/historical/DERIVATIVES/YYYY/MON/foDDMONYYYYbhav.csv.zip``

``base`` is ``NSE_ARCHIVE_BASE`` (default ``https://nsearchives.nseindia.com``). Requests
carry a browser User-Agent and a Referer (NSE answers 403 without them), go one at a time
with a polite pause between them, and are retried with exponential back-off on 5xx answers,
timeouts and dropped connections. Only sessions of the NSE calendar are asked for: weekdays
that are not F&O holidays plus the special weekend sessions (Budget days). **Muhurat days**
are holidays of the regular session in the calendar, so they are skipped by default (the
replay never trades on them; their evening session's file would mark positions with an
hour-long thin session); ``include_muhurat`` fetches them too.

State per asked session in ``bhavcopy_downloads``: ``ok`` (with row count), ``not_published``
(404 on a session: asked again once a day has passed), ``error`` (retries exhausted, or a
malformed file — nothing of it written), ``forbidden`` (403: the run stops). A session that
already has rows in ``bhavcopy_ohlc`` (downloaded or imported) is skipped: re-running a
range fetches only what is missing.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from engine.backtest.bhavcopy import BhavcopyError, FileSummary, inspect_bytes
from engine.backtest.ingest import ingest_bytes
from engine.market.calendar import NseCalendar
from engine.market.holidays_data import MUHURAT_DAYS

__all__ = ["DEFAULT_BASE", "LEGACY_UNTIL", "REFERER", "UDIFF_FROM", "USER_AGENT", "ArchiveClient",
           "ArchiveForbidden", "DownloadSummary", "FetchOutcome", "MonthStatus", "archive_urls",
           "download_range", "download_status", "inspect_day", "sessions"]

logger = logging.getLogger(__name__)

DEFAULT_BASE = "https://nsearchives.nseindia.com"
UDIFF_FROM = date(2024, 1, 1)      # first UDiFF F&O file on the archive
LEGACY_UNTIL = date(2024, 7, 5)    # last legacy fo*bhav file
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Safari/537.36")
REFERER = "https://www.nseindia.com/all-reports-derivatives"
NOT_PUBLISHED_RETRY = timedelta(days=1)
_MON = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class ArchiveForbidden(RuntimeError):
    """The archive answered 403 (blocked): further requests would be refused too."""


def archive_urls(d: date, base: str = DEFAULT_BASE) -> list[tuple[str, str]]:
    """(url, format) candidates for session ``d``, preferred first."""
    base = base.rstrip("/")
    out = []
    if d >= UDIFF_FROM:
        out.append((f"{base}/content/fo/BhavCopy_NSE_FO_0_0_0_{d:%Y%m%d}_F_0000.csv.zip", "udiff"))
    if d <= LEGACY_UNTIL:
        mon = _MON[d.month - 1]
        out.append((f"{base}/content/historical/DERIVATIVES/{d.year}/{mon}/"
                    f"fo{d.day:02d}{mon}{d.year}bhav.csv.zip", "legacy"))
    return out


def sessions(start: date, end: date, calendar: NseCalendar, *, include_muhurat: bool = False
             ) -> list[date]:
    """The sessions from ``start`` to ``end`` inclusive (special weekend sessions included;
    Muhurat days only with ``include_muhurat``)."""
    out, d = [], start
    while d <= end:
        if calendar.is_trading_day(d) or (include_muhurat and d in MUHURAT_DAYS):
            out.append(d)
        d += timedelta(days=1)
    return out


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """One session's fetch: ok (with data), not_found, forbidden or error."""

    status: str
    url: str
    fmt: str = ""
    data: bytes | None = field(default=None, repr=False)
    attempts: int = 1
    error: str = ""


class ArchiveClient:
    """One-at-a-time HTTP client for the archive (requests), polite and retrying.

    Args:
        base: archive base URL. pause: seconds between two requests. retries: extra attempts
        on a 5xx / timeout / connection error. backoff: first back-off in seconds (doubled
        each retry). timeout: per-request seconds. user_agent: None sends no browser UA
        (tests show the 403). sleep: injectable for tests.
    """

    def __init__(self, base: str = DEFAULT_BASE, *, pause: float = 1.0, retries: int = 3,
                 backoff: float = 2.0, timeout: float = 30.0, user_agent: str | None = USER_AGENT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import requests

        self.base, self.pause, self.retries, self.backoff, self.timeout = (
            base.rstrip("/"), pause, retries, backoff, timeout)
        self.sleep = sleep
        self.session = requests.Session()
        headers = {"Accept": "application/zip,application/octet-stream,*/*",
                   "Accept-Language": "en-US,en;q=0.9", "Referer": REFERER}
        if user_agent:
            headers["User-Agent"] = user_agent
        else:
            self.session.headers.pop("User-Agent", None)
        self.session.headers.update(headers)
        self._last: float | None = None
        self.requests = 0

    def close(self) -> None:
        self.session.close()

    def _get(self, url: str) -> tuple[int | None, bytes, str]:
        import requests

        if self._last is not None and self.pause > 0:
            wait = self.pause - (time.monotonic() - self._last)
            if wait > 0:
                self.sleep(wait)
        self.requests += 1
        try:
            r = self.session.get(url, timeout=self.timeout)
            return r.status_code, r.content, ""
        except (requests.Timeout, requests.ConnectionError) as exc:
            return None, b"", f"{type(exc).__name__}: {exc}"
        finally:
            self._last = time.monotonic()

    def fetch(self, d: date) -> FetchOutcome:
        """Fetch session ``d`` (UDiFF first, then legacy where that exists)."""
        candidates = archive_urls(d, self.base)
        attempts = 0
        last = FetchOutcome("not_found", candidates[-1][0] if candidates else "")
        for url, fmt in candidates:
            for attempt in range(self.retries + 1):
                attempts += 1
                code, body, err = self._get(url)
                if code == 200:
                    return FetchOutcome("ok", url, fmt, body, attempts)
                if code == 404:
                    last = FetchOutcome("not_found", url, fmt, attempts=attempts, error="HTTP 404")
                    break
                if code == 403:
                    return FetchOutcome("forbidden", url, fmt, attempts=attempts,
                                        error="HTTP 403 (blocked: browser User-Agent/Referer "
                                        "refused, or rate limited)")
                transient = code is None or code >= 500
                why = err or f"HTTP {code}"
                if not transient or attempt == self.retries:
                    return FetchOutcome("error", url, fmt, attempts=attempts,
                                        error=f"{why} after {attempt + 1} attempt(s)")
                delay = self.backoff * (2 ** attempt)
                logger.info("%s: %s, retrying in %.1fs", url, why, delay)
                if delay > 0:
                    self.sleep(delay)
        return FetchOutcome(last.status, last.url, last.fmt, attempts=attempts, error=last.error)


@dataclass(slots=True)
class DownloadSummary:
    """What :func:`download_range` did."""

    sessions: int = 0
    fetched: int = 0
    rows: int = 0
    present: int = 0          # skipped: already in bhavcopy_ohlc
    cached: int = 0           # skipped: not published, asked less than a day ago
    not_published: list[date] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.sessions} session(s): {self.fetched} downloaded ({self.rows:,} rows), "
               f"{self.present} already present, {len(self.not_published)} not published"
               + (f" ({self.cached} asked less than a day ago)" if self.cached else "")
               + f", {len(self.errors)} failed; {self.requests} request(s) in {self.seconds:.1f}s"]
        if self.not_published:
            out.append("not published: " + ", ".join(str(d) for d in self.not_published[:20])
                       + (" …" if len(self.not_published) > 20 else ""))
        out += [f"failed: {e}" for e in self.errors]
        out += self.notes
        return out


def _present_days(pool: Any, start: date, end: date) -> dict[date, int]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT trade_date, count(*) AS n FROM bhavcopy_ohlc WHERE trade_date"
                            " BETWEEN %s AND %s GROUP BY trade_date", (start, end)).fetchall()
    return {r["trade_date"]: int(r["n"]) for r in rows}


def _recent_not_published(pool: Any, start: date, end: date) -> set[date]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT trade_date FROM bhavcopy_downloads WHERE trade_date BETWEEN %s AND %s"
            " AND status = 'not_published' AND fetched_at > now() - %s",
            (start, end, NOT_PUBLISHED_RETRY)).fetchall()
    return {r["trade_date"] for r in rows}


def _record(pool: Any, d: date, status: str, url: str, fmt: str = "", rows: int = 0,
            error: str = "", attempts: int = 1) -> None:
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO bhavcopy_downloads (trade_date, status, url, format, rows, attempts,"
            " error) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (trade_date) DO UPDATE SET"
            " status = EXCLUDED.status, url = EXCLUDED.url, format = EXCLUDED.format,"
            " rows = EXCLUDED.rows, attempts = bhavcopy_downloads.attempts + EXCLUDED.attempts,"
            " fetched_at = now(), error = EXCLUDED.error",
            (d, status, url, fmt, rows, attempts, error[:2000]))


def download_range(pool: Any, start: date, end: date, client: ArchiveClient, *,
                   calendar: NseCalendar | None = None, include_muhurat: bool = False,
                   progress: bool | None = None) -> DownloadSummary:
    """Download and ingest every session from ``start`` to ``end`` not yet present.

    Raises:
        ValueError: ``start`` after ``end``.
        ArchiveForbidden: the archive answered 403 (recorded; the run stops there).
    """
    from tqdm import tqdm

    if start > end:
        raise ValueError(f"--start {start} is after --end {end}")
    cal = calendar or NseCalendar()
    t0 = time.perf_counter()
    days = sessions(start, end, cal, include_muhurat=include_muhurat)
    summary = DownloadSummary(sessions=len(days))
    if not days:
        summary.notes.append(f"no session from {start} to {end} (weekend or F&O holiday"
                             + ("" if include_muhurat else "; Muhurat days need --include-muhurat")
                             + ")")
    uncovered = sorted({d.year for d in days if not cal.covers(d)})
    if uncovered:
        summary.notes.append(
            f"no NSE holiday list for {', '.join(map(str, uncovered))}: every weekday was asked "
            "for; a holiday's 404 is recorded as not published")
    present = _present_days(pool, start, end)
    cached = _recent_not_published(pool, start, end)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(days, desc="bhavcopy", unit="day", disable=not show)
    try:
        for d in bar:
            bar.set_postfix_str(str(d))
            if d in present:
                summary.present += 1
                continue
            if d in cached:
                summary.cached += 1
                summary.not_published.append(d)
                continue
            out = client.fetch(d)
            if out.status == "ok":
                assert out.data is not None
                try:
                    res = ingest_bytes(pool, out.data, out.url)
                except BhavcopyError as exc:
                    _record(pool, d, "error", out.url, out.fmt, error=str(exc),
                            attempts=out.attempts)
                    summary.errors.append(f"{d}: {exc}")
                    continue
                _record(pool, d, "ok", out.url, res.format, res.kept_rows, attempts=out.attempts)
                summary.fetched += 1
                summary.rows += res.kept_rows
            elif out.status == "not_found":
                _record(pool, d, "not_published", out.url, out.fmt, error=out.error,
                        attempts=out.attempts)
                summary.not_published.append(d)
            elif out.status == "forbidden":
                _record(pool, d, "forbidden", out.url, out.fmt, error=out.error,
                        attempts=out.attempts)
                summary.errors.append(f"{d}: {out.url}: {out.error}")
                raise ArchiveForbidden(f"{out.url}: {out.error}; stopped (the days fetched so "
                                       "far are kept; run again later to resume)")
            else:
                _record(pool, d, "error", out.url, out.fmt, error=out.error,
                        attempts=out.attempts)
                summary.errors.append(f"{d}: {out.url}: {out.error}")
    finally:
        bar.close()
        summary.requests = client.requests
        summary.seconds = time.perf_counter() - t0
    return summary


def inspect_day(client: ArchiveClient, d: date) -> tuple[str, FileSummary]:
    """Fetch session ``d`` and summarise it (header, format, row counts); nothing is written.

    Raises:
        LookupError: not published (404) or not fetched (the reason).
        BhavcopyError: the file is malformed.
    """
    out = client.fetch(d)
    if out.status != "ok" or out.data is None:
        raise LookupError(f"{d}: {out.url}: " + (out.error or out.status)
                          + (" (not published: a holiday, or not out yet — NSE publishes"
                             " around 18:30 IST)" if out.status == "not_found" else ""))
    return out.url, inspect_bytes(out.data, out.url)


@dataclass(frozen=True, slots=True)
class MonthStatus:
    """One month of ``download --status``."""

    month: str                 # YYYY-MM
    sessions: int
    present: int
    missing: int               # sessions neither present nor known unpublished
    not_published: int
    errors: int
    rows_min: int | None
    rows_median: int | None
    rows_max: int | None
    first: date | None
    last: date | None


def download_status(pool: Any, *, start: date | None = None, end: date | None = None,
                    today: date | None = None, calendar: NseCalendar | None = None
                    ) -> list[MonthStatus]:
    """Per month from ``start`` to ``end`` (default: the whole months from the first to the
    last day known, not past ``today``): sessions, present, missing, not published, errors,
    rows per day (min/median/max) and the first and last day present."""
    cal = calendar or NseCalendar()
    with pool.connection() as conn:
        present = {r["trade_date"]: int(r["n"]) for r in conn.execute(
            "SELECT trade_date, count(*) AS n FROM bhavcopy_ohlc GROUP BY trade_date").fetchall()}
        state = {r["trade_date"]: r["status"] for r in conn.execute(
            "SELECT trade_date, status FROM bhavcopy_downloads").fetchall()}
    known = sorted(set(present) | set(state))
    if not known and (start is None or end is None):
        return []
    lo = start or known[0].replace(day=1)          # whole months by default
    if end is None:
        last = known[-1] if known else (today or lo)
        end = (last.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        if today is not None:
            end = max(min(end, today), last)
    hi = end
    months: dict[str, list[date]] = {}
    d = lo.replace(day=1)
    while d <= hi:
        months.setdefault(f"{d:%Y-%m}", [])
        d = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    days = set(sessions(lo, hi, cal)) | {x for x in known if lo <= x <= hi}
    for x in sorted(days):
        months[f"{x:%Y-%m}"].append(x)
    out = []
    for m, ds in months.items():
        have = [x for x in ds if x in present]
        unpublished = [x for x in ds if x not in present and state.get(x) == "not_published"]
        errors = [x for x in ds if x not in present and state.get(x) in ("error", "forbidden")]
        counts = [present[x] for x in have]
        out.append(MonthStatus(
            month=m, sessions=len(ds), present=len(have),
            missing=len(ds) - len(have) - len(unpublished), not_published=len(unpublished),
            errors=len(errors), rows_min=min(counts) if counts else None,
            rows_median=int(statistics.median(counts)) if counts else None,
            rows_max=max(counts) if counts else None,
            first=have[0] if have else None, last=have[-1] if have else None))
    return out


def status_lines(months: Iterable[MonthStatus]) -> list[str]:
    """The ``--status`` table."""
    months = list(months)
    if not months:
        return ["no bhavcopy data yet: run `python -m engine backtest download --start ... "
                "--end ...` or `python -m engine backtest import PATH`"]
    out = [f"{'month':<8} {'sessions':>8} {'present':>7} {'missing':>7} {'not pub':>7} "
           f"{'errors':>6}  {'rows/day min/median/max':<24} first .. last"]
    for m in months:
        rows = (f"{m.rows_min}/{m.rows_median}/{m.rows_max}" if m.rows_min is not None else "-")
        span = f"{m.first} .. {m.last}" if m.first else "-"
        out.append(f"{m.month:<8} {m.sessions:>8} {m.present:>7} {m.missing:>7} "
                   f"{m.not_published:>7} {m.errors:>6}  {rows:<24} {span}")
    firsts = [m.first for m in months if m.first]
    lasts = [m.last for m in months if m.last]
    total = sum(m.present for m in months)
    out.append(f"{total} day(s) present" + (f", first {min(firsts)}, last {max(lasts)}"
                                             if firsts else "")
               + f"; {sum(m.missing for m in months)} missing, "
               f"{sum(m.not_published for m in months)} not published")
    return out
