"""Bhavcopy files into ``bhavcopy_ohlc``: one transaction per file, COPY + one upsert.

Each file: parsed fully first (a malformed file raises before anything is written), then in
one transaction its rows are COPYed into a temporary staging table and upserted on the
primary key with one ``INSERT … ON CONFLICT DO UPDATE`` (re-importing a file changes nothing),
and the re-datings it reveals against the neighbouring ingested days are recorded in
``bhavcopy_redated`` (see ``engine.backtest.redating``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from engine.backtest.bhavcopy import _NAME_DATE, BhavcopyError, ParsedFile, parse_bytes, parse_path
from engine.backtest.redating import ListedContract, detect_redatings

__all__ = ["COLUMNS", "ImportSummary", "IngestResult", "bhavcopy_files", "import_paths",
           "ingest_file", "ingest_parsed"]

logger = logging.getLogger(__name__)

COLUMNS = ("trade_date", "symbol", "expiry", "option_type", "strike", "open", "high", "low",
           "close", "settle", "underlying", "open_interest", "oi_change", "volume", "lot_size",
           "instrument_id", "contract_name", "source_file")
_KEY = ("trade_date", "symbol", "expiry", "option_type", "strike")
_STAGE = "bhavcopy_stage"
_COLS = ", ".join(COLUMNS)
_UPSERT = (
    f"WITH up AS (INSERT INTO bhavcopy_ohlc ({_COLS}) SELECT {_COLS} FROM {_STAGE}"
    f" ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c not in _KEY)
    + " RETURNING (xmax = 0) AS inserted)"
    " SELECT count(*) FILTER (WHERE inserted) AS inserted,"
    " count(*) FILTER (WHERE NOT inserted) AS updated FROM up")
_REDATED = (
    "INSERT INTO bhavcopy_redated (symbol, old_expiry, new_expiry, redated_on, contracts,"
    " example_name) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (symbol, old_expiry, new_expiry) DO UPDATE"
    " SET redated_on = LEAST(bhavcopy_redated.redated_on, EXCLUDED.redated_on),"
    " contracts = GREATEST(bhavcopy_redated.contracts, EXCLUDED.contracts)")
_IDENTITY = ("SELECT symbol, expiry, option_type, strike, instrument_id, contract_name"
             " FROM bhavcopy_ohlc WHERE trade_date = %s AND symbol = %s")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one file did to the store."""

    source: str
    trade_date: date
    format: str
    file_rows: int        # data rows in the file (every segment)
    kept_rows: int        # NIFTY/BANKNIFTY index options and futures
    inserted: int
    updated: int
    redatings: int        # re-dating rows recorded or refreshed by this file
    seconds: float


@dataclass(slots=True)
class ImportSummary:
    """What :func:`import_paths` did: results per file and the files refused."""

    results: list[IngestResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(r.kept_rows for r in self.results)

    def lines(self) -> list[str]:
        days = sorted({r.trade_date for r in self.results})
        out = [f"imported {len(self.results)} file(s), {self.rows:,} rows "
               f"({sum(r.inserted for r in self.results):,} new, "
               f"{sum(r.updated for r in self.results):,} updated) in {self.seconds:.1f}s"]
        if days:
            out.append(f"trade dates {days[0]} .. {days[-1]} ({len(days)} day(s))")
        redated = sum(r.redatings for r in self.results)
        if redated:
            out.append(f"re-dated expiries recorded: {redated}")
        out += [f"refused: {e}" for e in self.errors]
        return out


def _check_unique(parsed: ParsedFile) -> None:
    seen: set[tuple[Any, ...]] = set()
    for r in parsed.rows:
        if r.key in seen:
            raise BhavcopyError(parsed.source, f"two rows for {r.symbol} {r.expiry} "
                                f"{r.option_type} {r.strike} (duplicate contract)")
        seen.add(r.key)


def ingest_parsed(pool: Any, parsed: ParsedFile, *, source_file: str | None = None) -> IngestResult:
    """Write a parsed file (see :func:`ingest_file`)."""
    _check_unique(parsed)
    t0 = time.perf_counter()
    name = source_file or Path(parsed.source).name
    with pool.connection() as conn, conn.transaction():
        conn.execute(f"CREATE TEMP TABLE {_STAGE} (LIKE bhavcopy_ohlc) ON COMMIT DROP")
        with conn.cursor().copy(f"COPY {_STAGE} ({_COLS}) FROM STDIN") as cp:
            for r in parsed.rows:
                cp.write_row((r.trade_date, r.symbol, r.expiry, r.option_type, r.strike, r.open,
                              r.high, r.low, r.close, r.settle, r.underlying, r.open_interest,
                              r.oi_change, r.volume, r.lot_size, r.instrument_id,
                              r.contract_name, name))
        counts = conn.execute(_UPSERT).fetchone()
        redated = _record_redatings(conn, parsed) if parsed.rows else 0
    return IngestResult(source=parsed.source, trade_date=parsed.trade_date, format=parsed.format,
                        file_rows=parsed.total_rows, kept_rows=len(parsed.rows),
                        inserted=int(counts["inserted"]), updated=int(counts["updated"]),
                        redatings=redated, seconds=time.perf_counter() - t0)


def _record_redatings(conn: Any, parsed: ParsedFile) -> int:
    """Compare the file's day with the nearest ingested days before and after it (rows that
    carry contract names) and record the re-datings found (``redating.detect_redatings``)."""
    d = parsed.trade_date
    total = 0
    for symbol in sorted({r.symbol for r in parsed.rows if r.contract_name}):
        mine = [ListedContract(r.symbol, r.expiry, r.option_type, r.strike, r.instrument_id,
                               r.contract_name) for r in parsed.rows if r.symbol == symbol]
        near = conn.execute(
            "SELECT (SELECT max(trade_date) FROM bhavcopy_ohlc WHERE symbol = %(s)s"
            "         AND trade_date < %(d)s AND contract_name IS NOT NULL) AS prev,"
            "       (SELECT min(trade_date) FROM bhavcopy_ohlc WHERE symbol = %(s)s"
            "         AND trade_date > %(d)s AND contract_name IS NOT NULL) AS next",
            {"s": symbol, "d": d}).fetchone()
        pairs = []  # (earlier rows, later rows, later date)
        if near["prev"] is not None:
            pairs.append((_listed(conn, near["prev"], symbol), mine, d))
        if near["next"] is not None:
            pairs.append((mine, _listed(conn, near["next"], symbol), near["next"]))
        with conn.cursor() as cur:
            for earlier, later, on in pairs:
                for (sym, old, new), (n, name) in detect_redatings(earlier, later, on).items():
                    cur.execute(_REDATED, (sym, old, new, on, n, name))
                    total += 1
    return total


def _listed(conn: Any, d: date, symbol: str) -> list[ListedContract]:
    return [ListedContract(r["symbol"], r["expiry"], r["option_type"], r["strike"],
                           r["instrument_id"], r["contract_name"])
            for r in conn.execute(_IDENTITY, (d, symbol)).fetchall()]


def ingest_file(pool: Any, path: Path | str) -> IngestResult:
    """Parse ``path`` (UDiFF or legacy, zip or csv) and upsert its NIFTY/BANKNIFTY rows.

    One transaction: all of the file or none of it. Idempotent (upsert on the key).

    Raises:
        BhavcopyError: the file is malformed (file, line, column named); nothing is written.
    """
    return ingest_parsed(pool, parse_path(path))


def ingest_bytes(pool: Any, data: bytes, source: str) -> IngestResult:
    """:func:`ingest_file` of downloaded bytes (``source`` names them in errors)."""
    return ingest_parsed(pool, parse_bytes(data, source), source_file=Path(source).name)


def bhavcopy_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files to import: each named file as is; in a folder (recursively) the files named like
    an NSE F&O bhavcopy (``BhavCopy_NSE_FO_0_0_0_YYYYMMDD_F_0000.csv[.zip]``,
    ``foDDMONYYYYbhav.csv[.zip]``).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and _NAME_DATE.fullmatch(
                f.name.removesuffix(".zip").removesuffix(".csv")))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return list(dict.fromkeys(out))


def import_paths(pool: Any, paths: Sequence[Path | str], *, progress: bool | None = None
                 ) -> ImportSummary:
    """Import files and folders (see :func:`bhavcopy_files`), one transaction per file; a
    malformed file is refused (reported in the summary) and the others still load. A tqdm
    bar on stderr when it is a terminal (or when ``progress`` is True).

    Raises:
        FileNotFoundError: a path that does not exist (before anything is imported).
    """
    from tqdm import tqdm

    files = bhavcopy_files(paths)
    summary = ImportSummary()
    t0 = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    for f in tqdm(files, desc="import", unit="file", disable=not show):
        try:
            summary.results.append(ingest_file(pool, f))
        except BhavcopyError as exc:
            logger.warning("bhavcopy refused: %s", exc)
            summary.errors.append(str(exc))
    summary.seconds = time.perf_counter() - t0
    return summary
