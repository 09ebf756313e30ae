"""The end-of-day replay on the real Feb-2025 NIFTY bhavcopies (../shared/data)."""

from __future__ import annotations

import json
import math
from datetime import date
from decimal import ROUND_CEILING, Decimal

import pytest

from engine.backtest import eod_replay, runs
from engine.backtest.eod_data import DataRefused, build_view, contract_id, group_days, load_rows, model_marks
from engine.execution.charges import order_charges
from engine.market.calendar import NseCalendar
from tests.backtest.eod_fixtures import FEB_2025, bhav_db, bhav_pool, bhav_template, file_name, nifty_rows

__all__ = ["bhav_db", "bhav_pool", "bhav_template"]  # fixtures used by this module

D = Decimal
CAL = NseCalendar()
FEB3, FEB28 = date(2025, 2, 3), date(2025, 2, 28)
#: a double calendar at the money whose only exit is one session later (max hold 1): every
#: filter that needs a model is opened wide so a hand computation can follow it
HAND = {"DC_STRIKE_OFFSET_SD": "0", "DC_MIN_IV_EDGE": "-10", "DC_NEAR_IV_MIN": "0",
        "DC_NEAR_IV_MAX": "200", "DC_MIN_VOLUME": "0", "DC_MIN_OI": "0",
        "DC_MAX_REALIZED_RANGE_PCT": "0.2", "DC_BREAKEVEN_BUFFER_SD": "0",
        "DC_MAX_SPREAD_OF_TARGET": "5", "DC_MAX_HOLD_DAYS": "1", "DC_STOP_LOSS_PCT": "1",
        "DC_PROFIT_TARGET_PCT": "5"}


def _day(pool, d: date):
    return group_days(load_rows(pool, d, d))[d]


def test_price_rules_untraded_leg_is_model_marked_never_quoted(bhav_pool) -> None:
    day = _day(bhav_pool, date(2025, 2, 11))
    sid = contract_id(date(2025, 3, 13), D("23050"), "CE")
    c = day.contracts[sid]
    # the example, straight from the file: volume 0, stale close 906.10, settle 432.85
    assert (c.volume, c.close, c.settle) == (0, D("906.10"), D("432.85")) and not c.traded
    view = build_view(day, CAL)
    o = view.option_by_id(sid)
    assert o is not None and not o.quoted and o.bid is None and o.iv is None  # no quote, no fill
    assert eod_replay._fill_price(day, sid, eod_replay.Side.BUY) is None
    mark = model_marks(view, day)[sid]
    # the model mark (Black-76 on the smile of traded strikes) is near NSE's own settle
    # (its theoretical price), nowhere near the stale close
    assert abs(mark - c.settle) / c.settle < D("0.10") and abs(mark - c.close) > 300
    # a traded one: quoted at close ∓ the modelled half-spread, volume and OI from the file
    atm = view.near.option(D("23400"), "CE")
    row = day.contracts[atm.security_id]
    assert row.traded and atm.bid < row.close < atm.ask and atm.volume == row.volume
    assert atm.oi == row.oi and atm.lot_size == row.lot_size == 75


def _rows_of(d: str) -> list[dict[str, str]]:
    return list(nifty_rows(file_name(d)))


def _h(close: D, rank: int, volume: int, k: D, spot: D) -> D:
    """The fill model's half-spread, written out again (REL 0.05 % × 2^rank, volume and
    moneyness multipliers, up to the ₹0.05 tick)."""
    rel = [D("0.0005"), D("0.0010"), D("0.0020")][min(rank, 2)]
    vm = D(1) if volume >= 100_000 else D("1.5") if volume >= 10_000 else D("2.5") if volume >= 1_000 else D(4)
    m = abs(math.log(float(k) / float(spot)))
    mm = D(1) if m <= 0.01 else D("1.25") if m <= 0.03 else D("1.5")
    x = close * rel * vm * mm
    return max(D("0.05"), (x / D("0.05")).to_integral_value(rounding=ROUND_CEILING) * D("0.05"))


def _hand_dc(days: list[str]) -> list[dict]:
    """The HAND double calendar computed from the file rows alone: enter at the money when
    the near expiry is 3-5 sessions away, exit at the next session's close."""
    sessions = [date(2025, 2, int(d)) for d in FEB_2025] + [date(2025, 3, x) for x in (3, 4, 5, 6, 7)]
    files = {date(2025, 2, int(d)): _rows_of(d) for d in days}
    out, held = [], None
    for d in sorted(files):
        rows = files[d]
        spot = D(rows[0]["UndrlygPric"])
        by = {(date.fromisoformat(r["XpryDt"]), D(r["StrkPric"]), r["OptnTp"]): r
              for r in rows if r["FinInstrmTp"] == "IDO"}
        expiries = sorted({e for e, _, _ in by if e > d})

        def touch(e, k, kind, side, by=by, expiries=expiries, spot=spot):
            r = by[(e, k, kind)]
            assert int(r["TtlTradgVol"]) > 0, "a hand leg must have traded"
            h = _h(D(r["ClsPric"]), expiries.index(e), int(r["TtlTradgVol"]), k, spot)
            return D(r["ClsPric"]) + h if side == "BUY" else D(r["ClsPric"]) - h

        if held is not None:
            exit_px = {leg: touch(leg[0], leg[1], leg[2], "SELL" if side == "BUY" else "BUY")
                       for leg, side in held["legs"].items()}
            gross = sum(((exit_px[leg] - held["entry"][leg]) * 75 * (1 if side == "BUY" else -1)
                         for leg, side in held["legs"].items()), D(0))
            charges = held["charges"] + sum(
                (order_charges(kind="OPT", side="SELL" if side == "BUY" else "BUY",
                               price=exit_px[leg], quantity=75, on=d).total
                 for leg, side in held["legs"].items()), D(0))
            out.append({**held, "exit_day": d, "exit": exit_px,
                        "net": (gross - charges).quantize(D("0.01"))})
            held = None
        near = expiries[0]
        dte = sum(1 for s in sessions if d < s <= near)
        if not 3 <= dte <= 5:
            continue
        far = expiries[1]

        def atm(kind, by=by, d=d, near=near, far=far, spot=spot):
            ks = [k for (e, k, t) in by if e == near and t == kind
                  and int(by[(e, k, t)]["TtlTradgVol"]) > 0
                  and (far, k, kind) in by and int(by[(far, k, kind)]["TtlTradgVol"]) > 0]
            return min(ks, key=lambda k: (abs(k - spot), -abs(k - spot)))

        kc, kp = atm("CE"), atm("PE")
        legs = {(far, kc, "CE"): "BUY", (far, kp, "PE"): "BUY", (near, kc, "CE"): "SELL",
                (near, kp, "PE"): "SELL"}
        entry = {leg: touch(*leg, side) for leg, side in legs.items()}
        charges = sum((order_charges(kind="OPT", side=side, price=entry[leg], quantity=75, on=d).total
                       for leg, side in legs.items()), D(0))
        held = {"entry_day": d, "legs": legs, "entry": entry, "charges": charges,
                "strikes": (kp, kc), "near": near, "far": far}
    return out


def _file_rows() -> list[dict]:
    from tests.backtest.eod_fixtures import table_row

    cols = ("trade_date", "symbol", "expiry", "option_type", "strike", "open", "high", "low",
            "close", "settle", "underlying", "open_interest", "oi_change", "volume", "lot_size",
            "source_file")
    return [dict(zip(cols, table_row(r, file_name(d)), strict=True)) for d in FEB_2025
            for r in nifty_rows(file_name(d))]


def test_hand_computed_double_calendar_matches_the_engine_exactly(bhav_pool) -> None:
    want = _hand_dc(list(FEB_2025))
    got = eod_replay.run("DC", FEB3, FEB28, HAND, pool=bhav_pool)
    closed = [t for t in got.trades if t["status"] == "closed"]
    assert len(want) == len(closed) >= 5
    for w, t in zip(want, closed, strict=True):
        assert t["entry_day"] == w["entry_day"].isoformat() and t["exit_day"] == w["exit_day"].isoformat()
        legs = {(date.fromisoformat(x["expiry"]), D(x["strike"]), x["option_type"]): x for x in t["legs"]}
        assert set(legs) == set(w["legs"])
        for leg, x in legs.items():
            assert x["side"] == w["legs"][leg] and x["quantity"] == 75
            assert D(x["entry_price"]) == w["entry"][leg] and D(x["exit_price"]) == w["exit"][leg]
            assert x["entry_source"] == "close" and x["exit_source"] == "close"
        assert D(t["realized_pnl"]) == w["net"], (t["tag"], t["realized_pnl"], w["net"])
    assert D(got.metrics["net_pnl"]) == sum((w["net"] for w in want), D(0))
    # the last entry (28 Feb) is still open at the end: marked at the settle, not closed
    last = got.trades[-1]
    assert last["status"] == "open" and last["realized_pnl"] is None and got.metrics["open_at_end"] == 1
    day = _day(bhav_pool, FEB28)
    for x in last["legs"]:
        m = last["last_mark"]["legs"][x["security_id"]]
        assert m["source"] == "settle" and D(m["price"]) == day.contracts[x["security_id"]].settle


def test_expiry_settlement_at_the_index_close(bhav_pool) -> None:
    # DC_EXIT_DAYS_BEFORE_EXPIRY=0: entered 14 Feb, the near legs reach the 20-Feb expiry
    # and settle at that day's index close; the far legs close at that close
    p = {**HAND, "DC_MAX_HOLD_DAYS": "5", "DC_EXIT_DAYS_BEFORE_EXPIRY": "0"}
    res = eod_replay.run("DC", date(2025, 2, 14), date(2025, 2, 20), p, pool=bhav_pool)
    t = res.trades[0]
    assert t["entry_day"] == "2025-02-14" and t["exit_day"] == "2025-02-20", t["exit_reason"]
    spot = _day(bhav_pool, date(2025, 2, 20)).spot
    assert t["exit_reason"].startswith("expiry settlement") and str(spot) in t["exit_reason"]
    for x in t["legs"]:
        if x["expiry"] == "2025-02-20":
            k = D(x["strike"])
            intrinsic = max(D(0), spot - k if x["option_type"] == "CE" else k - spot)
            assert x["exit_source"] == "settlement" and D(x["exit_price"]) == intrinsic
            assert D(x["exit_charges"]) == 0  # shorts: no exercise STT
        else:
            assert x["exit_source"] == "close"


def test_cal_arb_and_unsupported_ranges_are_refused(bhav_pool) -> None:
    with pytest.raises(DataRefused, match="CAL_ARB cannot be backtested on end-of-day data"):
        eod_replay.run("CAL_ARB", FEB3, FEB28, {}, pool=bhav_pool)
    with pytest.raises(DataRefused, match="no NIFTY rows in bhavcopy_ohlc between 2025-03-03 and 2025-03-07"):
        eod_replay.run("DC", date(2025, 3, 3), date(2025, 3, 7), {}, pool=bhav_pool)
    with pytest.raises(DataRefused, match="before NIFTY weekly options"):
        eod_replay.run("DC", date(2018, 1, 1), date(2018, 2, 1), {}, pool=bhav_pool)
    with pytest.raises(ValueError, match="unknown strategy 'XX'"):
        eod_replay.run("XX", FEB3, FEB28, {}, pool=bhav_pool)
    with pytest.raises(ValueError, match="DC_LOTS"):
        eod_replay.run("DC", FEB3, FEB28, {"DC_LOTS": "lots"}, pool=bhav_pool)


def test_next_close_fills_one_session_later(bhav_pool) -> None:
    rows = load_rows(bhav_pool, FEB3, FEB28)
    a = eod_replay.run("DC", FEB3, date(2025, 2, 7), HAND, rows=rows)
    b = eod_replay.run("DC", FEB3, date(2025, 2, 7), HAND, rows=rows, fill_model="next_close")
    assert b.metrics["fill_model"] == "next_close"
    first_a, first_b = a.trades[0], b.trades[0]
    assert first_a["entry_day"] == "2025-02-03" and first_b["entry_day"] == "2025-02-04"
    day4 = group_days([r for r in rows if r["trade_date"] == date(2025, 2, 4)])[date(2025, 2, 4)]
    for x in first_b["legs"]:  # decided on 3 Feb, filled at 4 Feb's close ± its half-spread
        c = day4.contracts[x["security_id"]]
        live = sorted(e for e in day4.options if e > day4.trade_date)
        h = _h(c.close, live.index(c.expiry), c.volume, c.strike, day4.spot)
        assert D(x["entry_price"]) == (c.close + h if x["side"] == "BUY" else c.close - h)


@pytest.mark.parametrize("strategy", ["DC", "MDC", "IC"])
def test_feb_2025_runs_are_stored_with_price_sources(bhav_pool, strategy) -> None:
    config = runs.run_config({"IC_RV_SESSIONS": "10"} if strategy == "IC" else {})
    run_id, result, error = runs.execute(bhav_pool, strategy, FEB3, FEB28, config)
    assert error is None and result is not None
    # every session explains itself: the entries, or why none (the strategy's own reasons)
    assert [x["date"] for x in result["metrics"]["decisions"]][:2] == ["2025-02-03", "2025-02-04"]
    assert all(x["entries"] or x["reasons"] for x in result["metrics"]["decisions"])
    if strategy == "IC":  # IC with 10-session realized vol trades in Feb 2025
        assert result["metrics"]["trades"] > 0
    with bhav_pool.connection() as conn:
        row = conn.execute("SELECT * FROM backtest_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row["status"] == "complete" and row["started_at"] and row["finished_at"]
    assert row["config_snapshot"]["BT_DATA"] == "bhavcopy"
    assert row["config_snapshot"]["BT_FILL_MODEL"] == "close"
    m = row["metrics_json"]
    assert m["coverage"]["sessions"] == 19 == m["coverage"]["sessions_with_data"]
    assert len(m["equity_curve"]) == 19 and m["data"] == "bhavcopy"
    assert m["trades"] == sum(1 for t in row["trades_json"] if t["status"] == "closed")
    assert 0 <= m["model_marked_share"] <= 1
    for t in row["trades_json"]:
        for leg in t["legs"]:
            assert leg["entry_source"] == "close"  # only traded contracts are filled
            assert leg.get("exit_source") in (None, "close", "settlement")
    assert set(m["price_sources"]) <= {"close", "settlement"}


def test_cli_and_api_give_the_same_result(bhav_pool, bhav_db, capsys, tmp_path) -> None:
    import pyotp

    import web
    from engine.__main__ import main
    from engine.actors.backtest import _run_job
    from engine.store import pool as pool_module
    from tests.web.conftest import SECRET_KEY, Api

    args = ["backtest", "run", "--strategy", "DC", "--start", "2025-02-03", "--end", "2025-02-14",
            "--param", "DC_PROFIT_TARGET_PCT=0.28", "--json"]
    pool_module.close_pool()
    try:
        assert main(args) == 0
    finally:
        pool_module.close_pool()
    cli = json.loads(capsys.readouterr().out)
    with bhav_pool.connection() as conn:
        stored = conn.execute("SELECT * FROM backtest_runs WHERE run_id = %s", (cli["run_id"],)).fetchone()
    assert stored["status"] == "complete" and stored["config_snapshot"]["DC_PROFIT_TARGET_PCT"] == "0.28"
    app = web.create_app({"POOL": bhav_pool, "DATABASE_URL": bhav_db, "SECRET_KEY": SECRET_KEY,
                          "DASHBOARD_TOTP_SECRET": pyotp.random_base32(), "CHAT_CHANNELS": ("telegram",),
                          "VAR_DIR": str(tmp_path / "var"), "LOG_DIR": str(tmp_path / "logs"),
                          "START_BRIDGE": False, "TESTING": True})
    try:
        api = Api(app)
        r = api.post("/api/backtest/run", json={"strategy": "DC", "start": "2025-02-03",
                                                "end": "2025-02-14", "data": "bhavcopy",
                                                "params": {"DC_PROFIT_TARGET_PCT": "0.28"}})
        assert r.status_code == 202, r.get_json()
        bad = api.post("/api/backtest/run", json={"strategy": "DC", "start": "2025-02-03",
                                                  "end": "2025-02-14", "data": "tape"})
        assert bad.status_code == 400 and bad.get_json()["field"] == "data"
        arb = api.post("/api/backtest/run", json={"strategy": "CAL_ARB", "start": "2025-02-03",
                                                  "end": "2025-02-14"})
        assert arb.status_code == 400 and "end-of-day" in arb.get_json()["error"]
        row = api.get(f"/api/backtest/runs/{r.get_json()['run_id']}").get_json()
    finally:
        web.shutdown(app)
    assert row["config_snapshot"] == stored["config_snapshot"]
    # what the BacktestActor runs in its worker for that row
    via_api = _run_job("DC", FEB3, date(2025, 2, 14), row["config_snapshot"], bhav_db)

    def same(x):
        m = {k: v for k, v in x["metrics"].items() if k != "run_seconds"}
        # JSON read back from the database has Decimal numbers: compare as floats
        return json.loads(json.dumps({"m": m, "t": x["trades"]},
                                     default=lambda v: float(v) if isinstance(v, D) else str(v)))

    assert same(via_api) == same({"metrics": stored["metrics_json"], "trades": stored["trades_json"]})
    assert same(via_api) == same(cli)


def test_daily_range_from_the_future_and_intraday_breach_flags(bhav_pool) -> None:
    from engine.execution.trades import OpenLeg, Trade
    from engine.messages.legs import InstrumentKind, Leg, OptionType, Side

    d = date(2025, 2, 11)
    day = _day(bhav_pool, d)
    fut = next(r for r in _rows_of("11") if r["FinInstrmTp"] == "IDF"
               and r["XpryDt"] == "2025-02-27")  # the near-month future, from the file
    basis = D(fut["ClsPric"]) - D(fut["UndrlygPric"])
    lo, hi, src = day.spot_range()
    assert (lo, hi) == (D(fut["LwPric"]) - basis, D(fut["HghPric"]) - basis) and "near future" in src

    def leg(kind, strike, side):
        return OpenLeg(Leg(security_id=contract_id(date(2025, 2, 13), D(strike), kind), side=side,
                           quantity=75, kind=InstrumentKind.OPT, option_type=OptionType(kind),
                           expiry=date(2025, 2, 13), strike=D(strike)), D("10"), D("0"))

    condor = Trade(tag="IC-x", strategy="IC", mode="backtest", trade_date=d, opened_at=day.close_time,
                   legs=(leg("CE", hi - 1, Side.SELL), leg("PE", lo - 100, Side.SELL),
                         leg("CE", hi + 200, Side.BUY), leg("PE", lo - 300, Side.BUY)))
    crossed = {what: hit for what, _, hit in eod_replay._levels(condor, lo, hi)}
    assert crossed == {"the short CE strike": True, "the short PE strike": False}
    dc = Trade(tag="DC-x", strategy="DC", mode="backtest", trade_date=d, opened_at=day.close_time,
               legs=condor.legs, context={"breakevens": [float(lo) + 1, float(hi) + 1]})
    crossed = {what: hit for what, _, hit in eod_replay._levels(dc, lo, hi)}
    assert crossed == {"the lower model breakeven": True, "the upper model breakeven": False}
    # an untraded held leg is marked by the model, a traded one at its settle price
    view = build_view(day, CAL)
    models = model_marks(view, day)
    stale = contract_id(date(2025, 3, 13), D("23050"), "CE")
    assert eod_replay._mark(day, models, stale) == (models[stale], "model")
    atm = view.near.option(D("23400"), "CE").security_id
    assert eod_replay._mark(day, models, atm) == (day.contracts[atm].settle, "settle")
