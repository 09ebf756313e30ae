"""``python -m engine backtest grid-search``: every combination of a parameter space, on
worker processes (or a Dask cluster), ranked; recorded in ``backtest_grid_jobs``.

    python -m engine backtest grid-search --strategy MDC --start 2025-02-03 --end 2025-02-28 \\
        --use-defaults
    python -m engine backtest grid-search --strategy DC --start ... --end ... \\
        --param DC_PROFIT_TARGET_PCT=0.10,0.15,0.28 --param DC_STOP_LOSS_PCT=0.3,0.5 \\
        --rank-by sharpe --min-trades 5 --oos 0.3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from decimal import Decimal
from typing import Any

from engine.backtest.grid import RANK_KEYS, DataRef, GridSpec, run_grid
from engine.settings import SettingError, knob
from engine.strategies import registry

__all__ = ["add_grid_arguments", "grid_search", "parse_space"]


def add_grid_arguments(a: argparse.ArgumentParser) -> None:
    """The grid-search options (``--strategy``, ``--start``, ``--end`` are the caller's)."""
    a.add_argument("--use-defaults", action="store_true",
                   help="search the strategy's declared parameter space (see --list-space)")
    a.add_argument("--rank-by", default="sharpe", choices=RANK_KEYS,
                   help="metric to rank by (default sharpe; ties by net P&L)")
    a.add_argument("--min-trades", type=int, default=5, metavar="N",
                   help="a combination with fewer trades is shown but not ranked (default 5)")
    a.add_argument("--oos", type=float, default=None, metavar="FRACTION",
                   help="walk-forward: rank on the first part of the range, run the best "
                        "--oos-top again on the last FRACTION of its trading days (e.g. 0.3)")
    a.add_argument("--oos-top", type=int, default=5, metavar="K",
                   help="combinations re-run out of sample (default 5)")
    a.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default one per core)")
    a.add_argument("--executor", default="process", choices=("process", "dask"),
                   help="process: a local process pool; dask: a Dask distributed cluster")
    a.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="the Dask scheduler (with --executor dask)")
    a.add_argument("--top", type=int, default=20, metavar="N", help="rows printed (default 20)")
    a.add_argument("--no-record", action="store_true",
                   help="do not record the job in backtest_grid_jobs")


def parse_space(strategy: str, params: list[str], use_defaults: bool
                ) -> dict[str, list[Any]]:
    """The space from ``--use-defaults`` and/or ``--param KEY=v1,v2`` (later wins), every
    value checked and typed by its setting's registry entry.

    Raises:
        SettingError / ValueError: an unknown key, a bad value, a key of another strategy,
            or no space at all.
    """
    spec = registry.get(strategy)
    space: dict[str, list[Any]] = {}
    if use_defaults:
        space.update({k: list(v) for k, v in spec.grid_space.items()})
        if not space:
            raise ValueError(f"{strategy} declares no default parameter space")
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep or not raw.strip():
            raise SettingError(f"--param {item!r}: expected KEY=v1,v2,...")
        k = knob(key.strip())
        space[k.key] = [k.coerce(v.strip()) for v in raw.split(",")]
    if not space:
        raise ValueError("nothing to search: give --use-defaults or --param KEY=v1,v2,...")
    return space


def _json_value(v: Any) -> Any:
    return str(v) if isinstance(v, Decimal) else v


def grid_search(args: argparse.Namespace) -> int:
    """The grid-search command (exit 0 done, 2 refused, 1 failed)."""
    try:
        space = parse_space(args.strategy, args.param, args.use_defaults)
        data = getattr(args, "data", "bhavcopy") or "bhavcopy"
        ref = _data_ref(args, data)
        spec = GridSpec(args.strategy, args.start, args.end, space, data=ref,
                        rank_by=args.rank_by, min_trades=args.min_trades,
                        oos_fraction=args.oos, oos_top=args.oos_top, workers=args.workers)
    except (SettingError, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    job = None if args.no_record else _record_start(spec)
    from tqdm import tqdm

    bar = tqdm(total=None, desc=f"grid {args.strategy}", unit="run",
               disable=not sys.stderr.isatty())
    last = [0.0]

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        now = time.monotonic()
        if job is not None and (now - last[0] > 2 or done == total):
            last[0] = now
            _record_progress(job, 100 * done / total)

    try:
        result = run_grid(spec, progress=progress, executor=args.executor,
                          scheduler=args.scheduler)
    except ValueError as exc:
        bar.close()
        _record_end(job, None, str(exc))
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        bar.close()
        _record_end(job, None, f"{type(exc).__name__}: {exc}")
        print(f"grid search failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    bar.close()
    payload = result.to_json()
    _record_end(job, payload, None)
    if args.json:
        print(json.dumps({"job_id": job, **payload}, default=_json_value))
        return 0
    _print(result, args, job)
    return 0


def _data_ref(args: argparse.Namespace, data: str) -> DataRef:
    fill = getattr(args, "fill_model", "close") or "close"
    if data == "sim":
        return DataRef(kind="sim", seed=getattr(args, "seed", 7))
    if data != "bhavcopy":
        raise ValueError(f"--data {data}: grid search runs on bhavcopy or sim data")
    if not registry.get(args.strategy).eod_backtest:
        raise ValueError(f"{args.strategy} cannot be backtested on end-of-day data (its "
                         "signal needs intraday samples): use --data sim")
    from engine.store.server import database_url

    return DataRef(kind="bhavcopy", database_url=database_url(), start=args.start,
                   end=args.end, fill_model=fill)


def _print(result: Any, args: argparse.Namespace, job: int | None) -> None:
    rows = result.rows
    print(f"{result.tried} combinations tried, {result.ranked} ranked (>= {args.min_trades} "
          f"trades), {result.workers} worker(s), {result.seconds:.1f} s"
          + (f"; job {job}" if job is not None else ""))
    if result.out_of_sample:
        print(f"in sample {result.in_sample[0]}..{result.in_sample[1]}, out of sample "
              f"{result.out_of_sample[0]}..{result.out_of_sample[1]}")
    for row in rows[:args.top]:
        shown = " ".join(f"{k}={v}" for k, v in row["params"].items())
        if row.get("rank") is None:
            print(f"  -  {row.get('unranked')}: {shown}")
            continue
        m = row["metrics"]
        line = (f"{row['rank']:>3}. {args.rank_by} {_fmt(m.get(args.rank_by))}  net "
                f"₹{Decimal(str(m.get('net_pnl', 0))):,.2f}  trades {m.get('trades')}  {shown}")
        oos = row.get("out_of_sample")
        if oos:
            line += (f"  | out of sample: {args.rank_by} {_fmt(oos.get(args.rank_by))}, net "
                     f"₹{Decimal(str(oos.get('net_pnl', 0))):,.2f}, trades {oos.get('trades')}"
                     if "error" not in oos else f"  | out of sample: {oos['error']}")
        print(line)
    if rows and rows[0].get("rank") == 1:
        print(f"best of {result.tried} combinations tried: the more combinations, the more "
              "the winner's figures flatter it")


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    try:
        return f"{float(x):.2f}"
    except (TypeError, ValueError):
        return str(x)


# ---------------------------------------------------------------------------- records
def _record_start(spec: GridSpec) -> int | None:
    from psycopg.types.json import Jsonb

    from engine.store.pool import get_pool
    from engine.store.tx import transaction

    space = {k: [_json_value(v) for v in vs] for k, vs in spec.space.items()}
    try:
        with transaction(get_pool()) as conn:
            return conn.execute(
                "INSERT INTO backtest_grid_jobs (strategy, start_date, end_date, status,"
                " param_space, started_at) VALUES (%s, %s, %s, 'running', %s, now())"
                " RETURNING job_id",
                (spec.strategy, spec.start, spec.end, Jsonb({
                    "space": space, "rank_by": spec.rank_by, "min_trades": spec.min_trades,
                    "oos_fraction": spec.oos_fraction, "data": spec.data.kind,
                    "fill_model": spec.data.fill_model, "source": "cli"})),
            ).fetchone()["job_id"]
    except Exception as exc:  # the search itself does not need the record
        print(f"note: the job is not recorded in backtest_grid_jobs ({type(exc).__name__}: "
              f"{exc})", file=sys.stderr)
        return None


def _record_progress(job: int, pct: float) -> None:
    from engine.store.pool import get_pool
    from engine.store.tx import transaction

    try:
        with transaction(get_pool()) as conn:
            conn.execute("UPDATE backtest_grid_jobs SET progress_pct = %s WHERE job_id = %s",
                         (round(min(pct, 100.0), 2), job))
    except Exception as exc:  # progress is a courtesy; the result is recorded at the end
        logging.getLogger(__name__).debug("grid progress not recorded: %s", exc)


def _record_end(job: int | None, payload: dict[str, Any] | None, error: str | None) -> None:
    if job is None:
        return
    from psycopg.types.json import Jsonb

    from engine.store.pool import get_pool
    from engine.store.tx import transaction

    with transaction(get_pool()) as conn:
        conn.execute(
            "UPDATE backtest_grid_jobs SET status = %s, results_json = %s, error_text = %s,"
            " param_space = param_space || %s,"
            " progress_pct = CASE WHEN %s THEN 100 ELSE progress_pct END, finished_at = now()"
            " WHERE job_id = %s",
            ("error" if error else "complete",
             Jsonb(json.loads(json.dumps(payload["rows"], default=_json_value)) if payload
                   else []), error,
             Jsonb({"summary": {k: v for k, v in (payload or {}).items() if k != "rows"}}),
             error is None, job))

