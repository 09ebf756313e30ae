"""A scan cycle that is sent again (a restart resuming before a committed cycle) is applied
once: no second battle-log row, IV or spread sample, funnel count or entry intent; and a
restarted scanner rebuilds the day's spot range, so its later rows match an unbroken run."""

from __future__ import annotations

from datetime import datetime

import pykka
import pytest

from engine.messages.tap import MessageTap
from engine.timeutil import IST
from tests.engine.harness import Harness

pytestmark = pytest.mark.usefixtures("_stop_all")

ENTRY = datetime(2025, 2, 3, 10, 6, tzinfo=IST)  # seed 7 opens a CAL_ARB trade on this cycle


@pytest.fixture
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _scanner_books(h: Harness) -> dict[str, list[dict]]:
    return {
        "battle_log": h.query("SELECT * FROM strategy_battle_log ORDER BY id"),
        "iv_snapshots": h.query("SELECT * FROM iv_snapshots ORDER BY id"),
        "spread_history": h.query("SELECT * FROM calendar_spread_history ORDER BY id"),
        "funnel": h.query("SELECT trade_date, funnel FROM metrics_days ORDER BY trade_date"),
        "opens": h.query("SELECT tag, security_id, side, quantity, price FROM executions"
                         " ORDER BY id"),
    }


def test_replayed_scan_cycle_changes_nothing_and_sends_nothing(db_url: str) -> None:
    first = Harness(db_url).start()
    try:
        first.run_until(10, 6)
        before = _scanner_books(first)
    finally:
        first.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
    assert before["battle_log"][-1]["created_at"] == ENTRY
    assert before["battle_log"][-1]["selected_strategy"] == "CAL_ARB"
    assert before["funnel"][0]["funnel"]["cycles"] == len(before["battle_log"]) == 52

    tap = MessageTap()
    again = Harness(db_url, start=ENTRY, tap=tap).start()  # the ticks at 10:06:00 once more
    try:
        again.run_until(10, 6)
        assert [e.type for e in tap.entries() if e.type == "ScanTick"] == ["ScanTick"]
        assert [e.type for e in tap.entries() if e.sender == "scanner"] == []
        assert _scanner_books(again) == before
    finally:
        again.stop()


def test_restarted_scanner_continues_the_days_rows_exactly(new_database) -> None:
    until = (11, 0)
    calm = Harness(new_database()).start()
    try:
        calm.run_until(*until)
        expected = calm.query("SELECT created_at, spot, iv, realized_range, near_straddle,"
                              " payload FROM strategy_battle_log ORDER BY created_at")
    finally:
        calm.stop()
        pykka.ActorRegistry.stop_all(timeout=10)

    url = new_database()
    first = Harness(url).start()
    try:
        first.run_until(10, 20)
        stopped = first.engine.clock.now()
    finally:
        first.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
    second = Harness(url, start=stopped.replace(second=1)).start()
    try:
        second.run_until(*until)
        got = second.query("SELECT created_at, spot, iv, realized_range, near_straddle,"
                           " payload FROM strategy_battle_log ORDER BY created_at")
    finally:
        second.stop()
    assert len(got) == len(expected) == 106
    assert got == expected  # realized_range needs the day's high and low from before the stop
