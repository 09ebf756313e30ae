"""Instrument master: real-format rows from the reference, simulator download, futures cache."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from engine.broker.dhan.futures_cache import read_futures_cache, refresh_futures_cache
from engine.broker.dhan.instruments import (
    InstrumentMaster,
    InstrumentNotFound,
    StaleInstrumentMaster,
)
from engine.dhan_sim.csv_master import COMPACT_HEADER, DETAILED_HEADER
from engine.market.calendar import NseCalendar
from engine.store.tx import transaction

COMPACT_ROWS = "".join([
    "NSE,I,13,INDEX,0,NIFTY,1.0,Nifty 50,,7.00000,,1.0000,NA,INDEX,X,NIFTY\n",
    "NSE,D,44430,OPTIDX,0,NIFTY-Oct2024-25800-CE,25.0,NIFTY 24 OCT 25800 CALL,"
    "2024-10-24 14:30:00,25800.00000,CE,5.0000,W,OP,,\n",
    "NSE,D,56046,OPTIDX,0,NIFTY-Sep2024-25800-CE,25.0,NIFTY 26 SEP 25800 CALL,"
    "2024-09-26 14:30:00,25800.00000,CE,5.0000,M,OP,,\n",
    "NSE,D,35001,FUTIDX,0,NIFTY-Oct2024-FUT,25.0,NIFTY OCT FUT,2024-10-31 14:30:00,"
    "-0.01000,XX,5.0000,M,FUT,,\n",
    "NSE,D,35002,FUTIDX,0,NIFTY-Nov2024-FUT,25.0,NIFTY NOV FUT,2024-11-28 14:30:00,"
    "-0.01000,XX,5.0000,M,FUT,,\n",
    "NSE,D,99001,OPTIDX,0,NIFTYNXT50-Oct2024-70000-CE,10.0,NIFTYNXT50 OCT 70000 CALL,"
    "2024-10-25 14:30:00,70000.00000,CE,5.0000,M,OP,,\n",
    "NSE,D,99002,FUTIDX,0,NIFTY011NSETEST-Oct2024-FUT,1.0,TEST,2024-10-31 14:30:00,"
    "-0.01000,XX,5.0000,M,FUT,,\n",
])
DETAILED_ROWS = "".join([
    "NSE,I,13,NA,INDEX,13,NIFTY,NIFTY,Nifty 50,INDEX,NA,1.0,0001-01-01,"
    ",XX,0.0500,N,N,N,N,NA,A,0,0,0,0,0,0,0,0.0000,0.0000,0,\n",
    "NSE,D,35084,NA,OPTIDX,26000,NIFTY,NIFTY-Sep2026-29150-CE,NIFTY 29 SEP 29150 CALL,"
    "OP,NA,65.0,2026-09-29,29150.00000,CE,5.0000,M,N,N,N,NA,A,0,0,0,0,0,0,0,20.1000,0.0500,1756,\n",
])
COMPACT_INDEX_2026 = "NSE,I,13,INDEX,0,NIFTY,1.0,Nifty 50,0001-01-01,,XX,0.0500,,INDEX,X,NIFTY\n"


def test_instruments_compact_reference_rows_parsed():
    master = InstrumentMaster.from_csv_text(COMPACT_HEADER + "\n" + COMPACT_ROWS,
                                            date(2024, 10, 1))
    idx = master.nifty_index()
    assert idx.security_id == "13" and idx.exchange_segment == "IDX_I" and idx.expiry is None
    weekly = master.option(date(2024, 10, 24), 25800, "CE")
    assert weekly.security_id == "44430" and weekly.lot_size == 25
    assert weekly.tick_size == Decimal("0.05") and weekly.expiry_flag == "W"
    assert weekly.exchange_segment == "NSE_FNO" and weekly.freeze_qty is None
    assert master.option(date(2024, 9, 26), Decimal("25800.00"), "ce").expiry_flag == "M"
    futs = master.futures(on_or_after=date(2024, 10, 1))
    assert [f.security_id for f in futs] == ["35001", "35002"] and futs[0].strike is None
    assert master.future(date(2024, 11, 28)).trading_symbol == "NIFTY-Nov2024-FUT"
    assert master.lot_size() == 25 and master.lot_size("44430") == 25
    assert master.option_expiries() == [date(2024, 9, 26), date(2024, 10, 24)]
    with pytest.raises(InstrumentNotFound):
        master.by_security_id("99001")  # NIFTYNXT50 excluded
    with pytest.raises(InstrumentNotFound):
        master.by_security_id("99002")  # NSETEST excluded
    with pytest.raises(InstrumentNotFound, match="PE 25800"):
        master.option(date(2024, 10, 24), 25800, "PE")


def test_instruments_compact_2026_index_row_with_sentinels():
    master = InstrumentMaster.from_csv_text(COMPACT_HEADER + "\n" + COMPACT_INDEX_2026,
                                            date(2026, 8, 15))
    idx = master.nifty_index()
    assert idx.expiry is None and idx.option_type is None and idx.tick_size == Decimal("0.05")


def test_instruments_detailed_reference_rows_parsed_with_trailing_field():
    master = InstrumentMaster.from_csv_text(DETAILED_HEADER + "\n" + DETAILED_ROWS,
                                            date(2026, 8, 26))
    assert master.nifty_index().security_id == "13"
    opt = master.option(date(2026, 9, 29), 29150, "CE")
    assert opt.security_id == "35084" and opt.lot_size == 65
    assert opt.freeze_qty == 1756 and master.freeze_quantity("35084") == 1756
    assert opt.underlying_security_id == "26000" and opt.tick_size == Decimal("0.05")


def test_instruments_unknown_header_refused():
    with pytest.raises(ValueError, match="not a Dhan instrument master"):
        InstrumentMaster.from_csv_text("a,b,c\n1,2,3\n", date(2026, 1, 1))


def test_instruments_stale_master_refused_with_dates():
    master = InstrumentMaster.from_csv_text(COMPACT_HEADER + "\n" + COMPACT_ROWS,
                                            date(2024, 10, 1), source="cache.csv")
    master.ensure_fresh(date(2024, 10, 1))
    with pytest.raises(StaleInstrumentMaster, match=r"2024-10-01.*older than trading day "
                                                    r"2024-10-03"):
        master.ensure_fresh(date(2024, 10, 3))


@pytest.mark.parametrize("path", ["/api-data/api-scrip-master.csv",
                                  "/api-data/api-scrip-master-detailed.csv"])
def test_instruments_download_from_simulator_matches_chain(sim, tmp_path, path):
    saved = tmp_path / "master.csv"
    master = InstrumentMaster.download(sim.url + path, as_of=date(2026, 1, 5),
                                       save_to=str(saved))
    market = sim.sim.market
    expiry = market.expiries()[0]
    entry = market.option_chain(expiry)[24000.0]["PE"]
    assert master.option(expiry, 24000, "PE").security_id == str(entry.security_id)
    assert master.nifty_index().security_id == "13"
    assert len(master.futures()) == 2
    assert len(InstrumentMaster.load(saved, as_of=date(2026, 1, 5))) == len(master)


def test_instruments_futures_cache_written_when_missing_and_near_expired(pool, sim):
    master = InstrumentMaster.download(sim.instruments_url, as_of=sim.sim.market.today())
    today = sim.sim.market.today()
    near, far = master.futures(on_or_after=today)[:2]
    with transaction(pool) as conn:
        first = refresh_futures_cache(conn, master, today)
    assert first.refreshed and first.reason == "missing rows"
    with pool.connection() as conn:
        rows = read_futures_cache(conn)
    assert rows["near"]["security_id"] == near.security_id and rows["near"]["expiry"] == near.expiry
    assert rows["far"]["security_id"] == far.security_id
    assert rows["far"]["lot_size"] == far.lot_size == NseCalendar().lot_size(today, far.expiry)
    with transaction(pool) as conn:
        assert not refresh_futures_cache(conn, master, today).refreshed
    with transaction(pool) as conn:
        conn.execute("UPDATE futures_id_cache SET expiry = %s, security_id = 'old' "
                     "WHERE leg = 'near'", (today - timedelta(days=1),))
    with transaction(pool) as conn:
        again = refresh_futures_cache(conn, master, today)
    assert again.refreshed and again.reason.startswith("near contract expired")
    assert again.near["security_id"] == near.security_id


def test_instruments_futures_cache_refuses_stale_master(pool, sim):
    master = InstrumentMaster.download(sim.instruments_url, as_of=date(2000, 1, 1))
    with pytest.raises(StaleInstrumentMaster), transaction(pool) as conn:
        refresh_futures_cache(conn, master, sim.sim.market.today())
