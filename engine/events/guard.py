"""The event guard: may a strategy open a position now, given the market events? (pure)

Rules, per strategy ``S`` (its knobs live in the strategy module's ``KNOBS``):

* An event **lands** in a session: its own date when that is a trading day and the
  announcement is before the 15:30 IST close (an announcement before 09:15 lands in that
  day's session: a 00:30 IST FOMC statement is traded at that morning's open); otherwise the
  next trading day (India CPI at 16:00, US CPI at 18:00/19:00, an FOMC statement at 23:30 IST
  and a Sunday event are first traded on the next session). A weekend special session
  (Budget 2025-02-01, a Saturday) is a trading day.
* **HIGH** events block entries from ``S_EVENT_BLOCK_DAYS_BEFORE`` trading days before the
  session the event lands in through ``S_EVENT_BLOCK_DAYS_AFTER`` trading days after it
  (0 and 0: only that session). Trading days come from the exchange calendar (holidays and
  special sessions included), never from weekdays.
* **MEDIUM** events block entries on the session they land in when
  ``S_EVENT_BLOCK_MEDIUM`` is true (default for the short-gamma IC only).
* With ``S_EVENT_BLOCK_NEAR_EXPIRY`` (default for DC and MDC) an entry is refused when a HIGH
  event still to come lands in a session up to and including the near expiry: the short
  near legs would be held through it.
* LOW events (WPI, holidays, special sessions) never block.

Every block is a reason naming the event, e.g.
``blocked: RBI MPC decision 2025-02-07 10:00 IST (HIGH) within 1 day``.

Events may be :class:`~engine.events.model.MarketEvent` objects or mappings with the same
keys (``date``/``time`` as ISO text or date/time objects; ``impact`` any case).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from engine.events.model import MarketEvent
from engine.market.calendar import NseCalendar
from engine.timeutil import IST, MARKET_CLOSE, MARKET_OPEN

__all__ = ["DEFAULTS", "GuardParams", "as_event", "event_block", "event_blocks", "guard_params",
           "input_events", "knob_keys", "landing_session", "sessions_between"]

#: strategy -> (days before, days after, block MEDIUM days, refuse a near expiry spanning a HIGH event)
DEFAULTS: Mapping[str, tuple[int, int, bool, bool]] = {
    "DC": (1, 0, False, True),
    "MDC": (1, 0, False, True),
    "IC": (1, 0, True, False),
}
_FALLBACK = (1, 0, False, True)
_SUFFIXES = ("EVENT_BLOCK_DAYS_BEFORE", "EVENT_BLOCK_DAYS_AFTER", "EVENT_BLOCK_MEDIUM",
             "EVENT_BLOCK_NEAR_EXPIRY")


@dataclass(frozen=True, slots=True)
class GuardParams:
    days_before: int
    days_after: int
    block_medium: bool
    near_expiry: bool


def knob_keys(strategy: str) -> tuple[str, str, str, str]:
    """``S_EVENT_BLOCK_DAYS_BEFORE``, ``..._AFTER``, ``..._MEDIUM``, ``..._NEAR_EXPIRY``."""
    return tuple(f"{strategy}_{s}" for s in _SUFFIXES)  # type: ignore[return-value]


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in {"true", "1", "yes", "on"}
    return bool(v)


def guard_params(strategy: str, params: Mapping[str, Any] | None) -> GuardParams:
    """The guard settings of ``strategy`` from ``params`` (defaults for missing keys)."""
    before_k, after_k, medium_k, near_k = knob_keys(strategy)
    d = DEFAULTS.get(strategy, _FALLBACK)
    p = params or {}
    before, after = int(p.get(before_k, d[0])), int(p.get(after_k, d[1]))
    if before < 0 or after < 0:
        raise ValueError(f"{before_k}={before} / {after_k}={after}: must be >= 0")
    return GuardParams(before, after, _bool(p.get(medium_k, d[2])), _bool(p.get(near_k, d[3])))


def as_event(ev: Any) -> MarketEvent | None:
    """``ev`` as a MarketEvent (a mapping or row-like object); None if it is not one."""
    if isinstance(ev, MarketEvent):
        return ev
    get = ev.get if isinstance(ev, Mapping) else (lambda k, default=None: getattr(ev, k, default))
    try:
        d = get("date", None) or get("event_date", None)
        d = date.fromisoformat(d) if isinstance(d, str) else d
        t = get("time", None) or get("event_time", None)
        t = time.fromisoformat(t) if isinstance(t, str) else t
        impact = str(get("impact", None) or get("risk_level", None) or "").upper()
        return MarketEvent(date=d, time=t, kind=str(get("kind", None) or get("category", None)),
                           title=str(get("title", None) or get("name", None) or ""),
                           impact=impact, country=str(get("country", "") or ""),
                           source=str(get("source", "") or ""),
                           source_url=str(get("source_url", "") or ""),
                           confirmed=bool(get("confirmed", True)))
    except (TypeError, ValueError):
        return None


def input_events(inp: Any) -> tuple[MarketEvent, ...]:
    """Every event a StrategyInput carries: ``inp.events``, ``inp.market.events`` and
    ``inp.extra["events"]``, as MarketEvents, once each (natural key), sorted."""
    raw: list[Any] = list(getattr(inp, "events", ()) or ())
    market = getattr(inp, "market", None)
    if market is not None:
        raw.extend(getattr(market, "events", ()) or ())
    extra = getattr(inp, "extra", None) or {}
    raw.extend(extra.get("events", ()) or ())
    out: dict[tuple[date, str, str], MarketEvent] = {}
    for ev in raw:
        e = as_event(ev)
        if e is not None:
            out.setdefault(e.key, e)
    return tuple(sorted(out.values(), key=lambda e: (e.date, e.time or time(0), e.title)))


def landing_session(ev: MarketEvent, calendar: NseCalendar) -> date:
    """The first session that trades on ``ev`` (see the module docstring)."""
    if calendar.is_trading_day(ev.date) and (ev.time is None or ev.time < MARKET_CLOSE):
        return ev.date
    return calendar.next_trading_day(ev.date)


def sessions_between(calendar: NseCalendar, a: date, b: date) -> int:
    """Trading days d with a < d <= b (negative when b < a)."""
    if b == a:
        return 0
    lo, hi, sign = (a, b, 1) if a < b else (b, a, -1)
    n, d = 0, lo
    while True:
        d = calendar.next_trading_day(d)
        if d > hi:
            break
        n += 1
    return sign * n


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _instant(ev: MarketEvent, session: date) -> datetime:
    if ev.time is not None:
        return datetime.combine(ev.date, ev.time, tzinfo=IST)
    return datetime.combine(session, MARKET_OPEN, tzinfo=IST)


def event_blocks(strategy: str, events: Iterable[Any], now: datetime, near_expiry: date | None,
                 calendar: NseCalendar, params: Mapping[str, Any] | None = None) -> list[str]:
    """Every reason ``strategy`` may not open a position at ``now`` (empty: no block)."""
    g = guard_params(strategy, params)
    local = now.astimezone(IST)
    today = local.date()
    before_k, after_k, medium_k, near_k = knob_keys(strategy)
    out: list[str] = []
    for raw in events or ():
        ev = as_event(raw)
        if ev is None or ev.impact == "LOW":
            continue
        session = landing_session(ev, calendar)
        n = sessions_between(calendar, today, session)  # > 0: the event is n sessions ahead
        if ev.impact == "HIGH":
            if n == 0:
                out.append(f"blocked: {ev.label()} today")
                continue
            if 0 < n <= g.days_before:
                out.append(f"blocked: {ev.label()} within {_days(n)} ({before_k}={g.days_before})")
                continue
            if 0 < -n <= g.days_after:
                out.append(f"blocked: {ev.label()} {_days(-n)} ago ({after_k}={g.days_after})")
                continue
            if (g.near_expiry and near_expiry is not None and session <= near_expiry
                    and _instant(ev, session) > local):
                out.append(f"blocked: {ev.label()} before the near expiry {near_expiry} "
                           f"({near_k}=true)")
        elif ev.impact == "MEDIUM" and g.block_medium and n == 0:
            out.append(f"blocked: {ev.label()} today ({medium_k}=true: short gamma)")
    return out


def event_block(strategy: str, events: Iterable[Any], now: datetime, near_expiry: date | None,
                calendar: NseCalendar, params: Mapping[str, Any] | None = None) -> str | None:
    """The first reason ``strategy`` may not open now, or None (see :func:`event_blocks`)."""
    blocks = event_blocks(strategy, events, now, near_expiry, calendar, params)
    return blocks[0] if blocks else None


def guard_knobs(strategy: str) -> tuple[Any, ...]:
    """The four guard knobs of ``strategy`` (declared in its module's ``KNOBS``)."""
    from engine.settings.registry import Knob

    before, after, medium, near = DEFAULTS.get(strategy, _FALLBACK)
    kb, ka, km, kn = knob_keys(strategy)
    return (
        Knob(kb, int, before, f"{strategy}: block entries from this many trading days before "
             "the session a HIGH market event lands in (0 = only that session).", 0, 10),
        Knob(ka, int, after, f"{strategy}: keep blocking entries this many trading days after "
             "the session a HIGH market event landed in.", 0, 10),
        Knob(km, bool, medium, f"{strategy}: also block entries on the session a MEDIUM "
             "market event (India CPI, US CPI) lands in."),
        Knob(kn, bool, near, f"{strategy}: refuse an entry whose near expiry would be held "
             "through a HIGH market event still to come."),
    )
