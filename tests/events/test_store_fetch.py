"""Upserts into market_events / nse_holidays and the fetch job with sources up and down."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, time
from pathlib import Path

from engine.events import nse
from engine.events.fetch import default_sources, run_fetch
from engine.events.model import MarketEvent
from engine.events.seed import load_seed
from engine.events.store import events_between, upsert_events
from engine.store.tx import transaction
from tests.events.conftest import payload

RBI = MarketEvent(date=date(2025, 2, 7), time=time(10, 0), kind="RBI_MPC", title="RBI MPC decision",
                  impact="HIGH", country="IN", source="RBI", source_url="https://rbi.org.in")


def _count(pool, table: str) -> int:
    with pool.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def test_upsert_is_idempotent_and_reports_changes(pool) -> None:
    with transaction(pool) as conn:
        first = upsert_events(conn, [RBI])
        again = upsert_events(conn, [RBI])
        moved = upsert_events(conn, [replace(RBI, time=time(10, 30), confirmed=False)])
    assert (len(first.added), len(first.changed), first.unchanged) == (1, 0, 0)
    assert (len(again.added), len(again.changed), again.unchanged) == (0, 0, 1)
    assert (len(moved.added), len(moved.changed)) == (0, 1)
    got = events_between(pool, date(2025, 2, 1), date(2025, 2, 28))
    assert got == (replace(RBI, time=time(10, 30), confirmed=False),)
    assert events_between(pool, date(2025, 2, 8), date(2025, 2, 28)) == ()
    assert events_between(pool, date(2025, 2, 1), date(2025, 2, 28), impacts=["LOW"]) == ()
    with pool.connection() as conn:
        row = conn.execute("SELECT risk_level, category, name FROM market_events").fetchone()
    assert row == {"risk_level": "high", "category": "RBI_MPC", "name": "RBI MPC decision"}


def _all_sources(sources, mospi_url: str, oea_url: str):
    return default_sources(nse_base=sources.url, mospi_url=mospi_url, oea_url=oea_url,
                           timeout=(2, 2))


def test_fetch_seed_then_sources_one_down_one_changed(pool, sources, dead_url) -> None:
    sources.serve("/", "<html>NSE</html>")
    sources.serve(nse.PATH, payload("nse_holiday_master_2025.json"), ctype="application/json")
    sources.serve("/oea", "<html><body>We have moved.</body></html>")
    report = run_fetch(pool, sources=_all_sources(sources, dead_url, sources.url + "/oea"))
    seed_n = len(load_seed())
    assert report.seed.ok and report.seed.added == seed_n
    by = {s.name: s for s in report.sources}
    assert by["NSE holiday master"].ok and by["NSE holiday master"].holidays_added == 18
    # the seed already holds the NSE holidays under the same titles except where NSE's text
    # differs (its '*' on the Muhurat day): those are new rows, the rest unchanged or changed
    assert by["NSE holiday master"].added + by["NSE holiday master"].changed + \
        by["NSE holiday master"].unchanged == 18
    mospi = by["MoSPI release calendar"]
    assert not mospi.ok and "ConnectionError" in mospi.error and dead_url in mospi.error
    oea = by["OEA release calendar"]
    assert not oea.ok and "no table" in oea.error
    assert report.failed == ("MoSPI release calendar", "OEA release calendar")
    assert any("FAILED" in line and "known events kept" in line for line in report.lines)
    # the NSE adapter used a browser UA and opened the home page first (cookies)
    assert [p for p, _ in sources.requests] == ["/", nse.PATH, "/oea"]
    assert all(ua.startswith("Mozilla/5.0") for _, ua in sources.requests)
    with pool.connection() as conn:
        hol = conn.execute("SELECT source, description FROM nse_holidays"
                           " WHERE holiday_date = '2025-10-21'").fetchone()
    assert hol == {"source": "nse", "description": "Diwali Laxmi Pujan*"}
    n = _count(pool, "market_events")
    # the second run adds nothing; a source that now fails deletes nothing
    again = run_fetch(pool, sources=_all_sources(sources, dead_url, dead_url))
    assert again.seed.added == 0 and again.seed.unchanged == seed_n
    assert _count(pool, "market_events") == n


def test_fetch_with_a_refused_seed_still_runs_the_sources(pool, sources, tmp_path: Path) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text(json.dumps({"events": [{"date": "2025-13-01"}]}))
    sources.serve("/mospi", payload("mospi_advance_release_calendar.html"))
    report = run_fetch(pool, seed_path=bad, sources=_all_sources(sources, sources.url + "/mospi",
                                                                 sources.url + "/none"))
    assert not report.seed.ok and "entry 0" in report.seed.error
    by = {s.name: s for s in report.sources}
    assert by["MoSPI release calendar"].ok and by["MoSPI release calendar"].added == 5
    assert "HTTP 404" in by["OEA release calendar"].error
    assert "HTTP 404" in by["NSE holiday master"].error
    assert _count(pool, "market_events") == 5


def test_an_official_source_wins_over_the_seed(pool) -> None:
    cpi = MarketEvent(date=date(2026, 3, 12), time=time(16, 0), kind="IN_CPI",
                      title="India CPI (Feb 2026)", impact="MEDIUM", country="IN", source="MoSPI",
                      source_url="https://www.mospi.gov.in/advance-release-calendar", confirmed=False)
    with transaction(pool) as conn:
        upsert_events(conn, [cpi])                                   # the seed's guess
        official = upsert_events(conn, [replace(cpi, confirmed=True, time=time(16, 0))],
                                 writer="MoSPI release calendar")
        seed_again = upsert_events(conn, [cpi])                      # the next make fetch-events
        edited = upsert_events(conn, [replace(RBI, impact="MEDIUM")])  # seed-only rows follow the seed
        upsert_events(conn, [RBI])
        edited_back = upsert_events(conn, [replace(RBI, impact="MEDIUM")])
    assert len(official.changed) == 1 and seed_again.unchanged == 1 and not seed_again.changed
    assert events_between(pool, date(2026, 3, 12), date(2026, 3, 12))[0].confirmed is True
    assert len(edited.added) == 1 and len(edited_back.changed) == 1
    with pool.connection() as conn:
        row = conn.execute("SELECT payload FROM market_events WHERE category = 'IN_CPI'").fetchone()
    assert row["payload"] == {"written_by": "MoSPI release calendar"}
