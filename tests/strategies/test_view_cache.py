"""engine.strategies.view_cache: one analysis and one MarketView per snapshot, unchanged.

Also the one IV solve for every expiry (engine.market.surface.analyze_expiries): each
expiry's IVs are bit for bit those of a solve of its own chain.
"""

from __future__ import annotations

import threading
from dataclasses import fields
from datetime import datetime, timedelta

import numpy as np
import pytest

from engine.market.calendar import NseCalendar
from engine.market.iv import implied_vol_black76
from engine.market.pricing import year_fraction
from engine.market.simulator import SimulatedMarket
from engine.market.surface import _forward, _prices, analyze_expiries, compute_surface, live_chains
from engine.strategies.market_view import build_market_view
from engine.strategies.view_cache import SnapshotViews
from engine.timeutil import IST

START = datetime(2025, 2, 3, 9, 15, tzinfo=IST)
CAL = NseCalendar()


@pytest.fixture(scope="module")
def snaps():
    market = SimulatedMarket(7, START, CAL)
    # an ordinary day and the expiry day (Thursday 6 Feb: the near chain expires at 15:30)
    return [market.snapshot_at(START + timedelta(minutes=m)) for m in (0, 37, 181)] + [
        market.snapshot_at(datetime(2025, 2, 6, 15, 10, tzinfo=IST))]


def _same_view(a, b) -> None:
    assert (a.now, a.spot, a.events, a.realized_range, a.rate, a.futures) == (
        b.now, b.spot, b.events, b.realized_range, b.rate, b.futures)
    assert [e.expiry for e in a.expiries] == [e.expiry for e in b.expiries]
    for x, y in zip(a.expiries, b.expiries, strict=True):
        for f in ("dte", "t", "t_trading", "forward", "atm_strike", "atm_iv", "lot_size",
                  "monthly", "strikes"):
            assert getattr(x, f) == getattr(y, f), f
        for side in ("calls", "puts"):
            sx, sy = getattr(x, side), getattr(y, side)
            assert list(sx) == list(sy)
            for k in sx:  # repr: a Decimal's exponent and a float's last bit count too
                assert [repr(getattr(sx[k], f.name)) for f in fields(sx[k])] == \
                       [repr(getattr(sy[k], f.name)) for f in fields(sy[k])]


def test_one_solve_for_every_expiry_gives_each_expiry_its_own_solve(snaps) -> None:
    for snap in snaps:
        chains = live_chains(snap)
        assert len(chains) >= 2
        for chain, e in zip(chains, analyze_expiries(snap, chains, 0.065), strict=True):
            t = year_fraction(snap.time, chain.expiry)
            ce, pe = _prices(chain.ce), _prices(chain.pe)
            f = _forward(chain, snap.spot, t, 0.065, ce, pe)
            n = chain.strikes.size
            own = implied_vol_black76(np.concatenate([ce, pe]), f,
                                      np.concatenate([chain.strikes, chain.strikes]), t,
                                      np.r_[np.ones(n, bool), np.zeros(n, bool)], 0.065).iv
            src = np.isfinite(chain.ce.iv) & (chain.ce.iv > 0)
            assert np.array_equal(e.ce_iv, np.where(src, chain.ce.iv, own[:n]), equal_nan=True)
            src = np.isfinite(chain.pe.iv) & (chain.pe.iv > 0)
            assert np.array_equal(e.pe_iv, np.where(src, chain.pe.iv, own[n:]), equal_nan=True)
            assert (e.forward, e.t) == (f, t)


def test_cached_view_and_surface_equal_the_uncached_ones(snaps) -> None:
    cache = SnapshotViews()
    for snap in snaps:
        view = cache.view(snap, CAL, events=("budget",), realized_range=42.5)
        _same_view(view, build_market_view(snap, CAL, events=("budget",), realized_range=42.5))
        shared = compute_surface(snap, spot_high=snap.spot + 5, spot_low=snap.spot - 5,
                                 expiries=cache.analysis(snap))
        alone = compute_surface(snap, spot_high=snap.spot + 5, spot_low=snap.spot - 5)
        assert shared.payload == alone.payload
        assert (shared.near_atm_iv, shared.skew, shared.far_straddle) == (
            alone.near_atm_iv, alone.skew, alone.far_straddle)


def test_a_snapshot_is_built_once_and_each_caller_gets_its_pass_through_fields(snaps) -> None:
    cache = SnapshotViews()
    snap = snaps[0]
    scanner = cache.view(snap, CAL, events=("e",), realized_range=10.0)
    monitor = cache.view(snap, CAL)
    assert (cache.misses, cache.hits) == (1, 1)
    assert monitor.events == () and monitor.realized_range is None
    assert scanner.events == ("e",) and scanner.realized_range == 10.0
    assert scanner.expiries is monitor.expiries  # the same chains, not a second build
    assert cache.view(snap, CAL) is monitor
    assert cache.analysis(snap) is cache.analysis(snap)


def test_a_new_snapshot_or_calendar_is_a_miss_and_the_cache_is_bounded(snaps) -> None:
    cache = SnapshotViews(size=2)
    a, b, c = snaps[:3]
    cache.view(a, CAL)
    cache.view(a, NseCalendar())  # a re-read calendar: rebuilt, never a stale view
    cache.view(b, CAL)
    cache.view(c, CAL)  # a is evicted
    cache.view(a, CAL)
    assert (cache.misses, cache.hits) == (5, 0)
    with pytest.raises(ValueError, match="size"):
        SnapshotViews(size=0)


def test_two_threads_asking_for_one_snapshot_build_it_once(snaps) -> None:
    cache = SnapshotViews()
    snap, got = snaps[1], []
    gate = threading.Barrier(2)

    def ask() -> None:
        gate.wait()
        got.append(cache.view(snap, CAL))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 2 and got[0] is got[1]
    assert (cache.misses, cache.hits) == (1, 1)
