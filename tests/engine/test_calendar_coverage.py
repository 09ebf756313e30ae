"""No entries on a date whose year nse_holidays does not cover; exits go on."""

from __future__ import annotations

from datetime import datetime

import pykka
import pytest

from engine.messages.tap import MessageTap
from engine.timeutil import IST
from tests.engine.harness import Harness

pytestmark = pytest.mark.usefixtures("_stop_all")

REASON_2027 = "no NSE holiday list for 2027: run make fetch-events or add rows to nse_holidays"
REASON_2025 = "no NSE holiday list for 2025: run make fetch-events or add rows to nse_holidays"


@pytest.fixture
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _sent(tap: MessageTap, kind: str) -> list:
    return [e for e in tap.entries() if e.type == kind]


def test_uncovered_year_refuses_entries_with_one_alert(db_url: str) -> None:
    tap = MessageTap()
    h = Harness(db_url, start=datetime(2027, 1, 4, 9, 15, tzinfo=IST), tap=tap).start()
    try:
        h.run_until(12, 0)
        battle = h.query("SELECT rejections, selected_strategy FROM strategy_battle_log"
                         " ORDER BY id")
        assert len(battle) == 166
        assert all(r["rejections"].get("calendar") == REASON_2027 for r in battle)
        assert all(r["selected_strategy"] is None for r in battle)
        funnel = h.query("SELECT funnel FROM metrics_days")[0]["funnel"]
        assert funnel["signals"] > 0, "the strategy should have wanted to trade"
        assert funnel["denied"] == funnel["signals"]
        assert not _sent(tap, "OpenPosition")
        assert h.query("SELECT count(*) AS n FROM executions")[0]["n"] == 0
        alerts = _sent(tap, "AlertRaised")
        assert len(alerts) == 1, alerts
        assert alerts[0].fields["text"] == REASON_2027
        assert alerts[0].fields["source"] == "calendar"
    finally:
        h.stop()


def test_losing_coverage_mid_session_stops_entries_but_not_exits(db_url: str) -> None:
    tap = MessageTap()
    h = Harness(db_url, tap=tap).start()  # 2025-02-03, covered by the seeded table
    try:
        h.run_until(10, 8)
        opened = {r["tag"] for r in h.query("SELECT tag FROM open_trades")}
        assert opened, "the seeded session opens a trade at 10:06"
        assert not _sent(tap, "AlertRaised")
        with h.pool.connection() as conn:  # the operator deletes the 2025 list
            conn.execute("DELETE FROM nse_holidays WHERE holiday_date BETWEEN"
                         " '2025-01-01' AND '2025-12-31'")
        h.engine.calendar.reload()  # what the NOTIFY does (the harness does not LISTEN)
        mark = tap.epoch
        h.run_until(13, 0)
        later = [e for e in tap.entries() if e.epoch > mark]
        assert not [e for e in later if e.type == "OpenPosition"]
        closed = {e.fields["tag"] for e in later if e.type == "PositionClosed"}
        assert opened <= closed, "open trades are still monitored and exited"
        alerts = [e for e in later if e.type == "AlertRaised"]
        assert [a.fields["text"] for a in alerts] == [REASON_2025]
        last = h.query("SELECT rejections FROM strategy_battle_log ORDER BY id DESC LIMIT 1")
        assert last[0]["rejections"]["calendar"] == REASON_2025
    finally:
        h.stop()
