"""The --data snapshots backtest: a replay on the engine's own recorded iv_snapshots."""

from __future__ import annotations

import json
import math
import time
from datetime import date, datetime
from decimal import Decimal

import pytest

from engine.backtest import snapshot_replay
from engine.backtest.eod_data import DataRefused
from engine.market.pricing import black76_price, year_fraction
from engine.timeutil import IST
from tests.engine.harness import Harness

DAY = date(2025, 2, 4)
#: permissive DC settings, so the short recorded afternoon can trade
PARAMS = {"DC_MIN_IV_EDGE": "-10", "DC_MIN_NEAR_DTE": "2", "DC_MAX_REALIZED_RANGE_PCT": "0.2",
          "DC_BREAKEVEN_BUFFER_SD": "0", "DC_MAX_SPREAD_OF_TARGET": "5", "DC_NEAR_IV_MIN": "0"}


@pytest.fixture
def recorded(db_url: str):
    """A paper engine's afternoon on the simulated market: one iv_snapshots row a scan cycle."""
    h = Harness(db_url, start=datetime(2025, 2, 4, 14, 30, tzinfo=IST), strategies=("DC",)).start()
    try:
        h.run_until(15, 29)
        yield h
    finally:
        h.stop()


def test_snapshot_replay_of_a_recorded_afternoon(recorded, db_url, capsys, tmp_path) -> None:
    rows = snapshot_replay.load_snapshots(recorded.pool, DAY, DAY)
    assert len(rows) >= 30, f"expected one iv_snapshots row per scan cycle, got {len(rows)}"
    assert all(r["payload"].get("far_smile") for r in rows)
    t0 = time.perf_counter()
    res = snapshot_replay.run("DC", DAY, DAY, {**PARAMS, "every_minutes": 1}, pool=recorded.pool)
    took = time.perf_counter() - t0
    m = res.metrics
    assert m["data"] == "snapshots" and m["coverage"]["snapshots"] == len(rows)
    assert m["coverage"]["decisions"] <= len(rows) and m["coverage"]["every_minutes"] == 1
    assert m["liquidity_filters"]["applied"] is False
    assert m["liquidity_filters"]["overridden"]["DC_MIN_VOLUME"] == 100
    assert m["coverage"]["liquidity_filters_applied"] is False
    assert len(m["equity_curve"]) == 1 and m["equity_curve"][0]["date"] == DAY.isoformat()
    assert m["sessions"] == 1
    # every leg of every trade is a model price from the snapshot
    legs = [leg for t in res.trades for leg in t["legs"]]
    assert res.trades, f"no DC trade on the permissive settings: {m['decisions'][-3:]}"
    assert {leg["entry_source"] for leg in legs} == {"model_from_snapshot"}
    assert set(m["price_sources"]) <= {"model_from_snapshot", "last_model_price"} | {
        s for s in m["price_sources"] if s.startswith("settlement")}
    # a far leg: Black-76 by hand at the stored far_smile IV on the stored forward
    by_at = {r["created_at"].astimezone(IST).isoformat(): r for r in rows}
    t = res.trades[0]
    row = by_at[t["opened_at"]]
    far = row["payload"]["far_smile"]
    far_legs = [leg for leg in t["legs"] if leg["expiry"] == far["expiry"]]
    assert far_legs, f"no far leg in {t['legs']}"
    leg = far_legs[0]
    srow = next(x for x in far["rows"] if Decimal(str(x["strike"])) == Decimal(leg["strike"]))
    iv = float(srow["ce_iv" if leg["option_type"] == "CE" else "pe_iv"])
    assert leg["entry_iv_from"] == "far_smile" and leg["entry_iv_pct"] == iv
    tt = year_fraction(row["created_at"], date.fromisoformat(far["expiry"]))
    by_hand = float(black76_price(float(far["forward"]), float(leg["strike"]), tt, iv / 100,
                                  leg["option_type"] == "CE", 0.065))
    assert math.isclose(float(leg["entry_model_price"]), by_hand, abs_tol=0.006)
    px = Decimal(leg["entry_price"])
    model = Decimal(leg["entry_model_price"])
    assert (px > model) if leg["side"] == "BUY" else (px < model)  # the modelled touch
    assert took < 20

    # the CLI stores a backtest_runs row for the same run
    from engine.__main__ import main
    from engine.store import pool as pool_module

    pool_module.close_pool()
    try:
        args = ["backtest", "run", "--strategy", "DC", "--start", DAY.isoformat(), "--end",
                DAY.isoformat(), "--data", "snapshots", "--json"]
        for k, v in PARAMS.items():
            args += ["--param", f"{k}={v}"]
        assert main(args) == 0
    finally:
        pool_module.close_pool()
    cli = json.loads(capsys.readouterr().out)
    stored = recorded.query("SELECT * FROM backtest_runs WHERE run_id = %s", cli["run_id"])[0]
    assert stored["status"] == "complete", stored["error_text"]
    assert stored["config_snapshot"]["BT_DATA"] == "snapshots"
    assert stored["metrics_json"]["data"] == "snapshots"
    assert stored["metrics_json"]["liquidity_filters"]["applied"] is False
    assert stored["metrics_json"]["coverage"]["every_minutes"] == 5
    for trade in stored["trades_json"]:
        assert {leg["entry_source"] for leg in trade["legs"]} == {"model_from_snapshot"}

    # the API queues the same run (no longer a 400); CAL_ARB is refused (no futures recorded)
    import pyotp

    import web
    from engine.actors.backtest import _run_job
    from tests.web.conftest import SECRET_KEY, Api

    app = web.create_app({"POOL": recorded.pool, "DATABASE_URL": db_url, "SECRET_KEY": SECRET_KEY,
                          "DASHBOARD_TOTP_SECRET": pyotp.random_base32(),
                          "CHAT_CHANNELS": ("telegram",), "VAR_DIR": str(tmp_path / "var"),
                          "LOG_DIR": str(tmp_path / "logs"), "START_BRIDGE": False,
                          "TESTING": True})
    try:
        api = Api(app)
        r = api.post("/api/backtest/run", json={"strategy": "DC", "start": DAY.isoformat(),
                                                "end": DAY.isoformat(), "data": "snapshots",
                                                "params": PARAMS})
        assert r.status_code == 202, r.get_json()
        arb = api.post("/api/backtest/run", json={"strategy": "CAL_ARB", "start": DAY.isoformat(),
                                                  "end": DAY.isoformat(), "data": "snapshots"})
        assert arb.status_code == 400 and "no futures quotes" in arb.get_json()["error"]
        row = api.get(f"/api/backtest/runs/{r.get_json()['run_id']}").get_json()
    finally:
        web.shutdown(app)
    assert row["config_snapshot"] == stored["config_snapshot"]
    via_api = _run_job("DC", DAY, DAY, row["config_snapshot"], db_url)

    def same(x):
        m = {k: v for k, v in x["metrics"].items() if k != "run_seconds"}
        return json.loads(json.dumps({"m": m, "t": x["trades"]},
                                     default=lambda v: float(v) if isinstance(v, Decimal) else str(v)))

    assert same(via_api) == same({"metrics": stored["metrics_json"], "trades": stored["trades_json"]})
    assert same(via_api) == same(cli)


def test_snapshot_replay_refuses_an_empty_range_and_cal_arb(pool) -> None:
    with pytest.raises(DataRefused, match="recorded no iv_snapshots between 2025-03-03 and "
                                          "2025-03-07: run the engine"):
        snapshot_replay.run("DC", date(2025, 3, 3), date(2025, 3, 7), {}, pool=pool)
    with pytest.raises(DataRefused, match="no futures quotes"):
        snapshot_replay.run("CAL_ARB", date(2025, 3, 3), date(2025, 3, 7), {}, pool=pool)


def test_snapshot_rows_without_smiles_are_refused() -> None:
    row = {"id": 1, "created_at": datetime(2025, 2, 4, 10, 0, tzinfo=IST), "trade_date": DAY,
           "spot": Decimal("23000"), "realized_range": None, "payload": {"smile": None}}
    with pytest.raises(DataRefused, match="no smile / far_smile"):
        snapshot_replay.run("DC", DAY, DAY, {}, rows=[row], events=())
