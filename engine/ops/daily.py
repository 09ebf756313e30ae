"""Live checks that run at start and every trading morning, in a thread of their own.

* the static-IP preflight (:class:`~engine.broker.dhan.ip_check.StaticIpCheck`): at start and
  at ``LIVE_DAILY_CHECK_TIME`` (IST, default 09:00) of every trading day;
* the day's P&L-based exit at Dhan (:meth:`~engine.ops.backstops.BrokerBackstops.
  set_pnl_exit`), on the same schedule, when enabled;
* a kill switch waiting for the account to be flat (:meth:`~engine.ops.backstops.
  BrokerBackstops.poll`), every ``poll_s``.

:meth:`LiveDailyChecks.run_due` does what is due at a given time (tests call it directly);
the thread calls it every ``poll_s`` seconds on the real IST clock. A failing check is logged
and tried again on the next round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any

from engine.timeutil import IST

logger = logging.getLogger(__name__)

__all__ = ["LiveDailyChecks"]


def _check_time(raw: Any) -> time:
    try:
        return time.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"LIVE_DAILY_CHECK_TIME={raw!r}: expected HH:MM (IST)") from None


class LiveDailyChecks:
    """Args:
        ip_check: ``StaticIpCheck`` (``run()``) or None.
        backstops: ``BrokerBackstops`` or None.
        calendar: ``is_trading_day(day)`` (the exchange calendar).
        setting: ``setting(key)`` (the settings registry).
        now: ``() -> aware datetime`` (real time).
        poll_s: seconds between rounds of the thread.
    """

    def __init__(self, *, ip_check: Any, backstops: Any, calendar: Any,
                 setting: Callable[[str], Any],
                 now: Callable[[], datetime] = lambda: datetime.now(IST),
                 poll_s: float = 30.0) -> None:
        self.ip_check, self.backstops, self._calendar = ip_check, backstops, calendar
        self._setting, self._now, self.poll_s = setting, now, float(poll_s)
        self._done: dict[str, date] = {}   # check -> the day it last ran on its schedule
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _due(self, name: str, local: datetime) -> bool:
        """At start (once), then once per trading day from LIVE_DAILY_CHECK_TIME."""
        day = local.date()
        if not self._started:
            return True
        if self._done.get(name) == day or not self._calendar.is_trading_day(day):
            return False
        return local.time() >= _check_time(self._setting("LIVE_DAILY_CHECK_TIME"))

    def run_due(self, at: datetime | None = None) -> list[str]:
        """Run what is due at ``at`` (default now); returns the names of the checks run."""
        local = (at or self._now()).astimezone(IST)
        ran: list[str] = []
        for name, fn in (("ip", self._ip), ("pnl_exit", self._pnl_exit)):
            if self._due(name, local):
                try:
                    fn(local)
                    self._done[name] = local.date()
                    ran.append(name)
                except Exception:
                    logger.exception("live daily check %s failed; trying again next round", name)
        self._started = True
        if self.backstops is not None and self.backstops.waiting:
            self.backstops.poll()
            ran.append("kill_switch")
        return ran

    def _ip(self, _local: datetime) -> None:
        if self.ip_check is not None:
            self.ip_check.run()

    def _pnl_exit(self, local: datetime) -> None:
        if self.backstops is not None and self._calendar.is_trading_day(local.date()):
            self.backstops.set_pnl_exit(local.date())

    # ------------------------------------------------------------------ thread
    def start(self) -> LiveDailyChecks:
        self._thread = threading.Thread(target=self._loop, name="live-daily-checks",
                                        daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:
                logger.exception("live daily checks round failed")
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
