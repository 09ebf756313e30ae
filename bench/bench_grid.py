"""Grid search over the 19 Feb-2025 sessions of the real bhavcopies: 1 worker vs 2.

Run:  .venv/bin/python bench/bench_grid.py [--combos 1000] [--strategy IC]

On a scratch database (TEST_DATABASE_ADMIN_URL's server, default
postgresql://postgres@127.0.0.1:5432/postgres; created and dropped) the 19 Feb-2025 UDiFF
files of ../shared/data are imported with the engine's own importer, then:

* one run: ``eod_replay.run`` of the strategy over 3-28 Feb 2025 on the rows read from the
  table, cold (the first run in the process) and warm (the sessions' views already built, as
  in a grid worker after its first combination);
* a grid of ``--combos`` combinations of the strategy's parameters over the same range, on a
  spawn process pool of 1 worker and of 2 workers (each worker loads the rows once).

The figures to watch are the scaling ratio (1-worker time / 2-worker time; 2.0 is perfect on
two cores) and the per-combination cost; the seconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from engine.backtest import eod_replay
from engine.backtest.eod_data import load_rows
from engine.backtest.grid import DataRef, GridSpec, run_grid
from engine.backtest.ingest import import_paths
from engine.store.migrate import migrate
from engine.store.pool import open_pool

DATA = Path(os.environ.get("SHARED_DATA_DIR",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
START, END = date(2025, 2, 3), date(2025, 2, 28)
#: 10 x 10 x 10 = 1000 combinations of each strategy's knobs
SPACES = {
    "IC": {"IC_RV_SESSIONS": list(range(5, 15)),
           "IC_PROFIT_TARGET_PCT": [Decimal(f"0.{n}") for n in range(30, 80, 5)],
           "IC_STOP_LOSS_MULT": [Decimal(f"{n / 2:.1f}") for n in range(2, 12)]},
    "DC": {"DC_PROFIT_TARGET_PCT": [Decimal(f"0.{n:02d}") for n in range(5, 55, 5)],
           "DC_STOP_LOSS_PCT": [Decimal(f"0.{n:02d}") for n in range(10, 60, 5)],
           "DC_MIN_IV_EDGE": [Decimal(n) / 4 - 1 for n in range(10)]},
}


def _space(strategy: str, combos: int) -> dict[str, list]:
    full = SPACES[strategy]
    keys = list(full)
    per = max(1, round(combos ** (1 / len(keys))))
    space = {k: full[k][:per] for k in keys}
    while len(list(itertools.product(*space.values()))) < combos and per < 10:
        per += 1
        space = {k: full[k][:per] for k in keys}
    return space


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--combos", type=int, default=1000, help="grid size (default 1000)")
    ap.add_argument("--strategy", default="IC", choices=sorted(SPACES))
    args = ap.parse_args()
    files = sorted(DATA.glob("BhavCopy_NSE_FO_0_0_0_202502*_F_0000.csv.zip"))
    if len(files) != 19:
        print(f"skipped: the 19 Feb-2025 bhavcopies are not in {DATA} (set SHARED_DATA_DIR)")
        return 0
    admin = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_grid_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"skipped: no PostgreSQL at {admin} ({exc})")
        return 0
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        migrate(url)
        pool = open_pool(url, min_size=1, max_size=2, name="bench-grid")
        t = time.perf_counter()
        import_paths(pool, files, progress=False)
        print(f"imported 19 files in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        rows = load_rows(pool, START - timedelta(eod_replay.LOOKBACK_DAYS), END + timedelta(10))
        events = eod_replay.load_events(pool, START, END)
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        cold = eod_replay.run(args.strategy, START, END, {}, rows=rows, events=events)
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        eod_replay.run(args.strategy, START, END, {}, rows=rows, events=events)
        warm_s = time.perf_counter() - t
        pool.close()
        print(f"one {args.strategy} run over {START}..{END} (19 sessions): rows read in "
              f"{read_s:.2f} s, replay {cold_s:.2f} s cold (views built), {warm_s:.3f} s warm "
              "(views reused, as in a grid worker); "
              f"{cold.metrics['trades']} trades, net ₹{cold.metrics['net_pnl']}")
        space = _space(args.strategy, args.combos)
        ref = DataRef(kind="bhavcopy", database_url=url, start=START, end=END)
        times = {}
        for workers in (1, 2):
            spec = GridSpec(args.strategy, START, END, space, data=ref, min_trades=1,
                            workers=workers)
            t = time.perf_counter()
            result = run_grid(spec)
            times[workers] = time.perf_counter() - t
            best = next((r for r in result.rows if r["rank"] == 1), None)
            print(f"grid of {result.tried} combinations, {workers} worker(s): "
                  f"{times[workers]:.1f} s ({1000 * times[workers] / result.tried:.1f} ms each); "
                  f"{result.ranked} ranked"
                  + (f", best sharpe {best['metrics']['sharpe']} net ₹{best['metrics']['net_pnl']}"
                     if best else ""))
        print(f"scaling 1 -> 2 workers: x{times[1] / times[2]:.2f} (2.00 = perfect on 2 cores; "
              f"{os.cpu_count()} cores here)")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
