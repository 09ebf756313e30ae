"""One scan cycle with every registered strategy, against CAL_ARB alone, on 3 expiries x 150 strikes.

Run:  .venv/bin/python bench/bench_strategies.py [--cycles 40] [--actor-cycles 25]

Prints medians (and p90) per cycle of, on the seeded simulated market (a fresh snapshot each
cycle, 2025-02-03 from 09:40 IST, inside every entry window):

* pure: snapshot -> market view -> ``engine.strategies.cycle.run_cycle`` with CAL_ARB alone
  (the baseline: the single strategy the engine used to run), then with every registered
  strategy enabled; and each options strategy's ``decide`` alone on the same inputs;
* through the actor: ``ScanTick`` told to the ScannerActor of a real engine (lock-step on a
  ManualClock, PostgreSQL writes included) until every actor is idle, for CAL_ARB alone and
  for every strategy, each on a scratch database created on the server of
  TEST_DATABASE_ADMIN_URL (or DATABASE_URL's server; default
  postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards. Without a
  reachable server that part is skipped and says so.

The ratios against the CAL_ARB baseline measured in the same run are the figures to watch;
the milliseconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.market.calendar import NseCalendar
from engine.market.simulator import SimulatedMarket
from engine.scan_inputs import next_spread_history, strategy_input
from engine.settings import all_knobs
from engine.strategies import registry
from engine.strategies.cycle import run_cycle
from engine.strategies.market_view import build_market_view
from engine.strategies.slots import slots_from
from engine.timeutil import IST

START = datetime(2025, 2, 3, 9, 15, tzinfo=IST)
FIRST = datetime(2025, 2, 3, 9, 40, tzinfo=IST)
BASELINE = "CAL_ARB"


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


def _params(enabled: tuple[str, ...], cal: NseCalendar) -> dict[str, dict[str, Any]]:
    base = {k.key: k.default for k in all_knobs()}
    base["_calendar"] = cal
    for spec in registry.specs():
        base[spec.enabled_key] = spec.name in enabled
    return {spec.name: base for spec in registry.specs()}


def pure(cycles: int) -> dict[str, list[float]]:
    """Per-cycle seconds: input build, CAL_ARB-alone cycle, all-strategies cycle, each decide."""
    cal = NseCalendar()
    market = SimulatedMarket(7, START, cal)
    every = tuple(s.name for s in registry.specs())
    alone, full = _params((BASELINE,), cal), _params(every, cal)
    base_p = full[BASELINE]
    limits = {registry.DC_FAMILY: int(base_p["DC_FAMILY_SLOTS"])} | {
        s.name: int(base_p.get(f"{s.name}_SLOTS", base_p["RISK_MAX_OPEN_POSITIONS"]))
        for s in registry.specs() if s.family is None}
    closes = market.daily_closes(FIRST.date(), 30)
    history: list[Any] = []
    pair = None
    out: dict[str, list[float]] = {"inputs": [], "alone": [], "all": []}
    for i in range(cycles):
        t = FIRST + timedelta(minutes=i)
        t0 = time.perf_counter()
        snap = market.snapshot_at(t)
        inp = strategy_input(snap, t, history, (), None)
        view = build_market_view(snap, cal, realized_range=60.0)
        inp = replace(inp, market=view, slots=slots_from((), limits), extra={"daily_closes": closes})
        t1 = time.perf_counter()
        run_cycle(inp, alone, (registry.get(BASELINE),))
        t2 = time.perf_counter()
        result = run_cycle(inp, full)
        t3 = time.perf_counter()
        out["inputs"].append(t1 - t0)
        out["alone"].append(t1 - t0 + t2 - t1)
        out["all"].append(t1 - t0 + t3 - t2)
        for spec in registry.specs():
            if spec.fallback_of is not None:   # IC as the cycle ran it: told why MDC selected nothing
                why = "; ".join(result.decisions[spec.fallback_of].reasons) or "MDC selected nothing"
                s0 = time.perf_counter()
                spec.decide(inp, full[spec.name], mdc_selected_nothing=why)
            else:
                s0 = time.perf_counter()
                spec.decide(inp, full[spec.name])
            out.setdefault(f"decide {spec.name}", []).append(time.perf_counter() - s0)
        if inp.near is not None and inp.far is not None:
            history, pair, _ = next_spread_history(history, pair, inp.near, inp.far)
    return out


def _admin_url() -> str:
    admin = os.environ.get("TEST_DATABASE_ADMIN_URL")
    if admin:
        return admin
    url = os.environ.get("DATABASE_URL")
    if url:
        return url.rsplit("/", 1)[0] + "/postgres"
    return "postgresql://postgres@127.0.0.1:5432/postgres"


def actor(cycles: int, strategies: tuple[str, ...]) -> list[float] | str:
    """Per-cycle seconds of ScanTick -> settled on a real engine; or why it was skipped."""
    import psycopg
    import pykka

    from engine.app import build
    from engine.clock import ManualClock
    from engine.config import load
    from engine.messages.commands import Probe, ScanTick
    from engine.settings import Settings
    from engine.store.migrate import migrate
    from engine.store.pool import open_pool

    admin = _admin_url()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        return f"no PostgreSQL reachable at {admin.split('@')[-1]} ({type(exc).__name__})"
    dsn = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(dsn)
        pool = open_pool(dsn, max_size=6, name="bench")
        settings = Settings(pool)
        for spec in registry.specs():
            settings.set(spec.enabled_key, "true" if spec.name in strategies else "false",
                         updated_by="bench_strategies")
        clock = ManualClock(START)
        engine = build(load({"DATABASE_URL": dsn, "SIM_SEED": "7"}), pool, clock=clock,
                       listen_settings=False, bridge_events=False)
        engine.start(with_bus=False)
        try:
            scanner = engine.directory.get("scanner")
            lat = []
            for i in range(cycles):
                t = FIRST + timedelta(minutes=i)
                clock.advance_to(t)
                t0 = time.perf_counter()
                scanner.tell(ScanTick(ts=t, at=t))
                scanner.ask(Probe(), timeout=60)
                engine.scheduler.settle()
                lat.append(time.perf_counter() - t0)
        finally:
            engine.stop()
            pool.close()
            pykka.ActorRegistry.stop_all()
        return lat
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=40, help="pure cycles (default 40)")
    ap.add_argument("--actor-cycles", type=int, default=25, help="cycles per actor run (default 25)")
    args = ap.parse_args()
    names = tuple(s.name for s in registry.specs())
    t_start = time.perf_counter()
    res = pure(args.cycles)
    base = med(res["alone"])
    print(f"scan cycle, 3 expiries x 150 strikes, simulated market, {args.cycles} cycles "
          f"(strategies: {', '.join(names)})")
    print(f"{'pure':<52}{'p50 ms':>9}{'p90 ms':>9}{'x ' + BASELINE:>11}")
    rows = [("snapshot -> market view (inputs only)", res["inputs"]),
            (f"{BASELINE} alone: inputs + run_cycle (baseline)", res["alone"]),
            ("every strategy: inputs + run_cycle", res["all"])]
    rows += [(f"  {k} alone (no inputs)", v) for k, v in res.items() if k.startswith("decide ")]
    for label, xs in rows:
        print(f"{label:<52}{med(xs) * 1e3:>9.2f}{p90(xs) * 1e3:>9.2f}{med(xs) / base:>11.2f}")
    print(f"{'through the ScannerActor (PostgreSQL writes)':<52}{'p50 ms':>9}{'p90 ms':>9}"
          f"{'x ' + BASELINE:>11}")
    alone = actor(args.actor_cycles, (BASELINE,))
    if isinstance(alone, str):
        print(f"  skipped: {alone}")
    else:
        every = actor(args.actor_cycles, names)
        a_base = med(alone)
        for label, xs in ((f"ScanTick -> settled, {BASELINE} alone (baseline)", alone),
                          ("ScanTick -> settled, every strategy", every)):
            if isinstance(xs, str):
                print(f"  skipped: {xs}")
                continue
            print(f"{label:<52}{med(xs) * 1e3:>9.2f}{p90(xs) * 1e3:>9.2f}{med(xs) / a_base:>11.2f}")
    print(f"(bench ran {time.perf_counter() - t_start:.1f} s)")


if __name__ == "__main__":
    main()
