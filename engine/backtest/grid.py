"""Grid search: every combination of a parameter space, run in worker processes, ranked.

One pure job function (:func:`run_combo`) does one combination. It is sent, with its
parameters spelled out, to a ``ProcessPoolExecutor`` (spawn; one worker per core by default)
or to a Dask distributed cluster (``--executor dask``, the optional ``distributed`` extra):
nothing leaks between jobs or into the live engine, since a worker reads no settings and
holds nothing but the market data.

Each worker process loads the market data **once**: the job names its data source
(:class:`DataRef`: ``sim``, or the bhavcopy rows of a date range in a database) and the
worker keeps what it loaded for the jobs that follow (:func:`_dataset`). The simulated
market needs no loading (it is a pure function of its seed).

Against over-fitting:
    * a combination with fewer than ``min_trades`` trades is reported but not ranked;
    * an optional walk-forward split (``oos_fraction``): combinations are ranked on the
      first part of the range (in sample) and the best ``oos_top`` are run again on the rest
      (out of sample), reported next to their in-sample figures;
    * the number of combinations tried is part of every result.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

__all__ = ["RANK_KEYS", "DataRef", "GridResult", "GridSpec", "combinations", "grid_job", "rank",
           "run_combo", "run_grid", "split_days"]

#: metrics a grid can be ranked by (higher is better, except max drawdown: lower)
RANK_KEYS = ("sharpe", "sortino", "calmar", "net_pnl", "profit_factor", "expectancy",
             "win_rate", "max_drawdown")
MAX_COMBINATIONS = 100_000


@dataclass(frozen=True, slots=True)
class DataRef:
    """Where a job's market data comes from (picklable: it crosses process boundaries).

    ``kind``: ``sim`` (the seeded simulated market, ``seed``), ``bhavcopy`` (the
    ``bhavcopy_ohlc`` rows of ``database_url`` from ``start`` to ``end``).
    """

    kind: str = "sim"
    seed: int = 7
    database_url: str | None = None
    start: date | None = None
    end: date | None = None
    fill_model: str = "close"


@dataclass(frozen=True, slots=True)
class GridSpec:
    strategy: str
    start: date
    end: date
    space: Mapping[str, Sequence[Any]]
    data: DataRef = field(default_factory=DataRef)
    rank_by: str = "sharpe"
    min_trades: int = 5
    oos_fraction: float | None = None
    oos_top: int = 5
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.rank_by not in RANK_KEYS:
            raise ValueError(f"rank by {self.rank_by!r}: expected one of {', '.join(RANK_KEYS)}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.min_trades < 0:
            raise ValueError(f"min_trades {self.min_trades} must be >= 0")
        if self.oos_fraction is not None and not 0.05 <= self.oos_fraction <= 0.8:
            raise ValueError(f"out-of-sample fraction {self.oos_fraction} outside [0.05, 0.8]")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers {self.workers} must be >= 1")


@dataclass(frozen=True, slots=True)
class GridResult:
    rows: list[dict[str, Any]]        # every combination, ranked ones first (rank 1 = best)
    tried: int                        # combinations run
    ranked: int                       # with at least min_trades trades
    in_sample: tuple[date, date]
    out_of_sample: tuple[date, date] | None
    seconds: float
    workers: int

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "tried": self.tried, "ranked": self.ranked,
                "in_sample": [d.isoformat() for d in self.in_sample],
                "out_of_sample": [d.isoformat() for d in self.out_of_sample]
                if self.out_of_sample else None,
                "seconds": round(self.seconds, 3), "workers": self.workers}


def combinations(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``space`` (key -> values), in a stable order.

    Raises:
        ValueError: an empty space, a key with no values, or more than MAX_COMBINATIONS.
    """
    if not space:
        raise ValueError("empty parameter space: give --param KEY=v1,v2,... or --use-defaults")
    for key, values in space.items():
        if not values:
            raise ValueError(f"parameter {key} has no values")
    n = math.prod(len(v) for v in space.values())
    if n > MAX_COMBINATIONS:
        raise ValueError(f"{n:,} combinations: more than {MAX_COMBINATIONS:,}; narrow the space")
    keys = list(space)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(space[k] for k in keys))]


def _metric(row: Mapping[str, Any], key: str) -> float:
    value = row["metrics"].get(key)
    if value is None:
        return -math.inf
    x = float(Decimal(str(value)))
    if math.isnan(x):
        return -math.inf
    return -x if key == "max_drawdown" else x  # a smaller drawdown ranks higher


def rank(rows: Iterable[dict[str, Any]], rank_by: str = "sharpe", min_trades: int = 5
         ) -> list[dict[str, Any]]:
    """Rows sorted best first by ``rank_by``, ties by net P&L; rows with fewer than
    ``min_trades`` trades (or an error) come last, unranked (``rank`` None) with the
    reason."""
    if rank_by not in RANK_KEYS:
        raise ValueError(f"rank by {rank_by!r}: expected one of {', '.join(RANK_KEYS)}")
    good, rest = [], []
    for row in rows:
        if row.get("error"):
            rest.append({**row, "rank": None, "unranked": row["error"]})
        elif int(row["metrics"].get("trades", 0)) < min_trades:
            rest.append({**row, "rank": None, "unranked":
                         f"{row['metrics'].get('trades', 0)} trades < minimum {min_trades}"})
        else:
            good.append(row)
    good.sort(key=lambda r: (_metric(r, rank_by), _metric(r, "net_pnl")), reverse=True)
    return [{**r, "rank": i + 1} for i, r in enumerate(good)] + rest


def split_days(days: Sequence[date], oos_fraction: float | None
               ) -> tuple[tuple[date, date], tuple[date, date] | None]:
    """(in-sample range, out-of-sample range) over trading ``days``: the last
    ``oos_fraction`` of them are out of sample (at least one day on each side)."""
    if not days:
        raise ValueError("no trading day in the range")
    if oos_fraction is None:
        return (days[0], days[-1]), None
    n_oos = max(1, round(len(days) * oos_fraction))
    if n_oos >= len(days):
        raise ValueError(f"{len(days)} trading day(s): too few to split out of sample")
    cut = len(days) - n_oos
    return (days[0], days[cut - 1]), (days[cut], days[-1])


# ---------------------------------------------------------------------------- the job
_DATA: dict[DataRef, Any] = {}
_DATA_LOCK = threading.Lock()


def _dataset(ref: DataRef) -> Any:
    """The market data of ``ref``, loaded once per worker process: the ``bhavcopy_ohlc``
    rows of the range with the replay's look-back (realized vol) and look-ahead (a
    ``next_close`` fill) margins, the market events the guard reads and NSE's re-dated
    expiries."""
    if ref.kind != "bhavcopy":
        return None
    with _DATA_LOCK:
        if ref not in _DATA:
            from datetime import timedelta

            from engine.backtest import eod_replay
            from engine.backtest.eod_data import load_rows
            from engine.store.pool import open_pool

            if not (ref.database_url and ref.start and ref.end):
                raise ValueError("bhavcopy data needs a database URL and a date range")
            pool = open_pool(ref.database_url, min_size=1, max_size=1, name="grid-worker")
            try:
                rows = load_rows(pool, ref.start - timedelta(eod_replay.LOOKBACK_DAYS),
                                 ref.end + timedelta(10))
                from engine.backtest.redating import load_redatings

                _DATA[ref] = (rows, eod_replay.load_events(pool, ref.start, ref.end),
                              tuple(load_redatings(pool, "NIFTY")))
            finally:
                pool.close()
        return _DATA[ref]


def run_combo(strategy: str, start: date, end: date, params: Mapping[str, Any],
              ref: DataRef) -> dict[str, Any]:
    """One combination: ``{"params", "metrics"}`` or ``{"params", "error"}``. Pure in its
    arguments (the parameters are all spelled out; no settings are read)."""
    try:
        if ref.kind == "sim":
            from engine.backtest import sim_replay

            result = sim_replay.run(strategy, start, end, params, seed=ref.seed)
        elif ref.kind == "bhavcopy":
            from engine.backtest import eod_replay

            rows, events, redatings = _dataset(ref)
            result = eod_replay.run(strategy, start, end, params, rows=rows, events=events,
                                    redatings=redatings, fill_model=ref.fill_model)
        else:
            raise ValueError(f"data {ref.kind!r}: expected sim or bhavcopy")
    except ValueError as exc:
        return {"params": dict(params), "error": str(exc)}
    metrics = {k: v for k, v in result.metrics.items()
               if k not in ("equity_curve", "decisions", "decision_log")}
    return {"params": dict(params), "metrics": metrics}


# ---------------------------------------------------------------------------- the runner
Submit = Callable[..., Future]
Completed = Callable[[list], Iterable]


def run_grid(spec: GridSpec, *, progress: Callable[[int, int], None] | None = None,
             executor: str = "process", scheduler: str | None = None,
             combos: Sequence[Mapping[str, Any]] | None = None) -> GridResult:
    """Run every combination of ``spec.space``, rank them, and (with a walk-forward split)
    run the best again out of sample.

    Args:
        progress: ``progress(done, total)`` after each finished combination.
        executor: ``process`` (a spawn ProcessPoolExecutor with ``spec.workers`` workers,
            default one per core) or ``dask`` (a ``distributed.Client`` on ``scheduler``).
        combos: the combinations to run, instead of every one of ``spec.space``.

    Raises:
        ValueError: a bad space or range (before anything runs).
    """
    from engine.market.calendar import NseCalendar

    if combos is None:
        combos = combinations(spec.space)
    elif not combos:
        raise ValueError("no parameter combination to run")
    combos = [dict(c) for c in combos]
    cal = NseCalendar()
    days = [d for d in (date.fromordinal(o) for o in range(spec.start.toordinal(),
                                                           spec.end.toordinal() + 1))
            if cal.is_trading_day(d)]
    ins, oos = split_days(days, spec.oos_fraction)
    workers = spec.workers or os.cpu_count() or 1
    began = time.perf_counter()
    total = len(combos) + (min(spec.oos_top, len(combos)) if oos else 0)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    with _pool(executor, workers, scheduler) as (submit, completed):
        rows = _map(submit, completed, spec, combos, ins, tick)
        ranked = rank(rows, spec.rank_by, spec.min_trades)
        if oos:
            best = [r for r in ranked if r["rank"] is not None][:spec.oos_top]
            again = _map(submit, completed, spec, [r["params"] for r in best], oos, tick)
            by_params = {_key(r["params"]): r for r in again}
            ranked = [{**r, "out_of_sample": _oos(by_params.get(_key(r["params"])))}
                      if r["rank"] is not None and r["rank"] <= spec.oos_top else r
                      for r in ranked]
    n_ranked = sum(1 for r in ranked if r["rank"] is not None)
    return GridResult(rows=ranked, tried=len(combos), ranked=n_ranked, in_sample=ins,
                      out_of_sample=oos, seconds=time.perf_counter() - began, workers=workers)


def grid_job(strategy: str, start: date, end: date, combos: Sequence[Mapping[str, Any]],
             options: Mapping[str, Any], dsn: str | None, job_id: int | None = None
             ) -> dict[str, Any]:
    """A grid search of the engine's BacktestActor (run in its worker process): ``options``
    from the request (data, fill_model, seed, rank_by, min_trades, oos_fraction, oos_top,
    workers); progress (done/total combinations) written to the ``backtest_grid_jobs`` row
    of ``job_id`` as it goes."""
    data = str(options.get("data") or "bhavcopy")
    ref = (DataRef(kind="sim", seed=int(options.get("seed", 7))) if data == "sim" else
           DataRef(kind=data, database_url=dsn, start=start, end=end,
                   fill_model=str(options.get("fill_model") or "close")))
    spec = GridSpec(strategy, start, end, {}, data=ref,
                    rank_by=str(options.get("rank_by") or "sharpe"),
                    min_trades=int(options.get("min_trades", 5)),
                    oos_fraction=options.get("oos_fraction"),
                    oos_top=int(options.get("oos_top", 5)),
                    workers=options.get("workers"))
    if not dsn or job_id is None:
        return run_grid(spec, combos=combos).to_json()
    from engine.backtest.runs import ProgressWriter

    # done/total combinations, the percentage and the time, at most every half second
    with ProgressWriter(job_id, dsn=dsn, table="backtest_grid_jobs", every=0.5) as writer:
        return run_grid(spec, combos=combos, progress=writer.steps).to_json()


def _key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def _oos(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"error": row["error"]} if row.get("error") else dict(row["metrics"])


def _map(submit: Submit, completed: Completed, spec: GridSpec, combos: list[dict[str, Any]],
         span: tuple[date, date], tick: Callable[[], None]) -> list[dict[str, Any]]:
    futures = [submit(run_combo, spec.strategy, span[0], span[1], params, spec.data)
               for params in combos]
    for future in completed(futures):
        future.result()  # a worker that died raises here (BrokenProcessPool)
        tick()
    return [f.result() for f in futures]  # in the order of the space


class _pool:
    """``with _pool(kind, workers, scheduler) as (submit, as_completed):`` over a process
    pool or a Dask client, closed on exit."""

    def __init__(self, kind: str, workers: int, scheduler: str | None) -> None:
        if kind not in ("process", "dask"):
            raise ValueError(f"executor {kind!r}: expected process or dask")
        if kind == "dask" and not scheduler:
            raise ValueError("--executor dask needs --scheduler tcp://HOST:PORT")
        self.kind, self.workers, self.scheduler = kind, workers, scheduler
        self._closer: Callable[[], None] = lambda: None

    def __enter__(self) -> tuple[Submit, Completed]:
        if self.kind == "process":
            pool = ProcessPoolExecutor(self.workers,
                                       mp_context=multiprocessing.get_context("spawn"))
            self._closer = lambda: pool.shutdown(wait=True, cancel_futures=True)
            return pool.submit, as_completed
        try:
            from distributed import Client
            from distributed import as_completed as dask_completed
        except ImportError as exc:  # the optional extra
            raise ValueError("--executor dask needs the 'distributed' package: "
                             "pip install 'nifty-engine[dask]'") from exc
        client = Client(self.scheduler)  # the default client while the grid runs
        self._closer = client.close

        def submit(fn: Callable[..., Any], *args: Any) -> Future:
            return client.submit(fn, *args, pure=False)

        return submit, dask_completed

    def __exit__(self, *exc: object) -> None:
        self._closer()
