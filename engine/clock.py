"""The one time port of the engine: real, simulated (scaled) and manual (lock-step) clocks.

Every clock returns timezone-aware IST datetimes. Code that needs "now" takes a `Clock`
instead of calling `datetime.now()`, so a backtest, a rehearsal at 60x speed and a
deterministic replay all run the same code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from engine.timeutil import IST, to_ist

__all__ = ["Clock", "ManualClock", "RealClock", "SimulatedClock"]

_MAX_WAIT_S = 0.5  # longest single real wait, so a stop request is noticed quickly


@runtime_checkable
class Clock(Protocol):
    """What every clock provides."""

    def now(self) -> datetime:
        """Return the current instant as an aware IST datetime."""
        ...

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Block the calling thread until `moment` (clock time) or until `stop` is set.

        Returns:
            True when `moment` was reached, False when `stop` was set first.
        """
        ...


def _require_aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None:
        raise ValueError(f"{what} {moment!r} is naive: clocks need timezone-aware datetimes")
    return to_ist(moment)


class RealClock:
    """The wall clock in IST."""

    def now(self) -> datetime:
        """Return the wall-clock instant in IST."""
        return datetime.now(IST)

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Wait (in short slices) until the wall clock reaches `moment` or `stop` is set."""
        moment = _require_aware(moment, "moment")
        while not stop.is_set():
            remaining = (moment - self.now()).total_seconds()
            if remaining <= 0:
                return True
            stop.wait(min(remaining, _MAX_WAIT_S))
        return False

    def __repr__(self) -> str:
        return "RealClock()"


class SimulatedClock:
    """A clock that starts at `start` and runs `speed` times faster than real time.

    Simulated time is `start + (monotonic seconds since creation) * speed`.

    Args:
        start: aware datetime the simulation starts at (for example a market open).
        speed: simulated seconds per real second; must be > 0.
        monotonic: real time source in seconds (injectable for tests).
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        *,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self._start = _require_aware(start, "start")
        self._speed = float(speed)
        self._monotonic = time.monotonic if monotonic is None else monotonic
        self._origin = self._monotonic()

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        """Return the simulated instant."""
        elapsed = (self._monotonic() - self._origin) * self._speed
        return self._start + timedelta(seconds=elapsed)

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Wait the real time needed for the simulated clock to reach `moment`."""
        moment = _require_aware(moment, "moment")
        while not stop.is_set():
            remaining = (moment - self.now()).total_seconds()
            if remaining <= 0:
                return True
            stop.wait(min(remaining / self._speed, _MAX_WAIT_S))
        return False

    def __repr__(self) -> str:
        return f"SimulatedClock(start={self._start.isoformat()}, speed={self._speed})"


class ManualClock:
    """A clock that only moves when told to; the lock-step scheduler drives it.

    Thread-safe: any thread may read it, and `sleep_until` waiters wake on `advance_to`.
    """

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start, "start")
        self._cond = threading.Condition()

    def now(self) -> datetime:
        """Return the current manual instant."""
        with self._cond:
            return self._now

    def advance_to(self, moment: datetime) -> datetime:
        """Move the clock forward to `moment`; moving backwards is an error."""
        moment = _require_aware(moment, "moment")
        with self._cond:
            if moment < self._now:
                raise ValueError(
                    f"ManualClock cannot go back from {self._now.isoformat()} "
                    f"to {moment.isoformat()}"
                )
            self._now = moment
            self._cond.notify_all()
            return moment

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta` (must not be negative)."""
        if delta < timedelta(0):
            raise ValueError(f"ManualClock.advance needs a non-negative delta, got {delta}")
        with self._cond:
            return self.advance_to(self._now + delta)

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Wait until someone advances the clock to `moment` or `stop` is set."""
        moment = _require_aware(moment, "moment")
        with self._cond:
            while not stop.is_set():
                if self._now >= moment:
                    return True
                self._cond.wait(_MAX_WAIT_S)
        return False

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now().isoformat()})"
