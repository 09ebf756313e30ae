"""``python -m engine backtest run|grid-search``: backtests from the command line.

Runs on the seeded simulated market with the live engine's strategy and exit code (the
bhavcopy replay comes with the backtesting work). Parameters are runtime-setting keys, checked
against the settings registry; results are printed (or JSON with ``--json``). Runs started from
the dashboard or the API are recorded in backtest_runs / backtest_grid_jobs by the engine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from datetime import date
from decimal import Decimal
from typing import Any

from engine.settings import SettingError, knob
from engine.strategies.registry import names


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="run a backtest or a grid search on the simulated market",
                       description="Backtest a strategy with the live engine's code on the seeded "
                       "simulated market.")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    for name, helptext in (("run", "one backtest with the given parameters"),
                           ("grid-search", "every combination of --param KEY=v1,v2,...")):
        a = s.add_parser(name, help=helptext, description=helptext)
        a.add_argument("--strategy", default="DC", choices=names(), metavar="NAME",
                       help=f"strategy to test: {', '.join(names())} (default DC)")
        a.add_argument("--start", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
        a.add_argument("--end", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
        a.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a runtime-setting override (repeatable)"
                       + ("; comma-separate values to search" if name == "grid-search" else ""))
        a.add_argument("--seed", type=int, default=7, help="simulated market seed")
        a.add_argument("--json", action="store_true", help="print the result as JSON")
        a.set_defaults(handler=_run if name == "run" else _grid)


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
    try:
        params = {k: v[0] for k, v in _parse(args.param, multi=False).items()}
    except (SettingError, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    bar, update = _progress(f"{args.strategy} {args.start}..{args.end}")
    try:
        result = _replay().run(args.strategy, args.start, args.end, params, seed=args.seed,
                               progress=update)
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    if args.json:
        print(json.dumps({"metrics": result.metrics, "trades": result.trades}, default=str))
        return 0
    for t in result.trades:
        print(f"{t['opened_at'][:16]} -> {t['closed_at'][11:16]}  {t['direction']:<12} "
              f"{Decimal(t['realized_pnl']):>10,.2f}  {t['exit_reason']}")
    _print_metrics(result.metrics)
    return 0


def _grid(args: argparse.Namespace) -> int:
    try:
        space = _parse(args.param, multi=True)
    except (SettingError, ValueError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    combos = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    from tqdm import tqdm

    rows = []
    for params in tqdm(combos, desc="grid", unit="run", disable=not sys.stderr.isatty()):
        try:
            result = _replay().run(args.strategy, args.start, args.end, params, seed=args.seed)
        except ValueError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
        rows.append({"params": params, "metrics": result.metrics})
    rows.sort(key=lambda r: Decimal(r["metrics"]["net_pnl"]), reverse=True)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for rank, row in enumerate(rows, 1):
        m = row["metrics"]
        shown = " ".join(f"{k}={v}" for k, v in row["params"].items())
        print(f"{rank:>3}. net {Decimal(m['net_pnl']):>12,.2f}  trades {m['trades']:>4}  "
              f"max DD {Decimal(m['max_drawdown']):>10,.2f}  {shown}")
    return 0


def _print_metrics(m: dict[str, Any]) -> None:
    win = "-" if m["win_rate"] is None else f"{m['win_rate']:.1%}"
    print(f"\ntrades {m['trades']}, net P&L ₹{Decimal(m['net_pnl']):,.2f}, win rate {win}, "
          f"max drawdown ₹{Decimal(m['max_drawdown']):,.2f}, charges ₹{Decimal(m['charges']):,.2f}")
