"""Scan-cycle latency on the calibrated simulated market (every expiry in reach x 150 strikes).

Prints p50/p99 for:
  * the pure pipeline: snapshot -> one IV solve -> IV surface and market view -> every
    registered strategy (what the scanner computes, without the actor and the database);
  * the actor cycle: ScanTick told to a live ScannerActor (with its PostgreSQL writes) until
    the decision is out (settled), on a scratch database;
and, as a baseline measured in the same run, the cost of producing the snapshot alone.
Needs PostgreSQL at TEST_DATABASE_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres)
for the actor part; skips it otherwise.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from summary import record  # bench/summary.py

from engine.market.calendar import NseCalendar
from engine.market.chain_record import with_chain
from engine.market.simulator import SimulatedMarket
from engine.market.surface import compute_surface
from engine.scan_inputs import next_spread_history, strategy_input
from engine.settings import all_knobs
from engine.strategies.cycle import run_cycle
from engine.strategies.registry import specs
from engine.strategies.slots import strategy_slots
from engine.strategies.view_cache import SnapshotViews
from engine.timeutil import IST

START = datetime(2025, 2, 3, 9, 15, tzinfo=IST)
N = 300


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


class _Defaults:
    """The settings' defaults (what a fresh database holds), as the scanner reads them."""

    def __init__(self) -> None:
        self._values = {k.key: k.default for k in all_knobs()}

    def get(self, key: str):
        return self._values[key]


def pure() -> tuple[list[float], list[float]]:
    """The scanner's computation without the actor and PostgreSQL: snapshot -> one IV solve
    -> surface (+ chain record) and market view -> every registered strategy."""
    cal = NseCalendar()
    market = SimulatedMarket(7, START, cal)
    settings = _Defaults()
    values = dict(settings._values) | {"_calendar": cal}
    params = {spec.name: values for spec in specs()}
    views = SnapshotViews()
    history, pair = [], None
    snap_only, full = [], []
    for i in range(N):
        t = START + timedelta(minutes=i)
        t0 = time.perf_counter()
        snap = market.snapshot_at(t)
        t1 = time.perf_counter()
        surface = with_chain(compute_surface(snap, spot_high=snap.spot + 50,
                                             spot_low=snap.spot - 50,
                                             expiries=views.analysis(snap)), snap)
        view = views.view(snap, cal, realized_range=100.0)
        inp = strategy_input(snap, t, history, (), None)
        inp = replace(inp, market=view, slots=strategy_slots((), settings),
                      extra={"daily_closes": (), "surface_near_atm_iv": surface.near_atm_iv})
        history, pair, _ = next_spread_history(history, pair, inp.near, inp.far)
        run_cycle(inp, params)
        t2 = time.perf_counter()
        snap_only.append(t1 - t0)
        full.append(t2 - t0)
    return snap_only, full


def actor_cycle() -> list[float] | None:
    import psycopg
    import pykka

    from engine.app import build
    from engine.clock import ManualClock
    from engine.config import load
    from engine.messages.commands import Probe, ScanTick
    from engine.store.migrate import migrate
    from engine.store.pool import open_pool

    admin = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    dsn = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(dsn)
        pool = open_pool(dsn)
        clock = ManualClock(START)
        engine = build(load({"DATABASE_URL": dsn}), pool, clock=clock, listen_settings=False,
                       bridge_events=False)
        engine.start(with_bus=False)
        scanner = engine.directory.get("scanner")
        lat = []
        for i in range(N // 2):
            t = START + timedelta(minutes=i)
            clock.advance_to(t)
            t0 = time.perf_counter()
            scanner.tell(ScanTick(ts=t, at=t))
            scanner.ask(Probe(), timeout=30)
            engine.scheduler.settle()
            lat.append(time.perf_counter() - t0)
        engine.stop()
        pool.close()
        pykka.ActorRegistry.stop_all()
        return lat
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    snap_only, full = pure()
    chains = len(SimulatedMarket(7, START, NseCalendar()).snapshot_at(START).chains)
    print(f"scan cycle on the simulated market ({chains} chains x 150 strikes), {N} cycles")
    print(f"{'stage':<44}{'p50 ms':>10}{'p99 ms':>10}{'x baseline':>12}")
    base = statistics.median(snap_only)
    print(f"{'snapshot only (baseline)':<44}{base*1e3:>10.2f}{pct(snap_only, .99)*1e3:>10.2f}{1:>12.2f}")
    print(f"{'snapshot -> IV -> view -> strategies (pure)':<44}{statistics.median(full)*1e3:>10.2f}"
          f"{pct(full, .99)*1e3:>10.2f}{statistics.median(full)/base:>12.2f}")
    lat = actor_cycle()
    if lat is None:
        print("actor cycle: skipped (no PostgreSQL)")
        record("scan", "actor + PostgreSQL p99 / pure p99", None, "<= 2.0")
        return
    print(f"{'ScanTick -> settled (actor + PostgreSQL)':<44}{statistics.median(lat)*1e3:>10.2f}"
          f"{pct(lat, .99)*1e3:>10.2f}{statistics.median(lat)/base:>12.2f}")
    print(f"actor / pure: p50 x{statistics.median(lat) / statistics.median(full):.2f}, "
          f"p99 x{pct(lat, .99) / pct(full, .99):.2f}")
    record("scan", "actor + PostgreSQL p50 / pure p50", statistics.median(lat) / statistics.median(full))
    record("scan", "actor + PostgreSQL p99 / pure p99", pct(lat, .99) / pct(full, .99), "<= 2.0")


if __name__ == "__main__":
    main()
