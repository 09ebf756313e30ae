"""Scan-cycle latency on a full simulated chain (3 expiries x 150 strikes).

Prints p50/p99 for:
  * the pure pipeline: snapshot -> IV surface -> strategy decision (what the scanner computes);
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
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.market.calendar import NseCalendar
from engine.market.simulator import SimulatedMarket
from engine.market.surface import compute_surface
from engine.scan_inputs import next_spread_history, strategy_input
from engine.settings import all_knobs
from engine.strategies import cal_arb
from engine.timeutil import IST

START = datetime(2025, 2, 3, 9, 15, tzinfo=IST)
N = 300


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def pure() -> tuple[list[float], list[float]]:
    market = SimulatedMarket(7, START, NseCalendar())
    params = {k.key: k.default for k in all_knobs()} | {"CAL_ARB_ENABLED": True}
    history, pair = [], None
    snap_only, full = [], []
    for i in range(N):
        t = START + timedelta(minutes=i)
        t0 = time.perf_counter()
        snap = market.snapshot_at(t)
        t1 = time.perf_counter()
        compute_surface(snap, spot_high=snap.spot + 50, spot_low=snap.spot - 50)
        inp = strategy_input(snap, t, history, (), None)
        history, pair, _ = next_spread_history(history, pair, inp.near, inp.far)
        cal_arb.decide(inp, params)
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
    print(f"scan cycle on a {3}x150-strike simulated chain, {N} cycles")
    print(f"{'stage':<44}{'p50 ms':>10}{'p99 ms':>10}{'x baseline':>12}")
    base = statistics.median(snap_only)
    print(f"{'snapshot only (baseline)':<44}{base*1e3:>10.2f}{pct(snap_only, .99)*1e3:>10.2f}{1:>12.2f}")
    print(f"{'snapshot -> IV surface -> decision (pure)':<44}{statistics.median(full)*1e3:>10.2f}"
          f"{pct(full, .99)*1e3:>10.2f}{statistics.median(full)/base:>12.2f}")
    lat = actor_cycle()
    if lat is None:
        print("actor cycle: skipped (no PostgreSQL)")
    else:
        print(f"{'ScanTick -> settled (actor + PostgreSQL)':<44}{statistics.median(lat)*1e3:>10.2f}"
              f"{pct(lat, .99)*1e3:>10.2f}{statistics.median(lat)/base:>12.2f}")


if __name__ == "__main__":
    main()
