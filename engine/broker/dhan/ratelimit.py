"""Client-side rate limiting per Dhan endpoint class, shared by every client in the process.

Limits (reference §8): orders 10/s, 250/min, 1000/h, 7000/day; data 5/s and 100000/day;
quote 1/s; non-trading 20/s; option chain one *unique* request per 3 s (per request key,
e.g. underlying + expiry). Callers block until a slot is free; when the wait would exceed
``max_wait`` a :class:`RateLimitError` is raised instead.

**Priority.** Calls that protect money — order lookups (by id, by correlation id, order book,
trade book), cancels, exit and unwind orders, the positions read that resolves an order in
doubt — are ``priority``: they may use a class's whole budget. Every other call of the same
class (entries, routine positions/funds polls, profile) sees its windows shrunk by the
class's ``reserved`` share, so it can never eat the headroom those need (an order lookup must
not die on a 429 because a poll used the second's budget). Quotes, data and option chains
are classes of their own and never touch the order or lookup budgets.

Limiters are sliding-window logs guarded by one condition variable, so they are
thread-safe. :func:`limiter_for` returns the process-wide limiter of a client id.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum

from engine.broker.dhan.errors import RateLimitError


class EndpointClass(StrEnum):
    """Rate-limit class of an endpoint."""

    ORDER = "order"
    DATA = "data"
    QUOTE = "quote"
    NON_TRADING = "non_trading"
    OPTION_CHAIN = "option_chain"


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` calls in any ``seconds``-long window."""

    limit: int
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimits:
    """Windows per endpoint class plus the option-chain unique-request interval.

    ``margin`` is added to every window length and to the unique-request interval, so that
    network jitter between the client's clock and the server's cannot push a burst over the
    server's limit (a request stamped here before it is sent may reach Dhan later than the
    one before it did).
    """

    windows: dict[EndpointClass, tuple[Window, ...]] = field(default_factory=lambda: {
        EndpointClass.ORDER: (Window(10, 1.0), Window(250, 60.0), Window(1000, 3600.0),
                              Window(7000, 86400.0)),
        EndpointClass.DATA: (Window(5, 1.0), Window(100_000, 86400.0)),
        EndpointClass.QUOTE: (Window(1, 1.0),),
        EndpointClass.NON_TRADING: (Window(20, 1.0),),
        EndpointClass.OPTION_CHAIN: (),
    })
    unique_interval: float = 3.0
    margin: float = 0.1
    #: share of every window of a class kept for priority calls (0 = none)
    reserved: dict[EndpointClass, float] = field(default_factory=lambda: {
        EndpointClass.ORDER: 0.3,
        EndpointClass.NON_TRADING: 0.25,
    })

    @property
    def unique_span(self) -> float:
        """How long an identical option-chain request is held back, margin included."""
        return self.unique_interval + self.margin

    def limit_for(self, klass: EndpointClass, window: Window, priority: bool) -> int:
        """The calls a window allows: all of it for priority calls, else less the reserve."""
        share = 0.0 if priority else self.reserved.get(klass, 0.0)
        return max(1, int(window.limit * (1.0 - share)))


DHAN_LIMITS = RateLimits()


class RateLimiter:
    """Blocking sliding-window limiter for all endpoint classes of one Dhan client id.

    Args:
        limits: the windows to enforce.
        clock: monotonic seconds (injectable for tests).
        sleep: how to wait (injectable; a fake sleep may advance a fake clock).
    """

    def __init__(
        self,
        limits: RateLimits = DHAN_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._log: dict[EndpointClass, deque[float]] = {c: deque() for c in EndpointClass}
        self._unique: dict[Hashable, float] = {}

    def _wait_needed(self, klass: EndpointClass, key: Hashable | None, now: float,
                     priority: bool = False) -> float:
        wait = 0.0
        log = self._log[klass]
        for window in self.limits.windows.get(klass, ()):
            limit = self.limits.limit_for(klass, window, priority)
            span = window.seconds + self.limits.margin
            recent = [t for t in log if t > now - span] if len(log) >= limit else []
            if len(recent) >= limit:
                wait = max(wait, recent[-limit] + span - now)
        if key is not None and key in self._unique:
            wait = max(wait, self._unique[key] + self.limits.unique_span - now)
        return wait

    def _prune(self, now: float) -> None:
        horizon = max((w.seconds for ws in self.limits.windows.values() for w in ws), default=0)
        horizon += self.limits.margin
        for log in self._log.values():
            while log and log[0] <= now - horizon:
                log.popleft()
        stale = [k for k, t in self._unique.items() if t <= now - self.limits.unique_span]
        for k in stale:
            del self._unique[k]

    def acquire(
        self, klass: EndpointClass, *, key: Hashable | None = None, max_wait: float = 30.0,
        priority: bool = False,
    ) -> float:
        """Block until a call of ``klass`` (and unique ``key``) is allowed, then record it.

        Args:
            klass: endpoint class.
            key: identity of a "unique request" (option chain); ``None`` when not applicable.
            max_wait: longest acceptable total wait in seconds.
            priority: a money-protecting call (see the module docstring): it may use the
                class's reserved share.

        Returns:
            Seconds waited.

        Raises:
            RateLimitError: the required wait exceeds ``max_wait``.
        """
        start = self._clock()
        with self._cond:
            while True:
                now = self._clock()
                self._prune(now)
                wait = self._wait_needed(klass, key, now, priority)
                if wait <= 0:
                    self._log[klass].append(now)
                    if key is not None:
                        self._unique[key] = now
                    self._cond.notify_all()
                    return now - start
                if now - start + wait > max_wait:
                    raise RateLimitError(
                        f"client-side {klass.value} rate limit: next slot in {wait:.2f}s, "
                        f"more than max_wait {max_wait:.2f}s"
                    )
                if self._sleep is None:
                    self._cond.wait(timeout=wait)
                else:
                    self._cond.release()
                    try:
                        self._sleep(wait)
                    finally:
                        self._cond.acquire()

    def history(self, klass: EndpointClass) -> list[float]:
        """Clock readings of the recorded calls of ``klass`` still in the longest window."""
        with self._cond:
            return list(self._log[klass])


_REGISTRY: dict[str, RateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def limiter_for(client_id: str, limits: RateLimits = DHAN_LIMITS) -> RateLimiter:
    """Process-wide limiter of ``client_id`` (created on first use with ``limits``)."""
    with _REGISTRY_LOCK:
        limiter = _REGISTRY.get(client_id)
        if limiter is None:
            limiter = _REGISTRY[client_id] = RateLimiter(limits)
        return limiter


def reset_registry() -> None:
    """Forget every registered limiter (tests and process re-initialisation)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
