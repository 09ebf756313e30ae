"""The process-wide order-rate governor: one budget of orders per second per exchange segment,
shared by entries, exits, flattens, modifications and cancels, exits first.

SEBI's retail-algo framework treats a client sending more than a threshold of orders per
second on an exchange as an algo that must be registered; Dhan's own order APIs allow 10 per
second (reference dhan-api.md §8). The governor keeps every order this process sends below
``LIVE_ORDER_RATE_PER_SEC`` (default 8) in *any* window of one second (plus a small margin
for clock jitter between this process and the broker), per exchange segment.

Callers queue: a waiting exit, flatten or cancel (rank :data:`EXIT`) always goes before a
waiting entry (rank :data:`ENTRY`), and callers of one rank go in arrival order. A caller
that would wait longer than ``max_wait`` gets :class:`~engine.broker.dhan.errors.
RateLimitError` and nothing is sent (an entry is then refused with that reason; exits are
given a much longer wait by the client).

The Dhan client's sliding-window limiter (``ratelimit``) stays underneath as the guard for
Dhan's per-minute/hour/day windows; this governor is the per-second budget the engine plans
with.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from engine.broker.dhan.errors import RateLimitError

__all__ = ["ENTRY", "EXIT", "GovernorStats", "OrderGovernor", "governor_for",
           "reset_governors"]

EXIT = 0   # exits, flattens, cancels, operator orders: first in the queue
ENTRY = 1  # new entries
DEFAULT_RATE = 8


@dataclass(frozen=True, slots=True)
class GovernorStats:
    """What the governor granted: per segment, the grant times (monotonic) still remembered."""

    rate: int
    granted: int
    waiting: int


class OrderGovernor:
    """Blocking per-segment budget of ``rate`` orders in any ``window_s`` (+ ``margin_s``).

    Args:
        rate: orders allowed per window and exchange segment (>= 1).
        window_s: the window length (1 second).
        margin_s: added to the window so jitter cannot push a burst over the broker's limit.
        clock: monotonic seconds (injectable).
    """

    def __init__(self, rate: int = DEFAULT_RATE, *, window_s: float = 1.0,
                 margin_s: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        if int(rate) < 1:
            raise ValueError(f"order rate must be at least 1 per second, got {rate!r}")
        self._rate = int(rate)
        self.window_s, self.margin_s = float(window_s), float(margin_s)
        self._clock = clock
        self._cond = threading.Condition()
        self._grants: dict[str, deque[float]] = {}
        self._queues: dict[str, list[tuple[int, int]]] = {}
        self._seq = itertools.count()
        self._granted = 0
        self._source: Callable[[], int] | None = None

    def follow(self, source: Callable[[], int]) -> None:
        """Read the budget from ``source`` (the setting) at every acquire; a value that
        cannot be read or is below 1 keeps the last good one."""
        self._source = source

    @property
    def rate(self) -> int:
        return self._rate

    def set_rate(self, rate: int) -> None:
        """Change the budget (the setting was edited); waiting callers re-check at once."""
        if int(rate) < 1:
            raise ValueError(f"order rate must be at least 1 per second, got {rate!r}")
        with self._cond:
            self._rate = int(rate)
            self._cond.notify_all()

    def _wait_for(self, segment: str, now: float) -> float:
        log = self._grants.setdefault(segment, deque())
        span = self.window_s + self.margin_s
        while log and log[0] <= now - span:
            log.popleft()
        if len(log) < self._rate:
            return 0.0
        return log[-self._rate] + span - now

    def acquire(self, segment: str = "NSE_FNO", *, rank: int = ENTRY,
                max_wait: float = 30.0) -> float:
        """Block until this caller may send one order on ``segment``; record it.

        Returns:
            Seconds waited.

        Raises:
            RateLimitError: the caller would wait more than ``max_wait`` seconds (it leaves
                the queue; nothing is recorded).
        """
        start = self._clock()
        ticket = (int(rank), next(self._seq))
        if self._source is not None:
            try:
                rate = int(self._source())
            except Exception:  # a settings read that failed: keep the last good budget
                rate = self._rate
            if rate >= 1 and rate != self._rate:
                self.set_rate(rate)
        with self._cond:
            queue = self._queues.setdefault(segment, [])
            heapq.heappush(queue, ticket)
            try:
                while True:
                    now = self._clock()
                    wait = self._wait_for(segment, now)
                    if queue[0] == ticket and wait <= 0:
                        heapq.heappop(queue)
                        self._grants[segment].append(now)
                        self._granted += 1
                        self._cond.notify_all()
                        return now - start
                    waited = now - start
                    if waited >= max_wait:
                        raise RateLimitError(
                            f"order-rate governor: no {segment} slot within {max_wait:.1f}s "
                            f"({self._rate}/s budget, {len(queue) - 1} order(s) queued ahead "
                            "or beside): order not sent")
                    pause = wait if queue[0] == ticket else self.window_s / 4
                    self._cond.wait(timeout=max(0.001, min(pause, max_wait - waited)))
            finally:
                if ticket in queue:
                    queue.remove(ticket)
                    heapq.heapify(queue)
                    self._cond.notify_all()

    def stats(self, segment: str = "NSE_FNO") -> GovernorStats:
        with self._cond:
            return GovernorStats(rate=self._rate, granted=self._granted,
                                 waiting=len(self._queues.get(segment, [])))


_REGISTRY: dict[str, OrderGovernor] = {}
_LOCK = threading.Lock()


def governor_for(client_id: str, rate: int | None = None) -> OrderGovernor:
    """The process-wide governor of a Dhan client id (created with ``rate`` on first use;
    a later ``rate`` updates it)."""
    with _LOCK:
        gov = _REGISTRY.get(client_id)
        if gov is None:
            gov = _REGISTRY[client_id] = OrderGovernor(rate or DEFAULT_RATE)
        elif rate is not None and rate != gov.rate:
            gov.set_rate(rate)
        return gov


def reset_governors() -> None:
    """Forget every governor (tests, process re-initialisation)."""
    with _LOCK:
        _REGISTRY.clear()
