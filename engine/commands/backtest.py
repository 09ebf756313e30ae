"""``python -m engine backtest run|grid-search``: backtests from the command line.

Runs replay the live engine's strategy and exit code on the imported NSE bhavcopies
(``--data bhavcopy``, the default: ``engine.backtest.eod_replay``) or on the seeded simulated
market (``--data sim``). Parameters are runtime-setting keys, checked against the settings
registry; results are printed (or JSON with ``--json``) and recorded in backtest_runs /
backtest_grid_jobs, like runs started from the dashboard or the API.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from decimal import Decimal
from typing import Any

from engine.commands.backtest_data import add_data_cli
from engine.commands.backtest_grid import add_grid_arguments, grid_search
from engine.settings import SettingError, knob
from engine.strategies.registry import names


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="run a backtest or a grid search on the simulated market",
                       description="Backtest a strategy with the live engine's code on the seeded "
                       "simulated market.")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    for name, helptext in (("run", "one backtest with the given parameters"),
                           ("grid-search", "every combination of --param KEY=v1,v2,... (or the "
                            "strategy's declared space, --use-defaults) on worker processes, "
                            "ranked")):
        a = s.add_parser(name, help=helptext, description=helptext)
        a.add_argument("--strategy", default="DC", choices=names(), metavar="NAME",
                       help=f"strategy to test: {', '.join(names())} (default DC)")
        a.add_argument("--start", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
        a.add_argument("--end", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
        a.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a runtime-setting override (repeatable)"
                       + ("; comma-separate values to search" if name == "grid-search" else ""))
        a.add_argument("--seed", type=int, default=7, help="simulated market seed")
        if name == "run":
            a.add_argument("--data", default="bhavcopy", choices=("bhavcopy", "snapshots", "sim"),
                           help="market data: bhavcopy (default: the end-of-day replay on the "
                           "imported NSE files), snapshots (the intraday replay on the engine's recorded "
                           "iv_snapshots, model prices), sim (the simulated market)")
            a.add_argument("--fill-model", default=None, choices=("close", "next_close"),
                           help="end-of-day fills: close (default, BT_FILL_MODEL) or next_close")
        else:
            a.add_argument("--data", default="bhavcopy", choices=("bhavcopy", "sim"),
                           help="market data: bhavcopy (default) or sim")
            a.add_argument("--fill-model", default=None, choices=("close", "next_close"),
                           help="end-of-day fills: close (default) or next_close")
            add_grid_arguments(a)
        a.add_argument("--json", action="store_true", help="print the result as JSON")
        a.set_defaults(handler=_run if name == "run" else grid_search)
    add_data_cli(s)  # download, import: the NSE bhavcopies (engine/commands/backtest_data.py)


def _replay():
    """The replay module (numpy/scipy) is imported only when a backtest runs, so that every
    other command's start-up stays fast."""
    from engine.backtest import sim_replay

    return sim_replay


def _parse(params: list[str], *, multi: bool) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SettingError(f"--param {item!r}: expected KEY=VALUE")
        k = knob(key.strip())
        values = raw.split(",") if multi else [raw]
        out[k.key] = [k.coerce(v) for v in values]
    return out


def _progress(label: str):
    from tqdm import tqdm

    bar = tqdm(total=100, desc=label, unit="%", disable=not sys.stderr.isatty())

    def update(fraction: float) -> None:
        bar.n = round(fraction * 100)
        bar.refresh()

    return bar, update


def _run(args: argparse.Namespace) -> int:
    """One backtest, stored in backtest_runs (pending → running → complete/error) like a run
    started from the dashboard; ``--data sim`` without a reachable database still runs and
    says it was not stored."""
    from engine.backtest import runs

    try:
        params = {k: v[0] for k, v in _parse(args.param, multi=False).items()}
        config = runs.run_config(params, data=args.data, fill_model=args.fill_model)
    except (SettingError, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    pool = _pool(required=args.data != "sim")
    if pool is False:
        return 2
    bar, update = _progress(f"{args.strategy} {args.start}..{args.end}")
    try:
        if pool is None:
            result, error, run_id = _sim_unstored(args, params, update), None, None
        else:
            run_id, result, error = runs.execute(pool, args.strategy, args.start, args.end,
                                                 config, seed=args.seed, progress=update)
    except ValueError as exc:
        result, error = None, str(exc)
    finally:
        bar.close()
    if error is not None or result is None:
        print(f"refused: {error}" + (f" (run {run_id} stored as error)" if run_id else ""),
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"run_id": run_id, "metrics": result["metrics"],
                          "trades": result["trades"]}, default=str))
        return 0
    for t in result["trades"]:
        pnl = t.get("realized_pnl")
        shown = f"{Decimal(pnl):>10,.2f}" if pnl is not None else "      open"
        print(f"{t['opened_at'][:16]} -> {(t.get('closed_at') or '-' * 16)[11:16]}  "
              f"{t['direction']:<14} {shown}  {t['exit_reason']}")
    _print_metrics(result["metrics"])
    print("stored as backtest run " + str(run_id) if run_id else "not stored (no database)")
    return 0


def _pool(*, required: bool):
    """The process pool when the database answers; None (sim only) or False (refused)."""
    from engine.store.pool import get_pool

    try:
        pool = get_pool()
        with pool.connection(timeout=5) as conn:
            conn.execute("SELECT 1")
        return pool
    except Exception as exc:
        if required:
            print(f"refused: the bhavcopy replay reads bhavcopy_ohlc and stores the run in "
                  f"backtest_runs, but the database is not reachable ({exc})", file=sys.stderr)
            return False
        print(f"warning: database not reachable ({exc}): the run is not stored", file=sys.stderr)
        return None


def _sim_unstored(args: argparse.Namespace, params: dict[str, Any], update) -> dict[str, Any]:
    result = _replay().run(args.strategy, args.start, args.end, params, seed=args.seed,
                           progress=update)
    return {"trades": result.trades, "metrics": result.metrics}


def _print_metrics(m: dict[str, Any]) -> None:
    win = "-" if m["win_rate"] is None else f"{m['win_rate']:.1%}"
    print(f"\ntrades {m['trades']}, net P&L ₹{Decimal(m['net_pnl']):,.2f}, win rate {win}, "
          f"max drawdown ₹{Decimal(m['max_drawdown']):,.2f}, charges ₹{Decimal(m['charges']):,.2f}")
