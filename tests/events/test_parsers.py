"""The adapters' pure parsers on static payloads in each source's format."""

from __future__ import annotations

import json
from datetime import date, time
from pathlib import Path

import pytest

from engine.events import mospi, nse, oea
from engine.events.sources import SourceChanged, parse_clock, parse_day, parse_month

PAYLOADS = Path(__file__).resolve().parent / "payloads"


def _text(name: str) -> str:
    return (PAYLOADS / name).read_text(encoding="utf-8")


def test_nse_holiday_master_fo_segment_to_events_and_holiday_rows() -> None:
    text = _text("nse_holiday_master_2025.json")
    fo = json.loads(text)["FO"]
    got = nse.parse(text)
    assert len(got.events) == len(fo) == len(got.holidays) == 18
    assert [h.date for h in got.holidays] == sorted(h.date for h in got.holidays)
    first = got.events[0]
    assert (first.date, first.kind, first.title, first.impact, first.time) == (
        date(2025, 1, 26), "NSE_HOLIDAY", "NSE holiday: Republic Day", "LOW", None)
    assert got.holidays[0].segment == "FO" and got.holidays[0].source == "nse"
    # another segment is read when asked (CBM has 2 rows in the payload)
    assert len(nse.parse(text, segment="CBM").events) == 2


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda d: d.pop("FO"), "no 'FO' list"),
    (lambda d: d["FO"][3].update(tradingDate="2025-03-31"), r"FO\[3\] tradingDate"),
    (lambda d: d["FO"][0].update(weekDay="Monday"), "is a Sunday, payload says 'Monday'"),
    (lambda d: d["FO"][1].update(description=""), "has no description"),
])
def test_nse_payload_of_another_shape_is_refused_with_the_reason(mutate, match) -> None:
    doc = json.loads(_text("nse_holiday_master_2025.json"))
    mutate(doc)
    with pytest.raises(SourceChanged, match=match):
        nse.parse(json.dumps(doc))
    with pytest.raises(SourceChanged, match="not JSON"):
        nse.parse("<html>Access Denied</html>")


def test_mospi_calendar_keeps_only_all_india_cpi_rows() -> None:
    got = mospi.parse(_text("mospi_advance_release_calendar.html"))
    assert [(e.date, e.title) for e in got.events] == [
        (date(2025, 1, 13), "India CPI (Dec 2024)"), (date(2025, 2, 12), "India CPI (Jan 2025)"),
        (date(2025, 3, 12), "India CPI (Feb 2025)"), (date(2025, 4, 15), "India CPI (Mar 2025)"),
        (date(2025, 5, 12), "India CPI (Apr 2025)")]
    assert {(e.time, e.kind, e.impact, e.source) for e in got.events} == {
        (time(16, 0), "IN_CPI", "MEDIUM", "MoSPI")}


def test_mospi_page_without_the_table_or_with_a_bad_date_is_refused() -> None:
    with pytest.raises(SourceChanged, match="no table"):
        mospi.parse("<html><body><p>Under maintenance</p></body></html>")
    bad = _text("mospi_advance_release_calendar.html").replace("12.02.2025", "Feb twelfth")
    with pytest.raises(SourceChanged, match=r"row 3 .*not a date"):
        mospi.parse(bad)


def test_oea_calendar_provisional_wpi_rows_at_noon_final_ones_skipped() -> None:
    got = oea.parse(_text("oea_wpi_release_calendar.html"))
    assert [(e.date, e.title, e.time) for e in got.events] == [
        (date(2025, 1, 14), "India WPI (Dec 2024)", time(12, 0)),
        (date(2025, 2, 14), "India WPI (Jan 2025)", time(12, 0)),
        (date(2025, 3, 17), "India WPI (Feb 2025)", time(12, 0)),
        (date(2025, 4, 15), "India WPI (Mar 2025)", time(12, 0))]
    assert {e.impact for e in got.events} == {"LOW"}
    with pytest.raises(SourceChanged, match="no table"):
        oea.parse("<table><tr><th>Name</th></tr><tr><td>x</td></tr></table>")


def test_parsers_share_the_same_titles_as_the_seed_file() -> None:
    from engine.events.seed import load_seed

    seed = {e.key for e in load_seed()}
    for got in (mospi.parse(_text("mospi_advance_release_calendar.html")),
                oea.parse(_text("oea_wpi_release_calendar.html"))):
        assert {e.key for e in got.events} <= seed   # the same events upsert onto the same rows


def test_date_month_time_formats() -> None:
    assert parse_day("13.01.2025") == parse_day("13-01-2025") == parse_day("13/01/2025") == \
        parse_day("13 January 2025") == parse_day("January 13, 2025") == parse_day("13-Jan-2025") \
        == date(2025, 1, 13)
    assert parse_month("December, 2024") == parse_month("Dec 2024") == (2024, 12)
    assert parse_clock("4:00 PM") == parse_clock("16:00") == time(16, 0)
    assert parse_clock("12:00 Noon") == time(12, 0) and parse_clock("11.30 AM") == time(11, 30)
    assert parse_clock("") is None
    with pytest.raises(ValueError, match="not a date"):
        parse_day("32.13.2025")
