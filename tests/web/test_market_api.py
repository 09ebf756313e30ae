"""Market and Chain API: a small chain checked by hand, and payloads the engine recorded itself.

The hand chain goes through the engine's own recording path (compute_surface -> with_chain ->
record_iv_snapshot), so the API reads exactly what the scanner writes; the real-payload test
runs a real engine (scanner actor, simulated market) across a session boundary.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pytest
from psycopg.types.json import Jsonb

from engine.market.chain_record import CHAIN_HALF_WIDTH, chain_payload, with_chain
from engine.market.chain_stats import max_pain, oi_change, pain_at, put_call_ratio
from engine.market.pricing import black76_price
from engine.market.realized import session_realized_vol
from engine.market.snapshot import ChainSide, MarketSnapshot, OptionChain
from engine.market.snapshot_store import record_iv_snapshot
from engine.market.surface import compute_surface
from engine.store.tx import transaction
from engine.strategies.cal_arb import zscore
from engine.timeutil import IST

STRIKES = [23300.0, 23350.0, 23400.0, 23450.0, 23500.0]
CE_OI = [1000, 2000, 3000, 5000, 4000]
PE_OI = [3000, 6000, 2000, 1000, 500]
EXPIRY = date(2025, 2, 6)


def _snapshot(at: datetime, spot: float, ce_oi, pe_oi) -> MarketSnapshot:
    k = np.array(STRIKES)
    t = (datetime(2025, 2, 6, 15, 30, tzinfo=IST) - at).total_seconds() / (365 * 86400)

    def side(call: bool, oi) -> ChainSide:
        mid = black76_price(spot, k, t, 0.15, call, 0.0)
        mid = np.round(np.round(mid / 0.05) * 0.05, 2)
        return ChainSide(security_id=np.arange(5) + (100 if call else 200), ltp=mid,
                         bid=mid - 0.05, ask=mid + 0.05, iv=np.full(5, np.nan), oi=oi,
                         volume=np.array(oi) // 10, prev_close=mid)

    chain = OptionChain(expiry=EXPIRY, strikes=k, ce=side(True, ce_oi), pe=side(False, pe_oi))
    return MarketSnapshot(time=at, spot=spot, near_future=None, far_future=None, chains=(chain,),
                          listed_expiries=(EXPIRY,))


def _record(pool, snap: MarketSnapshot) -> None:
    with transaction(pool) as conn:
        record_iv_snapshot(conn, with_chain(compute_surface(snap), snap))


# ------------------------------------------------------------------ pure helpers by hand
def test_pcr_and_max_pain_by_hand() -> None:
    assert put_call_ratio(CE_OI, PE_OI) == pytest.approx(12500 / 15000)
    assert put_call_ratio([0, 0], [5, 5]) is None
    # holders' payout at each settlement, worked out by hand in the docstring's formula
    by_hand = {23300: 750_000, 23350: 325_000, 23400: 300_000, 23450: 525_000, 23500: 1_050_000}
    for s, pain in by_hand.items():
        assert pain_at(s, STRIKES, CE_OI, PE_OI) == pain
    assert max_pain(STRIKES, CE_OI, PE_OI) == 23400.0
    assert max_pain(STRIKES, [0] * 5, [0] * 5) is None
    assert max_pain([100.0, 200.0], [1, 0], [0, 1]) == 100.0  # tie: the lower strike
    assert oi_change([10, 20, 30], [7, None, 40]) == [3, None, -10]
    with pytest.raises(ValueError, match=r"ce_oi\[1\] = -5"):
        max_pain(STRIKES[:2], [1, -5], [0, 0])


def test_session_realized_vol() -> None:
    t0 = datetime(2025, 2, 4, 10, 0, tzinfo=IST)
    times = [t0.replace(minute=m) for m in range(0, 4)]
    spots = [100.0, 101.0, 100.0, 101.0]
    r1, r2 = np.log(101 / 100), np.log(100 / 101)
    want = np.sqrt((2 * r1 * r1 + r2 * r2) * 252 * 375 / 3)
    assert session_realized_vol(times, spots) == pytest.approx(want)
    assert session_realized_vol(times[:2], spots[:2]) is None
    with pytest.raises(ValueError, match="spot #1"):
        session_realized_vol(times, [100.0, -1.0, 100.0, 100.0])


def test_chain_payload_window_and_stats_cover_every_strike() -> None:
    snap = _snapshot(datetime(2025, 2, 4, 11, 0, tzinfo=IST), 23410.0, CE_OI, PE_OI)
    p = chain_payload(snap, compute_surface(snap), half_width=1)
    e = p["expiries"][0]
    assert e["strikes"] == [23350.0, 23400.0, 23450.0] and e["atm_strike"] == 23400.0
    assert e["stats"]["max_pain"] == 23400.0 and e["stats"]["strikes"] == 5  # the full chain
    assert e["stats"]["pcr_oi"] == pytest.approx(0.8333, abs=1e-4)
    assert e["ce"]["oi"] == [2000, 3000, 5000]
    assert abs(e["ce"]["iv"][1] - 15.0) < 0.3  # inverted from the Black-76 price at 15 %
    assert 0.4 < e["ce"]["delta"][1] < 0.6 and -0.6 < e["pe"]["delta"][1] < -0.4
    with pytest.raises(ValueError, match="half_width"):
        chain_payload(snap, compute_surface(snap), half_width=0)


# ------------------------------------------------------------------ API on the hand chain
def test_chain_api_on_a_small_chain(api, pool) -> None:
    assert api.get("/api/market/chain").get_json()["chain"] is None  # nothing recorded yet
    prev_ce = [900, 2000, 2500, 5200, 4000]
    prev_pe = [3000, 5000, 2000, 1000, 800]
    _record(pool, _snapshot(datetime(2025, 2, 3, 15, 29, tzinfo=IST), 23380.0, prev_ce, prev_pe))
    _record(pool, _snapshot(datetime(2025, 2, 4, 11, 0, tzinfo=IST), 23410.0, CE_OI, PE_OI))
    leg = {"security_id": "103", "side": "SELL", "quantity": 75, "kind": "OPT",
           "option_type": "CE", "expiry": "2025-02-06", "strike": "23450",
           "entry_price": "40.00", "entry_charges": "10.00"}
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES ('DC-X', 'DC', 'paper', %s, now(),"
                     " 40, 75, %s)", (date(2025, 2, 4), Jsonb({"legs": [leg]})))
    body = api.get("/api/market/chain").get_json()
    assert body["expiry"]["expiry"] == "2025-02-06" and body["expiry"]["atm_strike"] == 23400.0
    assert body["stats"]["pcr_oi"] == pytest.approx(0.8333, abs=1e-4)
    assert body["stats"]["max_pain"] == 23400.0
    by_k = {r["strike"]: r for r in body["rows"]}
    assert [k for k, r in by_k.items() if r["atm"]] == [23400.0]
    assert [k for k, r in by_k.items() if r["max_pain"]] == [23400.0]
    assert [by_k[k]["ce"]["oi_change"] for k in STRIKES] == [100, 0, 500, -200, 0]
    assert [by_k[k]["pe"]["oi_change"] for k in STRIKES] == [0, 1000, 0, 0, -300]
    assert body["oi_change"]["trade_date"] == "2025-02-03"
    assert [p["tag"] for p in by_k[23450.0]["positions"]] == ["DC-X"]
    assert by_k[23450.0]["positions"][0]["side"] == "SELL"
    assert by_k[23300.0]["ce"]["itm"] and not by_k[23300.0]["pe"]["itm"]
    assert body["expiries"][0]["open_legs"] == 1
    bad = api.get("/api/market/chain?expiry=2025-03-27")
    assert bad.status_code == 400 and "2025-02-06" in bad.get_json()["error"]
    assert api.get("/api/market/chain?expiry=27-03-2025").status_code == 400


# ------------------------------------------------------------------ a real engine's payloads
@pytest.fixture
def engine_day(db_url: str):
    """A real engine (scanner, executor, CAL_ARB) on the simulated market: the last minutes
    of 2025-02-03 and the first of 2025-02-04, one iv_snapshots row per scan cycle."""
    from tests.engine.harness import Harness

    h = Harness(db_url, start=datetime(2025, 2, 3, 15, 22, tzinfo=IST)).start()
    try:
        h.run_until(15, 30)
        h.run_until(9, 27, day=datetime(2025, 2, 4, 9, 15, tzinfo=IST))
        yield h
    finally:
        h.stop()


def test_market_api_on_payloads_the_engine_recorded(engine_day, api) -> None:
    stored = engine_day.query("SELECT payload FROM iv_snapshots ORDER BY created_at DESC LIMIT 1")
    payload = stored[0]["payload"]
    assert payload["smile"]["rows"], "the engine stores the smile as {expiry, rows}"
    # the smile: exactly the stored rows, in the engine's shape (the old page looked elsewhere)
    surf = api.get("/api/market/surface").get_json()
    want = [(float(r["strike"]), float(r["ce_iv"]), float(r["pe_iv"]))
            for r in payload["smile"]["rows"]]
    assert [(r["strike"], r["ce_iv"], r["pe_iv"]) for r in surf["smile"]["rows"]] == want
    assert surf["smile"]["expiry"] == payload["smile"]["expiry"]
    assert len(surf["far_smile"]["rows"]) == len(payload["far_smile"]["rows"])
    assert len(surf["term_structure"]) == len(payload["chain"]["expiries"]) >= 3
    assert all(t["atm_iv"] and t["atm_iv"] > 1 for t in surf["term_structure"])  # percent
    assert [t["dte"] for t in surf["term_structure"]] == sorted(t["dte"] for t in surf["term_structure"])
    # the chain: every expiry, the ATM row, OI change against 2025-02-03's last chain
    chain = api.get("/api/market/chain").get_json()
    assert chain["trade_date"] == "2025-02-04"
    assert len(chain["rows"]) == 2 * CHAIN_HALF_WIDTH + 1
    atm = [r for r in chain["rows"] if r["atm"]]
    assert len(atm) == 1 and abs(atm[0]["strike"] - float(chain["spot"])) <= 25
    assert chain["oi_change"]["trade_date"] == "2025-02-03"
    changes = [r["ce"]["oi_change"] for r in chain["rows"] if r["ce"]["oi_change"] is not None]
    assert changes and any(c != 0 for c in changes)  # the simulator's OI moves between sessions
    assert chain["stats"]["max_pain"] is not None and chain["stats"]["pcr_oi"] > 0
    assert all(r["ce"]["bid"] <= r["ce"]["ask"] for r in chain["rows"] if r["ce"]["bid"] is not None)
    other = chain["expiries"][1]["expiry"]
    assert api.get(f"/api/market/chain?expiry={other}").get_json()["expiry"]["expiry"] == other
    # ATM IV history over both sessions, oldest first
    hist = api.get("/api/market/iv-history?from=2025-02-03&to=2025-02-04").get_json()["rows"]
    assert {r["trade_date"] for r in hist} == {"2025-02-03", "2025-02-04"}
    assert hist[0]["created_at"] < hist[-1]["created_at"]
    # realized vs implied per session
    real = api.get("/api/market/realized?from=2025-02-03&to=2025-02-04").get_json()
    assert [s["trade_date"] for s in real["sessions"]] == ["2025-02-03", "2025-02-04"]
    assert all(s["session_rv"] and s["session_rv"] > 0 for s in real["sessions"])
    assert real["sessions"][0]["close_to_close_rv"] is None  # 2 closes < IC_RV_SESSIONS + 1
    # the futures spread with CAL_ARB's own z-score at each sample
    sp = api.get("/api/market/spread").get_json()
    samples = sp["samples"]
    assert samples and sp["window"] == 100 and sp["min_samples"] == 30
    spreads = [Decimal(s["spread"]) for s in samples]
    for i, s in enumerate(samples):
        if i < sp["min_samples"]:
            assert s["z"] is None
        else:
            z, _mean, _sd = zscore(tuple(spreads[:i]), spreads[i], sp["window"])
            assert s["z"] == pytest.approx(round(z, 4))
