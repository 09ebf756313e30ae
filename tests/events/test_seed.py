"""The seed file: the shipped one loads; a bad one is refused naming the entry and the reason."""

from __future__ import annotations

import json
from datetime import date, time
from pathlib import Path

import pytest

from engine.events.seed import SEED_PATH, SeedError, load_seed, parse_seed
from engine.market.holidays_data import NSE_FO_HOLIDAYS

GOOD = {"date": "2025-02-07", "time": "10:00", "kind": "RBI_MPC", "title": "RBI MPC decision",
        "impact": "HIGH", "country": "IN", "source": "RBI", "source_url": "https://rbi.org.in"}


def test_the_shipped_seed_file_loads_with_the_known_dates() -> None:
    events = load_seed()
    keys = {(e.date, e.kind) for e in events}
    assert (date(2025, 2, 1), "BUDGET") in keys and (date(2026, 2, 1), "BUDGET") in keys
    rbi_2025 = sorted(e.date for e in events if e.kind == "RBI_MPC" and e.date.year == 2025)
    assert rbi_2025 == [date(2025, 2, 7), date(2025, 4, 9), date(2025, 6, 6), date(2025, 8, 6),
                        date(2025, 10, 1), date(2025, 12, 5)]
    assert all(e.time == time(10, 0) and e.impact == "HIGH" for e in events if e.kind == "RBI_MPC")
    # FOMC: the IST date of the 14:00 ET statement (00:30 next day in US winter time)
    fomc = {e.date: e.time for e in events if e.kind == "FOMC"}
    assert fomc[date(2025, 1, 30)] == time(0, 30) and fomc[date(2025, 3, 19)] == time(23, 30)
    # every NSE F&O holiday of 2025-2026 the engine's calendar knows is in the file
    holidays = {e.date for e in events if e.kind == "NSE_HOLIDAY"}
    assert {d for d in NSE_FO_HOLIDAYS if d.year >= 2025} == holidays
    assert all(e.source_url.startswith("https://") for e in events)
    assert any(not e.confirmed for e in events)          # the unchecked ones are marked
    assert [e.date for e in events] == sorted(e.date for e in events)


def test_a_bad_file_lists_every_problem_with_the_entry_and_title(tmp_path: Path) -> None:
    doc = {"format": 1, "events": [
        GOOD,
        {**GOOD, "colour": "red"},
        {**GOOD, "title": "Budget", "date": "2025-02-30"},
        {**GOOD, "title": "CPI", "time": "4pm", "impact": "SEVERE"},
        {**GOOD, "title": "Odd", "kind": "ELECTION"},
        dict(GOOD),
        {k: v for k, v in GOOD.items() if k != "source_url"},
    ], "extra": 1}
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SeedError) as err:
        load_seed(path)
    problems = err.value.problems
    assert "unknown top-level key 'extra'" in problems[0]
    text = "\n".join(problems)
    assert "entry 1 ('RBI MPC decision'): unknown key 'colour'" in text
    assert "entry 2 ('Budget'): bad date '2025-02-30'" in text
    assert "entry 3 ('CPI'): bad time '4pm'" in text and "entry 3 ('CPI'): bad impact 'SEVERE'" in text
    assert "entry 4 ('Odd'): unknown kind 'ELECTION'" in text
    assert "entry 5 ('RBI MPC decision'): duplicate of entry 0" in text
    assert "entry 6 ('RBI MPC decision'): missing 'source_url'" in text
    assert str(path) in str(err.value)


def test_not_json_and_missing_file_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text('{"events": [')
    with pytest.raises(SeedError, match="not JSON"):
        load_seed(bad)
    with pytest.raises(SeedError, match="cannot read"):
        load_seed(tmp_path / "missing.json")
    with pytest.raises(SeedError, match="'events' must be a list"):
        parse_seed({"events": {}})
    assert SEED_PATH.name == "market_events_seed.json"
