"""Real Feb-2025 NIFTY bhavcopy rows in ``bhavcopy_ohlc``, for the end-of-day replay tests.

Plain INSERTs from the real UDiFF zips in ../shared/data (never copied into the repo), loaded
once per test session into a template database; each test gets a clone (tens of ms). Tests
that need the files skip with the reason when they are absent.

Import the fixtures into a test module: ``from tests.backtest.eod_fixtures import bhav_pool``
(and ``bhav_template``, which it needs).
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date
from decimal import Decimal
from functools import cache

import psycopg
import pytest

from engine.store.pool import open_pool
from tests.conftest import clone_database, with_dbname
from tests.shared_data import SHARED_DATA, require_shared_data

FEB_2025 = ("03", "04", "05", "06", "07", "10", "11", "12", "13", "14", "17", "18", "19", "20",
            "21", "24", "25", "27", "28")
INSERT = ("INSERT INTO bhavcopy_ohlc (trade_date, symbol, expiry, option_type, strike, open, high,"
          " low, close, settle, underlying, open_interest, oi_change, volume, lot_size, source_file)"
          " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


def file_name(day: str) -> str:
    return f"BhavCopy_NSE_FO_0_0_0_202502{day}_F_0000.csv.zip"


def _num(x: str) -> Decimal | None:
    return Decimal(x) if x.strip() else None


@cache
def nifty_rows(name: str) -> tuple[dict[str, str], ...]:
    """The NIFTY index option/future rows of one file, as the CSV has them."""
    with zipfile.ZipFile(SHARED_DATA / name) as z, z.open(z.namelist()[0]) as fh:
        reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8"))
        return tuple(r for r in reader
                     if r["TckrSymb"] == "NIFTY" and r["FinInstrmTp"] in ("IDO", "IDF"))


def table_row(r: dict[str, str], name: str) -> tuple:
    fut = r["FinInstrmTp"] == "IDF"
    return (date.fromisoformat(r["TradDt"]), "NIFTY", date.fromisoformat(r["XpryDt"]),
            "FUT" if fut else r["OptnTp"], Decimal(0) if fut else Decimal(r["StrkPric"]),
            _num(r["OpnPric"]), _num(r["HghPric"]), _num(r["LwPric"]), _num(r["ClsPric"]),
            _num(r["SttlmPric"]), _num(r["UndrlygPric"]), int(r["OpnIntrst"]),
            int(r["ChngInOpnIntrst"]), int(r["TtlTradgVol"]), int(r["NewBrdLotQty"]), name)


def insert_days(conn: psycopg.Connection, days=FEB_2025) -> int:
    n = 0
    with conn.cursor() as cur:
        for d in days:
            name = file_name(d)
            rows = [table_row(r, name) for r in nifty_rows(name)]
            cur.executemany(INSERT, rows)
            n += len(rows)
    return n


@pytest.fixture(scope="session")
def bhav_template(admin_url: str, template_db: str):
    """A template database with every Feb-2025 NIFTY row (skips without the files)."""
    for d in FEB_2025:
        require_shared_data(file_name(d))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        name = clone_database(conn, template_db, prefix="bhav_")
    with psycopg.connect(with_dbname(admin_url, name)) as conn:
        insert_days(conn)
        conn.commit()
    yield name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bhav_db(admin_url: str, bhav_template: str, monkeypatch: pytest.MonkeyPatch):
    """A fresh clone of the loaded template; DATABASE_URL points at it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        name = clone_database(conn, bhav_template, prefix="tb_")
    url = with_dbname(admin_url, name)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bhav_pool(bhav_db: str):
    p = open_pool(bhav_db, min_size=1, max_size=4, name="bhav-test")
    yield p
    p.close()


__all__ = ["FEB_2025", "bhav_db", "bhav_pool", "bhav_template", "file_name",
           "insert_days", "nifty_rows", "table_row"]
