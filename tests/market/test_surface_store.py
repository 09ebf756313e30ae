"""IV surface summary and the iv_snapshots store."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from engine.market.calendar import NseCalendar
from engine.market.simulator import SimulatedMarket
from engine.market.snapshot import ChainSide, MarketSnapshot, price_decimal
from engine.market.snapshot_store import prune_iv_snapshots, record_iv_snapshot
from engine.market.surface import compute_surface
from engine.timeutil import IST

T0 = datetime(2025, 2, 4, 11, 0, tzinfo=IST)


@pytest.fixture(scope="module")
def snap() -> MarketSnapshot:
    market = SimulatedMarket(17, datetime(2025, 2, 3, 9, 15, tzinfo=IST), NseCalendar())
    return market.snapshot_at(T0)


def _without_source_iv(s: MarketSnapshot) -> MarketSnapshot:
    chains = []
    for c in s.chains:
        sides = [ChainSide(**{f: (np.full(c.strikes.size, np.nan) if f == "iv" else
                                  getattr(side, f)) for f in ChainSide.__slots__})
                 for side in (c.ce, c.pe)]
        chains.append(dataclasses.replace(c, ce=sides[0], pe=sides[1]))
    return MarketSnapshot(time=s.time, spot=s.spot, near_future=s.near_future,
                          far_future=s.far_future, chains=tuple(chains),
                          listed_expiries=s.listed_expiries, lot_size=s.lot_size)


def test_surface_fields_from_simulated_snapshot(snap):
    sf = compute_surface(snap, spot_high=snap.spot + 40, spot_low=snap.spot - 70)
    assert sf.near_expiry == date(2025, 2, 6) and sf.far_expiry == date(2025, 2, 27)
    assert sf.near_dte == 2 and sf.far_dte == 23
    assert 0.08 < sf.near_atm_iv < 0.3 and 0.08 < sf.far_atm_iv < 0.3
    assert sf.skew is not None and sf.skew > 0  # puts richer: the simulator's skew sign
    assert sf.far_straddle > sf.near_straddle > 0
    assert sf.realized_range == pytest.approx(110.0)
    ts = sf.payload["term_structure"]
    assert ts["near"]["expiry"] == "2025-02-06" and ts["mid"]["expiry"] == "2025-02-13"
    assert len(sf.payload["smile"]["rows"]) == 21
    assert all(r["ce_iv_source"] == "source" for r in sf.payload["smile"]["rows"])
    assert len(sf.payload["far_smile"]["rows"]) == 41


def test_surface_estimates_missing_iv_from_ltp_and_marks_it(snap):
    with_src = compute_surface(snap)
    est = compute_surface(_without_source_iv(snap))
    rows = est.payload["smile"]["rows"]
    assert all(r["ce_iv_source"] == "estimated" and r["pe_iv_source"] == "estimated"
               for r in rows)
    # LTP-inverted IV lands near the model IV (LTP is tick-rounded inside the spread)
    assert est.near_atm_iv == pytest.approx(with_src.near_atm_iv, abs=0.01)
    assert est.skew == pytest.approx(with_src.skew, abs=0.01)


def test_surface_realized_range_from_history_and_argument_errors(snap):
    assert compute_surface(snap, spot_history=[10.0, 30.0, 5.0]).realized_range == 25.0
    assert compute_surface(snap).realized_range is None
    with pytest.raises(ValueError, match="spot_high"):
        compute_surface(snap, spot_high=1.0)


def test_snapshot_helpers_decimal_and_lookup(snap):
    e = snap.expiries[0]
    atm = snap.atm_strike(e)
    assert abs(atm - snap.spot) <= 25.0
    q = snap.quote(int(snap.chain(e).pe.security_id[snap.chain(e).index_of(atm)]))
    assert q.option_type == "PE" and isinstance(q.ltp_decimal(), Decimal)
    assert price_decimal(118.05000000000001) == Decimal("118.05")
    with pytest.raises(KeyError, match="no option chain"):
        snap.chain(date(2030, 1, 1))
    with pytest.raises(ValueError):
        price_decimal(float("nan"))


def test_iv_snapshot_store_record_and_prune(pool, snap):
    sf = compute_surface(snap, spot_high=snap.spot + 40, spot_low=snap.spot - 70)
    old = dataclasses.replace(sf, created_at=T0 - timedelta(days=200))
    with pool.connection() as conn:
        new_id = record_iv_snapshot(conn, sf)
        record_iv_snapshot(conn, old)
        row = conn.execute("SELECT * FROM iv_snapshots WHERE id = %s", (new_id,)).fetchone()
        assert row["trade_date"] == date(2025, 2, 4)
        assert row["near_expiry"] == date(2025, 2, 6) and row["far_dte"] == 23
        assert row["near_atm_iv"] == Decimal(f"{100 * sf.near_atm_iv:.4f}")
        assert row["realized_range"] == Decimal("110.00")
        assert row["payload"]["term_structure"]["near"]["expiry"] == "2025-02-06"
        assert len(row["payload"]["smile"]["rows"]) == 21
        assert prune_iv_snapshots(conn, older_than_days=180, now=T0) == 1
        left = conn.execute("SELECT count(*) AS n FROM iv_snapshots").fetchone()["n"]
    assert left == 1
