"""The risk envelope: P&L counters, loss streak and pause, as pure state transitions.

There is one envelope per go-live stage (paper, shadow, live). The RiskActor owns the rows;
this module only computes. The counters are always a function of the stage's closes
(`derive`): daily = closes on the last close's trading date, weekly = its ISO week,
monthly = its month, lifetime = all, loss streak = the trailing run of losing closes. They
roll over by IST calendar when read (`rolled`). A breached cap pauses new entries of that
stage until the period rolls over (or the operator resumes); the pause is stored, so it
survives a restart. The daily and weekly caps also count the open positions' MTM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from engine.timeutil import IST

ZERO = Decimal("0")
STAGES = ("paper", "shadow", "live")


@dataclass(frozen=True, slots=True)
class Close:
    """One closed trade as the envelope sees it (from ``closed_trades``)."""

    trade_date: date
    realized_pnl: Decimal
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EnvelopeState:
    daily_pnl: Decimal = ZERO
    weekly_pnl: Decimal = ZERO
    monthly_pnl: Decimal = ZERO
    lifetime_pnl: Decimal = ZERO
    loss_streak: int = 0
    pause_reason: str | None = None
    paused_until: datetime | None = None
    last_close_date: date | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EnvelopeState:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def paused(self, now: datetime) -> str | None:
        """The pause reason in force at ``now``, or None."""
        if self.pause_reason is None:
            return None
        if self.paused_until is not None and now >= self.paused_until:
            return None
        return self.pause_reason


def rolled(state: EnvelopeState, today: date) -> EnvelopeState:
    """Reset the period counters whose period ended since the last close."""
    last = state.last_close_date
    if last is None or last == today:
        return state
    changes: dict[str, Any] = {"daily_pnl": ZERO}
    if last.isocalendar()[:2] != today.isocalendar()[:2]:
        changes["weekly_pnl"] = ZERO
    if (last.year, last.month) != (today.year, today.month):
        changes["monthly_pnl"] = ZERO
    return replace(state, **changes)


def derive(closes: Iterable[Close], base: EnvelopeState | None = None) -> EnvelopeState:
    """The counters implied by ``closes`` (in close order), pause fields kept from ``base``.

    Equal, close for close, to applying `after_close` to each in turn (tests/risk prove it).
    """
    rows = list(closes)
    base = base or EnvelopeState()
    if not rows:
        return replace(base, daily_pnl=ZERO, weekly_pnl=ZERO, monthly_pnl=ZERO,
                       lifetime_pnl=ZERO, loss_streak=0, last_close_date=None)
    last = rows[-1].trade_date
    week, month = last.isocalendar()[:2], (last.year, last.month)
    streak = 0
    for c in reversed(rows):
        if c.realized_pnl >= 0:
            break
        streak += 1
    return replace(
        base,
        daily_pnl=sum((c.realized_pnl for c in rows if c.trade_date == last), ZERO),
        weekly_pnl=sum((c.realized_pnl for c in rows if c.trade_date.isocalendar()[:2] == week),
                       ZERO),
        monthly_pnl=sum((c.realized_pnl for c in rows
                         if (c.trade_date.year, c.trade_date.month) == month), ZERO),
        lifetime_pnl=sum((c.realized_pnl for c in rows), ZERO),
        loss_streak=streak, last_close_date=last)


def counters(state: EnvelopeState) -> tuple:
    """The derived part of ``state`` (everything but the pause)."""
    return (state.daily_pnl, state.weekly_pnl, state.monthly_pnl, state.lifetime_pnl,
            state.loss_streak, state.last_close_date)


def _next_midnight(today: date, days: int = 1) -> datetime:
    return datetime.combine(today + timedelta(days=days), time(0, 0), IST)


def after_close(state: EnvelopeState, pnl: Decimal, now: datetime,
                limits: Mapping[str, Any], trade_date: date | None = None) -> EnvelopeState:
    """The envelope after a trade closed with net ``pnl`` at ``now`` (IST), counted on
    ``trade_date`` (default: the IST date of ``now``)."""
    today = trade_date or now.astimezone(IST).date()
    s = rolled(state, today)
    s = replace(
        s,
        daily_pnl=s.daily_pnl + pnl, weekly_pnl=s.weekly_pnl + pnl,
        monthly_pnl=s.monthly_pnl + pnl, lifetime_pnl=s.lifetime_pnl + pnl,
        loss_streak=s.loss_streak + 1 if pnl < 0 else 0, last_close_date=today,
    )
    return breach(s, now, limits)


def breach(s: EnvelopeState, now: datetime, limits: Mapping[str, Any]) -> EnvelopeState:
    """Pause entries for every limit breached, until the latest of their periods ends.

    An indefinite pause (operator, supervisor, unhedged legs, token) is never replaced by a
    timed one: only a resume lifts it.
    """
    if s.pause_reason is not None and s.paused_until is None:
        return s
    found = breaches(s, now, limits)
    if not found:
        return s
    reason = "; ".join(r for r, _ in found)
    until = max(u for _, u in found)
    if s.pause_reason is not None and s.paused_until is not None and s.paused_until > until:
        return s  # an existing, longer pause stays
    return replace(s, pause_reason=reason, paused_until=until)


def breaches(s: EnvelopeState, now: datetime, limits: Mapping[str, Any]
             ) -> list[tuple[str, datetime]]:
    """Every limit the counters breach at ``now``, with when that breach's period ends."""
    today = now.astimezone(IST).date()
    checks = (
        ("RISK_DAILY_LOSS_CAP", s.daily_pnl, "daily", _next_midnight(today)),
        ("RISK_WEEKLY_LOSS_CAP", s.weekly_pnl, "weekly",
         _next_midnight(today, 7 - today.weekday())),
        ("RISK_MONTHLY_LOSS_CAP", s.monthly_pnl, "monthly",
         datetime(today.year + (today.month == 12), today.month % 12 + 1, 1, tzinfo=IST)),
    )
    found = []
    for key, pnl, label, until in checks:
        cap = Decimal(limits[key])
        if cap > 0 and pnl <= -cap:
            found.append((f"{label} loss cap breached: P&L {pnl} <= -{cap}", until))
    streak = int(limits["RISK_MAX_LOSS_STREAK"])
    if s.loss_streak >= streak:
        found.append((f"loss streak {s.loss_streak} >= {streak}", _next_midnight(today)))
    return found


def entry_denial(state: EnvelopeState, now: datetime, open_positions: int,
                 limits: Mapping[str, Any], open_mtm: Decimal = ZERO) -> str | None:
    """Why a new entry must be denied now, or None if it may go to the executor.

    ``open_mtm`` is the mark-to-market of the stage's open positions: a loss cap that ignored
    it would admit new risk while the open book already breaches the cap.
    """
    reason = state.paused(now)
    if reason:
        return f"entries paused: {reason}"
    # counters carried over from earlier days still count against the weekly/monthly caps
    current = rolled(state, now.astimezone(IST).date())
    still = [r for r, _ in breaches(replace(current, loss_streak=0), now, limits)
             if not r.startswith("daily")]
    if still:
        return f"entries paused: {still[0]}"
    for key, label, realised in (("RISK_DAILY_LOSS_CAP", "daily", current.daily_pnl),
                                 ("RISK_WEEKLY_LOSS_CAP", "weekly", current.weekly_pnl)):
        cap = Decimal(limits[key])
        if cap > 0 and open_mtm < 0 and realised + open_mtm <= -cap:
            return (f"{label} loss cap: realised {realised} + open MTM {open_mtm} "
                    f"<= -{cap}")
    cap = int(limits["RISK_MAX_OPEN_POSITIONS"])
    if open_positions >= cap:
        return f"open positions {open_positions} at cap {cap}"
    return None
