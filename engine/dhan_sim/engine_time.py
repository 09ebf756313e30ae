"""The engine's own simulated market, at the engine's clock, served by the Dhan simulator.

A rehearsal runs the engine on its simulated market (``MARKET_SOURCE=sim``, a ManualClock that
can run 60x real time) with live orders going to the simulator (``BROKER=dhan``). For the
orders to fill at the prices the engine saw, the simulator must quote the *same* market at the
*same* moment: it builds ``SimulatedMarket(seed)`` (whose path depends only on the seed and
the time, never on the start) and prices it at the time the engine sends with every request
(``X-Engine-Time``, sent when ``DHAN_SEND_ENGINE_TIME=true``). Before the first such request
the clock sits at ``start``; the first one sets it, and from then on it only moves forward.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from engine.clock import Clock
from engine.dhan_sim.market import SnapshotMarket
from engine.market.calendar import NseCalendar
from engine.market.simulator import SimulatedMarket
from engine.timeutil import IST

ENGINE_TIME_HEADER = "x-engine-time"


class EngineTimeMarket:
    """A SimulatedMarket whose clock follows the engine (see the module docstring).

    Args:
        seed: the engine's ``SIM_SEED``.
        start: the clock before the engine's first request (IST-aware).
        clock: the engine's clock, when the engine runs in the same process; the request
            header is then not needed (and ignored). Settable after construction.
    """

    def __init__(self, seed: int, start: datetime, clock: Clock | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.seed = seed
        self._market = SimulatedMarket(seed, start, NseCalendar())
        self._now = start.astimezone(IST)
        self._followed = False
        self._lock = threading.Lock()
        self._cache: tuple[datetime, Any] | None = None
        self.clock = clock
        self.source = SnapshotMarket(self.snapshot)

    def follow(self, header: str | None) -> None:
        """Move the clock to the engine's time from a request header (the first one sets it,
        later ones never move it backwards; a malformed value is ignored)."""
        if not header:
            return
        try:
            at = datetime.fromisoformat(header.strip())
        except ValueError:
            return
        if at.tzinfo is None:
            return
        with self._lock:
            if not self._followed or at > self._now:
                self._now, self._followed = at.astimezone(IST), True

    @property
    def now(self) -> datetime:
        return self.clock.now() if self.clock is not None else self._now

    def snapshot(self) -> Any:
        with self._lock:
            at = self.clock.now() if self.clock is not None else self._now
            if self._cache is None or self._cache[0] != at:
                self._cache = (at, self._market.snapshot_at(at))
            return self._cache[1]
