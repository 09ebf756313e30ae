"""The one source of clock ticks: scan, monitor, token check, prunes, end of day.

`Scheduler.plan` turns a `ScheduleConfig` and a market calendar into an ordered stream of
`PlannedTick`s; both modes send exactly that stream, by role, through the directory:

* realtime -- `Scheduler.start` runs a thread that sleeps on the `Clock` (real or
  simulated) until each tick is due; a periodic tick more than one period late is
  skipped rather than sent in a burst.
* lock-step -- `Scheduler.run_lockstep` advances a `ManualClock` to each tick, sends it
  and then waits until the actors have *settled* (see `Scheduler.settle`), so a replay
  is deterministic.

Grid ticks (scan / monitor / token) sit on a grid aligned to IST midnight, so a 60 s scan
lands on 09:15:00, 09:16:00, ... Scan and monitor ticks are sent only when
``calendar.is_market_open(t)``; token checks run around the clock; prunes run daily at
``prune_at``; end of day runs on trading days at ``session_close(d) + eod_delay_s``.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

import pykka

from engine.actors.directory import Directory
from engine.clock import Clock, ManualClock
from engine.messages.base import IdSource, RandomIds
from engine.messages.commands import (
    EndOfDayTick,
    MonitorTick,
    Probe,
    PruneTick,
    ScanTick,
    Tick,
    TokenCheckTick,
)
from engine.timeutil import IST, to_ist

__all__ = ["MarketCalendar", "PlannedTick", "PruneSpec", "ScheduleConfig", "Scheduler"]

logger = logging.getLogger(__name__)

_ONE_DAY = timedelta(days=1)
_MAX_IDLE_DAYS = 366  # a market-only stream with no trading day in a year ends


class MarketCalendar(Protocol):
    """What the scheduler needs from a calendar (``engine.market.calendar.NseCalendar``)."""

    def is_market_open(self, moment: datetime) -> bool:
        """True while the cash/F&O session is open at ``moment``."""
        ...

    def is_trading_day(self, day: date) -> bool:
        """True for sessions days (not weekends or holidays)."""
        ...

    def session_close(self, day: date) -> datetime | time:
        """Close of the session on ``day`` (aware datetime, or an IST wall time)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneSpec:
    """Tell ``role`` (the table's owner) to delete rows older than ``keep_days``."""

    role: str
    table: str
    keep_days: int


def _default_prunes() -> tuple[PruneSpec, ...]:
    return (
        PruneSpec(role="scanner", table="strategy_battle_log", keep_days=60),
        PruneSpec(role="scanner", table="iv_snapshots", keep_days=180),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    """Intervals (clock seconds) and target roles; a 0 interval or no roles disables."""

    scan_every_s: int = 60
    monitor_every_s: int = 15
    token_check_every_s: int = 300
    scan_roles: tuple[str, ...] = ("scanner",)
    monitor_roles: tuple[str, ...] = ("monitor",)
    token_roles: tuple[str, ...] = ("token",)
    prune_at: time = time(16, 0)
    prunes: tuple[PruneSpec, ...] = field(default_factory=_default_prunes)
    eod_delay_s: int = 300
    eod_roles: tuple[str, ...] = ("executor", "risk")  # the actors that handle EndOfDayTick

    def __post_init__(self) -> None:
        for name in ("scan_every_s", "monitor_every_s", "token_check_every_s", "eod_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"ScheduleConfig.{name} must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedTick:
    """One tick to send: ``kind(at=at, **fields)`` to ``role``."""

    at: datetime
    order: int
    role: str
    kind: type[Tick]
    fields: Mapping[str, Any] = field(default_factory=dict)
    every_s: int | None = None  # period of a grid tick (for lateness); None for one-offs

    def describe(self) -> str:
        """Short text like ``'2025-01-06T09:15:00+05:30 ScanTick -> scanner'``."""
        return f"{self.at.isoformat()} {self.kind.__name__} -> {self.role}"


class Scheduler:
    """Sends ticks by role (see module docstring).

    Args:
        clock: `ManualClock` for lock-step, any `Clock` for realtime.
        calendar: market calendar (duck-typed `MarketCalendar`).
        directory: routes ticks to roles; its tap records them.
        config: intervals and roles.
        ids: message id source (use `SeededIds` for replays).
        settle_timeout_s: how long one settle probe may wait before failing loudly.
        max_settle_rounds: guard against actors that never go quiet.
    """

    name = "scheduler"

    def __init__(
        self,
        *,
        clock: Clock,
        calendar: MarketCalendar,
        directory: Directory,
        config: ScheduleConfig | None = None,
        ids: IdSource | None = None,
        settle_timeout_s: float = 30.0,
        max_settle_rounds: int = 1000,
    ) -> None:
        for method in ("is_market_open", "is_trading_day", "session_close"):
            if not callable(getattr(calendar, method, None)):
                raise TypeError(f"calendar {calendar!r} has no {method}() method")
        self.clock = clock
        self.calendar = calendar
        self.directory = directory
        self.config = config or ScheduleConfig()
        self._ids = ids or RandomIds()
        self._settle_timeout_s = settle_timeout_s
        self._max_settle_rounds = max_settle_rounds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resume_from: datetime | None = None
        self.sent = 0
        self.skipped = 0

    # --- planning ------------------------------------------------------------------------

    def plan(self, start: datetime, until: datetime | None = None) -> Iterator[PlannedTick]:
        """Yield every tick with ``start <= at <= until`` in (time, stream, role) order."""
        start = to_ist(start)
        until = to_ist(until) if until is not None else None
        c = self.config
        streams: list[Iterator[PlannedTick]] = []
        grids = (
            (TokenCheckTick, c.token_check_every_s, c.token_roles, False),
            (MonitorTick, c.monitor_every_s, c.monitor_roles, True),
            (ScanTick, c.scan_every_s, c.scan_roles, True),
        )
        for n, (kind, every, roles, market_only) in enumerate(grids):
            if every > 0 and roles:
                streams.append(self._grid(n, kind, every, roles, market_only, start, until))
        if c.eod_roles:
            streams.append(self._end_of_day(10, start, until))
        if c.prunes:
            streams.append(self._prunes(20, start, until))
        return heapq.merge(*streams, key=lambda p: (p.at, p.order))

    def _days(self, start: datetime, until: datetime | None) -> Iterator[date]:
        day = start.date()
        while until is None or day <= until.date():
            yield day
            day += _ONE_DAY

    def _grid(
        self,
        stream: int,
        kind: type[Tick],
        every: int,
        roles: tuple[str, ...],
        market_only: bool,
        start: datetime,
        until: datetime | None,
    ) -> Iterator[PlannedTick]:
        idle = 0
        for day in self._days(start, until):
            if market_only and not self.calendar.is_trading_day(day):
                idle += 1
                if idle > _MAX_IDLE_DAYS:
                    return
                continue
            idle = 0
            base = datetime(day.year, day.month, day.day, tzinfo=IST)
            close = self._close(day) if market_only else None
            k = 0 if start <= base else math.ceil((start - base).total_seconds() / every)
            at = base + timedelta(seconds=k * every)
            while at.date() == day:
                if until is not None and at > until:
                    return
                if close is not None and at > close:
                    break
                if not market_only or self.calendar.is_market_open(at):
                    for r, role in enumerate(roles):
                        yield PlannedTick(at=at, order=stream * 100 + r, role=role, kind=kind,
                                          every_s=every)
                k += 1
                at = base + timedelta(seconds=k * every)

    def _end_of_day(
        self, stream: int, start: datetime, until: datetime | None
    ) -> Iterator[PlannedTick]:
        idle = 0
        for day in self._days(start, until):
            if not self.calendar.is_trading_day(day):
                idle += 1
                if idle > _MAX_IDLE_DAYS:
                    return
                continue
            idle = 0
            at = self._close(day) + timedelta(seconds=self.config.eod_delay_s)
            if at < start:
                continue
            if until is not None and at > until:
                return
            for r, role in enumerate(self.config.eod_roles):
                yield PlannedTick(at=at, order=stream * 100 + r, role=role, kind=EndOfDayTick,
                                  fields={"trading_day": day})

    def _prunes(
        self, stream: int, start: datetime, until: datetime | None
    ) -> Iterator[PlannedTick]:
        for day in self._days(start, until):
            at = datetime.combine(day, self.config.prune_at, tzinfo=IST)
            if at < start:
                continue
            if until is not None and at > until:
                return
            for r, spec in enumerate(self.config.prunes):
                yield PlannedTick(at=at, order=stream * 100 + r, role=spec.role, kind=PruneTick,
                                  fields={"table": spec.table, "keep_days": spec.keep_days})

    def _close(self, day: date) -> datetime:
        close = self.calendar.session_close(day)
        if isinstance(close, datetime):
            return to_ist(close)
        if isinstance(close, time):
            return datetime.combine(day, close, tzinfo=IST)
        raise TypeError(f"calendar.session_close({day}) returned {close!r}, not datetime/time")

    # --- sending -------------------------------------------------------------------------

    def _dispatch(self, planned: PlannedTick) -> bool:
        tick = planned.kind(
            message_id=self._ids.next_id(self.name),
            ts=self.clock.now(),
            at=planned.at,
            **planned.fields,
        )
        self.sent += 1
        return self.directory.send(planned.role, tick, sender=self.name)

    # --- realtime ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the realtime thread (ticks at clock times from ``clock.now()`` on)."""
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the realtime thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("scheduler thread did not stop within %.1fs", timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            for planned in self.plan(self.clock.now()):
                if not self.clock.sleep_until(planned.at, self._stop):
                    return
                late = (self.clock.now() - planned.at).total_seconds()
                if planned.every_s is not None and late > planned.every_s:
                    self.skipped += 1
                    logger.debug("skipping late tick %s (%.1fs late)", planned.describe(), late)
                    continue
                self._dispatch(planned)
        except Exception:
            logger.critical("scheduler thread crashed: no more ticks", exc_info=True)

    # --- lock-step -----------------------------------------------------------------------

    def run_lockstep(self, until: datetime) -> list[PlannedTick]:
        """Send every tick up to ``until`` (inclusive), settling the actors after each.

        Consecutive calls continue where the previous one stopped.

        Returns:
            The ticks sent, in order.
        """
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError(f"run_lockstep needs a ManualClock, not {type(clock).__name__}")
        if self._thread is not None:
            raise RuntimeError("run_lockstep while the realtime thread runs")
        until = to_ist(until)
        start = self._resume_from or clock.now()
        done: list[PlannedTick] = []
        for planned in self.plan(start, until):
            clock.advance_to(max(planned.at, clock.now()))
            if self.directory.tap is not None:
                self.directory.tap.next_epoch()
            self._dispatch(planned)
            self.settle()
            done.append(planned)
        clock.advance_to(max(until, clock.now()))
        self._resume_from = until + timedelta(microseconds=1)
        return done

    def settle(self) -> int:
        """Block until every actor in the directory is idle; return the rounds used.

        One round asks each registered actor, in directory order, a `Probe`; the reply
        comes after everything already in that inbox, and is the actor's processed-message
        count. When a whole round returns the same counts as the round before, no actor
        handled anything in between, so no message can still be in flight between them.
        """
        previous: list[tuple[str, str, Any]] | None = None
        for rounds in range(1, self._max_settle_rounds + 1):
            current: list[tuple[str, str, Any]] = []
            for role, ref in self.directory.snapshot().items():
                try:
                    count = ref.ask(Probe(), timeout=self._settle_timeout_s)
                except pykka.ActorDeadError:
                    count = "dead"
                except pykka.Timeout as exc:
                    raise RuntimeError(
                        f"settle: role {role!r} did not answer within "
                        f"{self._settle_timeout_s:g}s (stuck or deadlocked?)"
                    ) from exc
                current.append((role, ref.actor_urn, count))
            if current == previous:
                return rounds
            previous = current
        raise RuntimeError(f"actors did not settle within {self._max_settle_rounds} rounds")
