"""One scan cycle (engine.strategies.cycle, what the scanner and the backtester run): a HIGH
event tomorrow blocks DC, MDC and the IC fallback, and the cycle's rejections (the battle-log
row) name it; the same cycle without the event selects an MDC variant."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, time

from engine.events.model import MarketEvent
from engine.strategies import double_calendar as dc
from engine.strategies import iron_condor as ic
from engine.strategies import mdc
from engine.strategies.cycle import run_cycle
from engine.strategies.registry import specs
from tests.strategies.test_mdc import RICH, _inp

RBI = MarketEvent(date=date(2025, 2, 4), time=time(10, 0), kind="RBI_MPC", title="RBI MPC decision",
                  impact="HIGH", country="IN", source="RBI", source_url="https://rbi.org.in")
WHY = "blocked: RBI MPC decision 2025-02-04 10:00 IST (HIGH) within 1 day"


def _params() -> dict:
    values = {**dc.DEFAULTS, **mdc.DEFAULTS, **ic.defaults(), "CAL_ARB_ENABLED": False}
    return {s.name: values for s in specs()}


def test_a_high_event_tomorrow_blocks_every_option_strategy_and_the_log_says_so() -> None:
    free = run_cycle(_inp(RICH), _params())
    assert free.selected_strategy in ("DC", "MDC") and free.entries
    inp = replace(_inp(RICH), events=(RBI,))
    blocked = run_cycle(inp, _params())
    assert blocked.entries == () and blocked.selected_strategy is None
    for name in ("DC", "MDC", "IC"):
        assert any(r.startswith(WHY) for r in blocked.rejections[name]), (name, blocked.rejections[name])
    assert blocked.metrics["MDC"]["early_return"] == "event_block"
