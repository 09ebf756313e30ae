"""Grid search: the space, the ranking, the walk-forward split (pure), and a grid on worker
processes that ranks exactly as the same combinations run one by one."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from engine.backtest.grid import (
    MAX_COMBINATIONS,
    DataRef,
    GridSpec,
    combinations,
    rank,
    run_combo,
    run_grid,
    split_days,
)
from tests.backtest.eod_fixtures import bhav_db, bhav_template

__all__ = ["bhav_db", "bhav_template"]  # fixtures used by this module


def _row(name: str, trades: int, sharpe, net: str, dd: str = "0") -> dict:
    return {"params": {"name": name},
            "metrics": {"trades": trades, "sharpe": sharpe, "net_pnl": net, "max_drawdown": dd}}


def test_combinations_cover_the_space_in_a_stable_order() -> None:
    combos = combinations({"A": [1, 2], "B": ["x", "y", "z"]})
    assert len(combos) == 6 and combos[0] == {"A": 1, "B": "x"} and combos[-1] == {"A": 2, "B": "z"}
    with pytest.raises(ValueError, match="empty parameter space"):
        combinations({})
    with pytest.raises(ValueError, match="B has no values"):
        combinations({"A": [1], "B": []})
    with pytest.raises(ValueError, match="narrow the space"):
        combinations({f"K{i}": list(range(10)) for i in range(6)})
    assert MAX_COMBINATIONS == 100_000


def test_rank_by_sharpe_ties_by_net_pnl_and_too_few_trades_are_not_ranked() -> None:
    rows = [_row("a", 10, 1.2, "500"), _row("b", 10, 1.5, "100"), _row("c", 10, 1.5, "900"),
            _row("few", 2, 9.9, "99999"), {"params": {"name": "bad"}, "error": "no data"},
            _row("none", 10, None, "50")]
    out = rank(rows, "sharpe", min_trades=5)
    assert [(r["params"]["name"], r["rank"]) for r in out] == [
        ("c", 1), ("b", 2), ("a", 3), ("none", 4), ("few", None), ("bad", None)]
    assert out[4]["unranked"] == "2 trades < minimum 5" and out[5]["unranked"] == "no data"
    by_dd = rank([_row("deep", 9, 0, "1", "900"), _row("shallow", 9, 0, "1", "100")],
                 "max_drawdown", min_trades=1)
    assert [r["params"]["name"] for r in by_dd] == ["shallow", "deep"]
    with pytest.raises(ValueError, match="expected one of"):
        rank(rows, "luck")


def test_walk_forward_split_keeps_the_last_fraction_out_of_sample() -> None:
    days = [date(2025, 2, d) for d in (3, 4, 5, 6, 7, 10, 11, 12, 13, 14)]
    assert split_days(days, None) == ((days[0], days[-1]), None)
    assert split_days(days, 0.3) == ((days[0], days[6]), (days[7], days[-1]))
    with pytest.raises(ValueError, match="too few"):
        split_days(days[:1], 0.5)


def test_spec_refuses_bad_values_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="rank by"):
        GridSpec("DC", date(2025, 2, 3), date(2025, 2, 28), {"A": [1]}, rank_by="luck")
    with pytest.raises(ValueError, match="before start"):
        GridSpec("DC", date(2025, 2, 28), date(2025, 2, 3), {"A": [1]})
    with pytest.raises(ValueError, match="out-of-sample fraction"):
        GridSpec("DC", date(2025, 2, 3), date(2025, 2, 28), {"A": [1]}, oos_fraction=0.95)


# ---------------------------------------------------------------------------- on the real data
GRID_SPACE = {"IC_RV_SESSIONS": [10, 12], "IC_PROFIT_TARGET_PCT": [Decimal("0.4"), Decimal("0.5")]}


def test_grid_on_two_worker_processes_ranks_as_each_combination_run_alone(bhav_db) -> None:
    """Workers load the rows once and get every parameter spelled out: the same metrics and
    ranking as the same combinations run one by one in this process."""
    start, end = date(2025, 2, 3), date(2025, 2, 28)
    ref = DataRef(kind="bhavcopy", database_url=bhav_db, start=start, end=end)
    spec = GridSpec("IC", start, end, GRID_SPACE, data=ref, min_trades=1, workers=2)
    seen: list[tuple[int, int]] = []
    result = run_grid(spec, progress=lambda done, total: seen.append((done, total)))
    assert result.tried == 4 and result.workers == 2 and seen[-1] == (4, 4)
    alone = [run_combo("IC", start, end, params, ref) for params in combinations(GRID_SPACE)]
    assert all("error" not in r for r in alone), alone
    expected = rank(alone, "sharpe", min_trades=1)
    assert [(r["params"], r["rank"], r["metrics"]["net_pnl"]) for r in result.rows] == [
        (r["params"], r["rank"], r["metrics"]["net_pnl"]) for r in expected]
    assert result.ranked == sum(1 for r in expected if r["rank"] is not None) >= 1
    assert any(int(r["metrics"]["trades"]) > 0 for r in alone), "IC traded in Feb 2025"


def test_walk_forward_reruns_the_best_out_of_sample(bhav_db) -> None:
    start, end = date(2025, 2, 3), date(2025, 2, 28)
    ref = DataRef(kind="bhavcopy", database_url=bhav_db, start=start, end=end)
    spec = GridSpec("IC", start, end, {"IC_RV_SESSIONS": [10]}, data=ref, min_trades=0,
                    oos_fraction=0.3, oos_top=1, workers=1)
    result = run_grid(spec)
    assert result.in_sample == (date(2025, 2, 3), date(2025, 2, 19))
    assert result.out_of_sample == (date(2025, 2, 20), date(2025, 2, 28))
    best = result.rows[0]
    assert best["rank"] == 1 and best["out_of_sample"] is not None
    assert best["out_of_sample"]["coverage"]["first"] == "2025-02-20"


def test_cli_grid_search_ranks_prints_and_records_the_job(bhav_db, capsys) -> None:
    import json

    from engine.cli import main
    from engine.store import pool as pool_module

    pool_module.close_pool()  # the CLI's pool on this test's database (DATABASE_URL)
    try:
        argv = ["backtest", "grid-search", "--strategy", "IC", "--start", "2025-02-03",
                "--end", "2025-02-28", "--param", "IC_RV_SESSIONS=10,12", "--min-trades", "1",
                "--workers", "1"]
        assert main([*argv, "--json"]) == 0
        grid = json.loads(capsys.readouterr().out)
        assert grid["tried"] == 2 and grid["workers"] == 1
        assert sorted(r["params"]["IC_RV_SESSIONS"] for r in grid["rows"]) == [10, 12]
        with pool_module.get_pool().connection() as conn:
            job = conn.execute("SELECT * FROM backtest_grid_jobs WHERE job_id = %s",
                               (grid["job_id"],)).fetchone()
        assert job["status"] == "complete" and job["progress_pct"] == 100
        assert [r["params"] for r in job["results_json"]] == [r["params"] for r in grid["rows"]]
        assert job["param_space"]["space"] == {"IC_RV_SESSIONS": [10, 12]}
        assert job["param_space"]["summary"]["tried"] == 2
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "2 combinations tried" in out and "1. sharpe" in out
        assert "best of 2 combinations tried" in out
    finally:
        pool_module.close_pool()


def test_dask_cluster_on_loopback_ranks_as_the_process_pool(bhav_db) -> None:
    distributed = pytest.importorskip("distributed", reason="the optional dask extra")
    start, end = date(2025, 2, 3), date(2025, 2, 28)
    ref = DataRef(kind="bhavcopy", database_url=bhav_db, start=start, end=end)
    space = {"IC_RV_SESSIONS": [10, 12]}
    spec = GridSpec("IC", start, end, space, data=ref, min_trades=1, workers=1)
    pooled = run_grid(spec)
    # workers in this process (threads) but spoken to over TCP on loopback, as a cluster is
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        on_dask = run_grid(spec, executor="dask", scheduler=cluster.scheduler_address)
    assert [(r["params"], r["rank"], r["metrics"]["net_pnl"]) for r in on_dask.rows] == [
        (r["params"], r["rank"], r["metrics"]["net_pnl"]) for r in pooled.rows]
    with pytest.raises(ValueError, match="needs --scheduler"):
        run_grid(spec, executor="dask")
