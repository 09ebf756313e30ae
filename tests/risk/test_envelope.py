"""Risk envelope transitions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from engine.risk import repository
from engine.risk.envelope import EnvelopeState, after_close, entry_denial
from engine.settings import all_knobs
from engine.timeutil import IST

LIMITS = {k.key: k.default for k in all_knobs() if k.key.startswith("RISK_")}
MON = datetime(2025, 2, 3, 11, 0, tzinfo=IST)


def test_envelope_daily_cap_breach_pauses_until_next_day() -> None:
    s = after_close(EnvelopeState(), Decimal("-6000"), MON, LIMITS)
    assert s.paused(MON) is None
    s = after_close(s, Decimal("-4000.50"), MON, LIMITS)
    assert "daily loss cap breached" in s.paused(MON)
    assert entry_denial(s, MON, 0, LIMITS).startswith("entries paused")
    tuesday = datetime(2025, 2, 4, 9, 20, tzinfo=IST)
    assert s.paused(tuesday) is None


def test_envelope_counters_roll_by_period() -> None:
    s = after_close(EnvelopeState(), Decimal("100"), MON, LIMITS)
    s = after_close(s, Decimal("50"), datetime(2025, 2, 4, 10, 0, tzinfo=IST), LIMITS)
    assert (s.daily_pnl, s.weekly_pnl, s.lifetime_pnl) == (Decimal(50), Decimal(150), Decimal(150))
    s = after_close(s, Decimal("10"), datetime(2025, 3, 3, 10, 0, tzinfo=IST), LIMITS)
    assert (s.weekly_pnl, s.monthly_pnl, s.lifetime_pnl) == (Decimal(10), Decimal(10), Decimal(160))
    assert s.last_close_date == date(2025, 3, 3)


def test_envelope_loss_streak_pauses_and_win_resets() -> None:
    s = EnvelopeState()
    for _ in range(3):
        s = after_close(s, Decimal("-1"), MON, LIMITS)
    assert s.loss_streak == 3 and s.paused(MON) is None
    assert after_close(s, Decimal("5"), MON, LIMITS).loss_streak == 0
    s = after_close(s, Decimal("-1"), MON, LIMITS)
    assert "loss streak 4" in s.paused(MON)


def test_envelope_open_position_cap_denies() -> None:
    assert entry_denial(EnvelopeState(), MON, 3, LIMITS) == "open positions 3 at cap 3"
    assert entry_denial(EnvelopeState(), MON, 2, LIMITS) is None


def test_envelope_repository_round_trip(pool) -> None:
    s = after_close(EnvelopeState(), Decimal("-10000"), MON, LIMITS)
    with pool.connection() as conn:
        repository.save(conn, s)
    assert repository.load(pool) == s


def test_envelope_weekly_breach_outlives_daily_breach() -> None:
    limits = dict(LIMITS, RISK_DAILY_LOSS_CAP="5000", RISK_WEEKLY_LOSS_CAP="10000")
    s = after_close(EnvelopeState(), Decimal("-12000"), MON, limits)
    assert "daily" in s.pause_reason and "weekly" in s.pause_reason
    tuesday = datetime(2025, 2, 4, 9, 20, tzinfo=IST)
    assert "weekly loss cap" in entry_denial(s, tuesday, 0, limits)
    next_monday = datetime(2025, 2, 10, 9, 20, tzinfo=IST)
    assert entry_denial(s, next_monday, 0, limits) is None


def test_envelope_indefinite_pause_is_not_replaced_by_a_timed_one() -> None:
    paused = EnvelopeState(pause_reason="executor: unhedged legs for DC-1", paused_until=None)
    s = after_close(paused, Decimal("-50000"), MON, LIMITS)
    assert s.pause_reason == "executor: unhedged legs for DC-1" and s.paused_until is None
    tuesday = datetime(2025, 2, 4, 9, 20, tzinfo=IST)
    assert entry_denial(s, tuesday, 0, LIMITS).startswith("entries paused: executor")
