"""One market analysis per market snapshot, shared by the scanner and the monitor.

A scan cycle and the monitor cycle of the same instant see the same snapshot object (the
market data port caches it per engine-clock second); each used to solve the IVs of every
chain and build its own :class:`~engine.strategies.market_view.MarketView`. This cache does
both once per snapshot:

* :meth:`SnapshotViews.analysis` — ``engine.market.surface.analyze_expiries`` of the
  snapshot's live chains (one IV solve for every expiry), which the IV surface and the view
  share;
* :meth:`SnapshotViews.view` — the MarketView built from that analysis; the pass-through
  fields (``events``, ``realized_range``) are set per caller on a copy, so the scanner's view
  and the monitor's differ only there, exactly as when each built its own.

Keyed by snapshot *identity* (the entry holds the snapshot, so its id cannot be reused while
cached) and, for views, by the calendar object and rate: a new snapshot or a re-read
calendar is a miss, never a stale hit. Pure (no I/O), bounded (the ``size`` most recent
snapshots), thread-safe (a per-snapshot lock: the second actor asking for a snapshot being
built waits for it instead of building it again). A build that raises caches nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from engine.market.calendar import NseCalendar
from engine.market.snapshot import MarketSnapshot
from engine.market.surface import ExpiryIV, analyze_expiries, live_chains
from engine.strategies.market_view import MarketView, build_market_view

__all__ = ["DEFAULT_RATE", "SnapshotViews", "shared"]

DEFAULT_RATE = 0.065  # compute_surface's and build_market_view's default


class _Entry:
    __slots__ = ("analyses", "lock", "snapshot", "views")

    def __init__(self, snapshot: MarketSnapshot) -> None:
        self.snapshot = snapshot
        self.lock = threading.Lock()
        self.analyses: dict[float, tuple[ExpiryIV, ...]] = {}
        # (id(calendar), rate) -> (calendar, view); the calendar is held so its id stays its own
        self.views: dict[tuple[int, float], tuple[Any, MarketView]] = {}


class SnapshotViews:
    """The analysis and MarketView of the ``size`` most recent snapshots."""

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"SnapshotViews size must be >= 1, got {size}")
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _entry(self, snapshot: MarketSnapshot) -> _Entry:
        with self._lock:
            entry = self._entries.get(id(snapshot))
            if entry is not None and entry.snapshot is snapshot:
                self._entries.move_to_end(id(snapshot))
                return entry
            entry = _Entry(snapshot)
            self._entries[id(snapshot)] = entry
            self._entries.move_to_end(id(snapshot))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return entry

    def analysis(self, snapshot: MarketSnapshot, rate: float = DEFAULT_RATE
                 ) -> tuple[ExpiryIV, ...]:
        """``analyze_expiries(snapshot, live_chains(snapshot), rate)``, once per snapshot."""
        entry = self._entry(snapshot)
        with entry.lock:
            return self._analysis(entry, rate)

    def _analysis(self, entry: _Entry, rate: float) -> tuple[ExpiryIV, ...]:
        got = entry.analyses.get(rate)
        if got is None:
            got = analyze_expiries(entry.snapshot, live_chains(entry.snapshot), rate)
            entry.analyses[rate] = got
        return got

    def view(self, snapshot: MarketSnapshot, calendar: NseCalendar, *,
             events: Sequence[Any] = (), realized_range: float | None = None,
             rate: float = DEFAULT_RATE) -> MarketView:
        """``build_market_view(snapshot, calendar, events=..., realized_range=..., rate=...)``,
        built once per (snapshot, calendar, rate)."""
        entry = self._entry(snapshot)
        key = (id(calendar), rate)
        with entry.lock:
            got = entry.views.get(key)
            if got is not None and got[0] is calendar:
                self.hits += 1
                view = got[1]
            else:
                self.misses += 1
                view = build_market_view(snapshot, calendar, rate=rate,
                                         analysis=self._analysis(entry, rate))
                entry.views[key] = (calendar, view)
        if not events and realized_range is None:
            return view
        return replace(view, events=tuple(events), realized_range=realized_range)


#: the process's cache (the scanner and the monitor run in one process)
shared = SnapshotViews()
