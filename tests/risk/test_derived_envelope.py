"""The envelope is a function of the closes: derived == applied one close at a time, per stage,
with the open positions' MTM counted against the daily and weekly caps."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine.risk.envelope import (
    Close,
    EnvelopeState,
    after_close,
    counters,
    derive,
    entry_denial,
)
from engine.settings import all_knobs
from engine.timeutil import IST

LIMITS = {k.key: k.default for k in all_knobs() if k.key.startswith("RISK_")}

pnls = st.decimals(min_value=Decimal("-20000"), max_value=Decimal("20000"), places=2,
                   allow_nan=False, allow_infinity=False)
gaps = st.integers(min_value=0, max_value=40)  # days between consecutive closes


@given(st.lists(st.tuples(gaps, pnls), max_size=40))
def test_derived_counters_equal_closes_applied_in_order(steps) -> None:
    day, closes, state = date(2025, 1, 1), [], EnvelopeState()
    for gap, pnl in steps:
        day += timedelta(days=gap)
        closes.append(Close(day, pnl))
        at = datetime(day.year, day.month, day.day, 14, 0, tzinfo=IST)
        state = after_close(state, pnl, at, LIMITS, trade_date=day)
    assert counters(derive(closes)) == counters(state)


def test_derived_lifetime_and_streak_from_the_records() -> None:
    d = date(2025, 2, 3)
    closes = [Close(d, Decimal("100")), Close(d, Decimal("-745.08")),
              Close(d + timedelta(days=1), Decimal("-10"))]
    s = derive(closes, EnvelopeState(pause_reason="operator: lunch"))
    assert s.lifetime_pnl == Decimal("-655.08")
    assert s.loss_streak == 2
    assert s.daily_pnl == Decimal("-10") and s.weekly_pnl == Decimal("-655.08")
    assert s.pause_reason == "operator: lunch"  # the pause is not derived, it is kept


def test_open_mtm_counts_against_the_daily_cap() -> None:
    now = datetime(2025, 2, 3, 11, 0, tzinfo=IST)
    cap = Decimal(LIMITS["RISK_DAILY_LOSS_CAP"])
    realised = derive([Close(now.date(), -(cap / 2))])
    assert entry_denial(realised, now, 0, LIMITS) is None
    assert entry_denial(realised, now, 0, LIMITS, open_mtm=-(cap / 4)) is None
    reason = entry_denial(realised, now, 0, LIMITS, open_mtm=-(cap / 2))
    assert reason is not None and "open MTM" in reason and "daily" in reason
    # open gains never loosen the cap on realised losses
    breached = after_close(EnvelopeState(), -cap, now, LIMITS)
    assert "daily loss cap" in entry_denial(breached, now, 0, LIMITS, open_mtm=cap * 2)
