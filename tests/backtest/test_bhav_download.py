"""The NSE archive downloader against a local server serving the real zips of ../shared/data
in NSE's URL layout (tests/backtest/nse_server.py): holidays not asked for, a 404 recorded as
not published (and asked again after a day), a 5xx then success, a 403 without a browser
User-Agent, resume after an interrupted run, the UDiFF/legacy choice."""

from __future__ import annotations

from datetime import date

import pytest

from engine.backtest.nse_archive import (
    ArchiveClient,
    ArchiveForbidden,
    archive_urls,
    download_range,
    download_status,
    inspect_day,
    sessions,
    status_lines,
)
from engine.config import ConfigError, load
from engine.market.calendar import NseCalendar
from tests.backtest.nse_server import NseArchiveServer, shared_files
from tests.market.bhav import udiff_rows
from tests.shared_data import SHARED_DATA, require_shared_data

CAL = NseCalendar()
FEB_24, FEB_25, FEB_26, FEB_27, FEB_28 = (date(2025, 2, d) for d in (24, 25, 26, 27, 28))


@pytest.fixture(scope="module")
def files():
    require_shared_data("strategy-squad_filtered")
    return shared_files(SHARED_DATA)


def _client(server: NseArchiveServer, **kw) -> ArchiveClient:
    kw.setdefault("pause", 0)
    kw.setdefault("backoff", 0)
    kw.setdefault("retries", 2)
    return ArchiveClient(server.base, timeout=10, **kw)


def _state(pool) -> dict[date, dict]:
    with pool.connection() as conn:
        return {r["trade_date"]: r for r in conn.execute("SELECT * FROM bhavcopy_downloads")}


def _days_present(pool) -> list[date]:
    with pool.connection() as conn:
        return [r["trade_date"] for r in conn.execute(
            "SELECT DISTINCT trade_date FROM bhavcopy_ohlc ORDER BY 1").fetchall()]


def test_urls_prefer_udiff_and_fall_back_to_legacy_before_the_cutover() -> None:
    both = archive_urls(date(2024, 3, 1), "https://x")
    assert [f for _, f in both] == ["udiff", "legacy"]
    assert both[0][0] == "https://x/content/fo/BhavCopy_NSE_FO_0_0_0_20240301_F_0000.csv.zip"
    assert both[1][0] == "https://x/content/historical/DERIVATIVES/2024/MAR/fo01MAR2024bhav.csv.zip"
    assert [f for _, f in archive_urls(date(2023, 12, 28))] == ["legacy"]
    assert [f for _, f in archive_urls(date(2024, 7, 8))] == ["udiff"]


def test_sessions_include_budget_saturday_and_skip_holidays_and_muhurat() -> None:
    assert date(2025, 2, 1) in sessions(date(2025, 1, 31), date(2025, 2, 3), CAL)
    feb = sessions(FEB_24, FEB_28, CAL)
    assert feb == [FEB_24, FEB_25, FEB_27, FEB_28]   # 26-Feb Mahashivratri
    muhurat = date(2025, 10, 21)
    assert muhurat not in sessions(date(2025, 10, 20), date(2025, 10, 23), CAL)
    assert muhurat in sessions(date(2025, 10, 20), date(2025, 10, 23), CAL, include_muhurat=True)


def test_range_with_a_holiday_downloads_every_session_and_never_asks_for_the_holiday(
        pool, files) -> None:
    with NseArchiveServer(files) as server:
        client = _client(server)
        summary = download_range(pool, FEB_24, FEB_28, client, progress=False)
    assert FEB_26 not in server.requested_days()
    assert server.requested_days() == [FEB_24, FEB_25, FEB_27, FEB_28]
    assert summary.fetched == 4 and not summary.errors and summary.rows > 9000
    assert _days_present(pool) == [FEB_24, FEB_25, FEB_27, FEB_28]
    state = _state(pool)
    assert {d: s["status"] for d, s in state.items()} == dict.fromkeys(
        [FEB_24, FEB_25, FEB_27, FEB_28], "ok")
    assert state[FEB_24]["url"].endswith("BhavCopy_NSE_FO_0_0_0_20250224_F_0000.csv.zip")
    feb = next(m for m in download_status(pool) if m.month == "2025-02")
    # 20 Feb-2025 sessions: the 19 weekdays of shared/data and the Budget Saturday 1-Feb
    assert (feb.sessions, feb.present, feb.missing, feb.not_published) == (20, 4, 16, 0)
    assert (feb.first, feb.last) == (FEB_24, FEB_28) and feb.rows_min > 2000


def test_404_on_a_session_is_not_published_and_asked_again_after_a_day(pool, files) -> None:
    with NseArchiveServer(files, not_published={FEB_27}) as server:
        first = download_range(pool, FEB_27, FEB_28, _client(server), progress=False)
        assert first.not_published == [FEB_27] and first.fetched == 1
        again = download_range(pool, FEB_27, FEB_28, _client(server), progress=False)
        assert again.cached == 1 and again.requests == 0       # within a day: not asked
        assert server.requested_days() == [FEB_27, FEB_28]
        with pool.connection() as conn:
            conn.execute("UPDATE bhavcopy_downloads SET fetched_at = now() - interval '25 hours'")
        server.not_published.clear()
        later = download_range(pool, FEB_27, FEB_28, _client(server), progress=False)
    assert later.fetched == 1 and later.present == 1
    assert server.requested_days() == [FEB_27, FEB_28, FEB_27]
    assert _state(pool)[FEB_27]["status"] == "ok"
    lines = status_lines(download_status(pool))
    assert lines[1].startswith("2025-02") and "2 day(s) present" in lines[-1]


def test_5xx_then_success_is_retried_with_backoff(pool, files) -> None:
    slept: list[float] = []
    with NseArchiveServer(files, flaky={FEB_25: 2}) as server:
        client = ArchiveClient(server.base, pause=0, retries=3, backoff=0.01, timeout=10,
                               sleep=slept.append)
        summary = download_range(pool, FEB_25, FEB_25, client, progress=False)
    assert [c for _, c in server.log] == [502, 502, 200]
    assert slept == [0.01, 0.02]                                 # exponential back-off
    assert summary.fetched == 1 and _state(pool)[FEB_25]["attempts"] == 3


def test_5xx_past_the_retries_is_an_error_and_nothing_written(pool, files) -> None:
    with NseArchiveServer(files, flaky={FEB_25: 5}) as server:
        summary = download_range(pool, FEB_25, FEB_25, _client(server, retries=1),
                                 progress=False)
    assert len(summary.errors) == 1 and "HTTP 502 after 2 attempt(s)" in summary.errors[0]
    assert _state(pool)[FEB_25]["status"] == "error" and _days_present(pool) == []


def test_403_without_a_browser_user_agent(pool, files) -> None:
    with NseArchiveServer(files) as server:
        with pytest.raises(ArchiveForbidden, match="403"):
            download_range(pool, FEB_24, FEB_28, _client(server, user_agent=None),
                           progress=False)
        assert server.log == [(server.log[0][0], 403)]          # stopped at the first answer
        assert _state(pool)[FEB_24]["status"] == "forbidden"
        ok = download_range(pool, FEB_24, FEB_24, _client(server), progress=False)
    assert ok.fetched == 1


def test_resume_after_interruption_fetches_only_the_missing_days(pool, files) -> None:
    with NseArchiveServer(files, fail_after=2) as broken:
        first = download_range(pool, FEB_24, FEB_28, _client(broken, retries=0), progress=False)
    assert first.fetched == 2 and len(first.errors) == 2
    assert _days_present(pool) == [FEB_24, FEB_25]
    with NseArchiveServer(files) as server:
        second = download_range(pool, FEB_24, FEB_28, _client(server), progress=False)
    assert server.requested_days() == [FEB_27, FEB_28]
    assert second.present == 2 and second.fetched == 2
    assert _days_present(pool) == [FEB_24, FEB_25, FEB_27, FEB_28]


def test_legacy_days_and_udiff_on_parallel_run_days(pool, files) -> None:
    with NseArchiveServer(files) as server:
        summary = download_range(pool, date(2023, 12, 26), date(2023, 12, 29), _client(server),
                                 progress=False)
        assert summary.fetched == 4
        assert all("/historical/DERIVATIVES/2023/DEC/" in p for p, _ in server.log)
        download_range(pool, date(2024, 7, 5), date(2024, 7, 5), _client(server), progress=False)
    assert server.log[-1][0].startswith("/content/fo/BhavCopy_NSE_FO_0_0_0_20240705")
    state = _state(pool)
    assert state[date(2023, 12, 28)]["format"] == "legacy"
    assert state[date(2024, 7, 5)]["format"] == "UDiFF (Rsvd1)"


def test_inspect_day_prints_counts_and_writes_nothing(pool, files) -> None:
    with NseArchiveServer(files) as server:
        url, s = inspect_day(_client(server), date(2025, 2, 3))
        with pytest.raises(LookupError, match="not published"):
            inspect_day(_client(server), FEB_26)
    raw = list(udiff_rows(files[("udiff", date(2025, 2, 3))]))
    assert url.endswith("BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip")
    assert s.total_rows == len(raw) and s.by_type["STO"] == sum(
        1 for r in raw if r["FinInstrmTp"] == "STO")
    assert _days_present(pool) == [] and _state(pool) == {}


def test_archive_base_setting() -> None:
    assert load({}).nse_archive_base == "https://nsearchives.nseindia.com"
    assert load({"NSE_ARCHIVE_BASE": "http://127.0.0.1:8999/"}).nse_archive_base == \
        "http://127.0.0.1:8999"
    with pytest.raises(ConfigError, match="NSE_ARCHIVE_BASE"):
        load({"NSE_ARCHIVE_BASE": "nsearchives.nseindia.com"})
