"""Bhavcopy ingest vs a raw COPY of the same CSV (target: ingest <= 2x the raw COPY).

On a scratch database (TEST_DATABASE_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres):

  * ingest: ``engine.backtest.ingest.ingest_file`` on a complete UDiFF day (unzip, parse by
    column name, typed NIFTY/BANKNIFTY rows, COPY into staging, one upsert, re-dating check),
    into an empty ``bhavcopy_ohlc`` each round;
  * raw COPY: the same file's CSV text (all ~34k rows, already unzipped) COPYed as text into
    a plain 34-column table, also measured with the unzip included.

Median of ROUNDS runs each, in the same process. Needs ../shared/data.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from engine.backtest.ingest import ingest_file
from engine.store.migrate import migrate
from engine.store.pool import open_pool

DATA = Path(os.environ.get("SHARED_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
FILE = DATA / "BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip"
ROUNDS = 7


def main() -> None:
    if not FILE.exists():
        print(f"skipped: {FILE} not found (set SHARED_DATA_DIR)")
        return
    admin = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(dsn)
        pool = open_pool(dsn, min_size=1, max_size=2, name="bench")
        with zipfile.ZipFile(FILE) as zf:
            header = zf.read(zf.namelist()[0]).split(b"\n", 1)[0].decode()
        columns = ", ".join(f'"{c}" text' for c in header.strip().split(","))
        with pool.connection() as conn:
            conn.execute(f"CREATE TABLE raw_bhav ({columns})")
        ingest_s, raw_s, raw_unzip_s = [], [], []
        rows = kept = 0
        for _ in range(ROUNDS):
            with pool.connection() as conn:
                conn.execute("TRUNCATE bhavcopy_ohlc, bhavcopy_redated, raw_bhav")
            t0 = time.perf_counter()
            res = ingest_file(pool, FILE)
            ingest_s.append(time.perf_counter() - t0)
            kept, rows = res.kept_rows, res.file_rows
            t0 = time.perf_counter()
            with zipfile.ZipFile(FILE) as zf:
                data = zf.read(zf.namelist()[0])
            t1 = time.perf_counter()
            with pool.connection() as conn, conn.cursor().copy(
                    "COPY raw_bhav FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
                cp.write(data)
            t2 = time.perf_counter()
            raw_s.append(t2 - t1)
            raw_unzip_s.append(t2 - t0)
        pool.close()
        ing, raw, rawz = (statistics.median(x) for x in (ingest_s, raw_s, raw_unzip_s))
        print(f"file: {FILE.name} ({rows:,} rows; {kept:,} NIFTY/BANKNIFTY index rows kept)")
        print(f"ingest_file (unzip+parse+COPY staging+upsert): {ing * 1000:7.1f} ms (median of {ROUNDS})")
        print(f"raw text COPY of the CSV (34 text columns):  {raw * 1000:7.1f} ms")
        print(f"raw text COPY incl. unzip:                    {rawz * 1000:7.1f} ms")
        print(f"ratio ingest / raw COPY: {ing / raw:.2f}x (incl. unzip {ing / rawz:.2f}x; "
              "target <= 2x)")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
