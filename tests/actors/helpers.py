"""Test helpers: an `eventually` poller, a weekday calendar and small stub actors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

from engine.actors.base import ActorContext, SupervisedActor
from engine.messages.base import Command
from engine.timeutil import IST, MARKET_CLOSE, MARKET_OPEN, to_ist


def eventually(
    condition: Callable[[], Any], timeout: float = 5.0, *, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)  # poll interval, not a synchronisation sleep
        delay = min(delay * 2, 0.02)


class WeekdayCalendar:
    """Mon-Fri, 09:15 <= t < 15:30 IST, no holidays."""

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() < 5

    def is_market_open(self, moment: datetime) -> bool:
        moment = to_ist(moment)
        return self.is_trading_day(moment.date()) and MARKET_OPEN <= moment.time() < MARKET_CLOSE

    def session_close(self, day: date) -> dtime:
        return MARKET_CLOSE


def ist(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    """Aware IST datetime."""
    return datetime(y, m, d, hh, mm, ss, tzinfo=IST)


@dataclass(frozen=True, slots=True, kw_only=True)
class Boom(Command):
    """Makes a `Worker` raise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Block(Command):
    """Makes a `Worker` block until ``release`` is set."""

    release: threading.Event


class Journal:
    """Thread-safe list shared between a test and its actors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def of_type(self, cls: type) -> list[Any]:
        return [i for i in self.items() if isinstance(i, cls)]


class Worker(SupervisedActor):
    """Records lifecycle and messages; raises on `Boom`; blocks on `Block`.

    ``fail_setups`` is a one-element list: while it is > 0, setup decrements it and raises.
    ``slow_setups`` is a list of events: while it is not empty, setup pops the first one and
    waits until it is set.
    """

    def __init__(
        self,
        *,
        supervisor_ref: Any,
        name: str,
        ctx: ActorContext,
        journal: Journal,
        fail_setups: list[int] | None = None,
        slow_setups: list[threading.Event] | None = None,
    ) -> None:
        super().__init__(supervisor_ref=supervisor_ref, name=name, ctx=ctx)
        self.journal = journal
        self.fail_setups = fail_setups if fail_setups is not None else [0]
        self.slow_setups = slow_setups if slow_setups is not None else []

    def setup(self) -> None:
        if self.slow_setups:  # shared list: the next setup waits for the event popped
            self.slow_setups.pop(0).wait(30)
        if self.fail_setups[0] > 0:
            self.fail_setups[0] -= 1
            raise RuntimeError(f"{self.name} setup failed on purpose")
        self.journal.add(("start", self.name))

    def on_stop(self) -> None:
        self.journal.add(("stop", self.name))

    def handle(self, message: Any) -> Any:
        match message:
            case Boom():
                raise RuntimeError(f"{self.name} boom")
            case Block(release=release):
                release.wait(30)
                return None
            case _:
                self.journal.add(message)
                return None
