"""Bhavcopy parsing and ingest on the real files of ../shared/data: both UDiFF header variants,
legacy, complete and filtered; malformed files refused with their location and nothing
written; idempotent re-import; contract identity across the Aug-2025 re-dating."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from engine.backtest.bhavcopy import (
    FORMAT_LEGACY,
    FORMAT_UDIFF_RSVD01,
    FORMAT_UDIFF_RSVD1,
    BhavcopyError,
    inspect_bytes,
    parse_bytes,
    parse_path,
)
from engine.backtest.ingest import bhavcopy_files, import_paths, ingest_bytes, ingest_file
from engine.backtest.redating import (
    ListedContract,
    Redating,
    detect_redatings,
    load_redatings,
    redated_expiry,
)
from tests.market.bhav import udiff_rows
from tests.shared_data import SHARED_DATA, require_shared_data

FILTERED = "strategy-squad_filtered"
FULL_0203 = "BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip"
FULL_0228 = "BhavCopy_NSE_FO_0_0_0_20250228_F_0000.csv.zip"
KEEP = {"IDO", "IDF", "OPTIDX", "FUTIDX"}


def _raw_rows(path: Path) -> list[dict[str, str]]:
    """Every data row of a UDiFF or legacy file, by an independent reader."""
    if path.name.startswith("fo"):
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    return list(udiff_rows(path))


def _kept(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r.get("FinInstrmTp", r.get("INSTRUMENT")) in KEEP
            and r.get("TckrSymb", r.get("SYMBOL")) in ("NIFTY", "BANKNIFTY")]


def _count(pool, d: date | None = None) -> int:
    with pool.connection() as conn:
        if d is None:
            return conn.execute("SELECT count(*) AS n FROM bhavcopy_ohlc").fetchone()["n"]
        return conn.execute("SELECT count(*) AS n FROM bhavcopy_ohlc WHERE trade_date = %s",
                            (d,)).fetchone()["n"]


def _checksum(pool) -> str:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT md5(string_agg(t::text, '|' ORDER BY trade_date, symbol, expiry, option_type,"
            " strike)) AS h FROM bhavcopy_ohlc t").fetchone()["h"]


def _shared_bhavcopies() -> list[Path]:
    return bhavcopy_files([SHARED_DATA]) if (SHARED_DATA / FILTERED).is_dir() else []


def test_folder_import_finds_every_bhavcopy_and_only_them() -> None:
    require_shared_data(FILTERED)
    files = _shared_bhavcopies()
    assert not any(f.name.startswith(("DERIVED", "hist_")) for f in files)  # other CSVs skipped
    assert len([f for f in files if f.suffix == ".zip"]) == 20
    assert len([f for f in files if f.name.startswith("fo")]) == 4 and len(files) == 43


@pytest.mark.parametrize("path", _shared_bhavcopies() or [pytest.param(None, marks=pytest.mark.skip(
    reason=f"real NSE data not found at {SHARED_DATA / FILTERED}"))], ids=lambda p: p and p.name)
def test_every_shared_file_parses_with_its_format_date_and_rows(path: Path) -> None:
    parsed = parse_path(path)
    if path.name.startswith("fo"):
        assert parsed.format == FORMAT_LEGACY
    elif "20240101" in path.name:
        assert parsed.format == FORMAT_UDIFF_RSVD01
    else:
        assert parsed.format == FORMAT_UDIFF_RSVD1
    assert {r.symbol for r in parsed.rows} == {"NIFTY", "BANKNIFTY"}
    assert {r.trade_date for r in parsed.rows} == {parsed.trade_date}
    assert {r.option_type for r in parsed.rows} == {"CE", "PE", "FUT"}
    assert all((r.option_type == "FUT") == (r.strike == 0) for r in parsed.rows)
    if parsed.format == FORMAT_LEGACY:
        assert all(r.lot_size is None and r.underlying is None for r in parsed.rows)
    else:
        assert all(r.lot_size and r.underlying and r.contract_name for r in parsed.rows)


@pytest.mark.parametrize("rel", [FULL_0203, f"{FILTERED}/BhavCopy_NSE_FO_0_0_0_20240101_F_0000.csv",
                                 f"{FILTERED}/fo28DEC2023bhav.csv"])
def test_parsed_rows_match_an_independent_reader(rel: str) -> None:
    path = require_shared_data(*rel.split("/"))
    raw = _raw_rows(path)
    kept = _kept(raw)
    parsed = parse_path(path)
    assert parsed.total_rows == len(raw)
    assert len(parsed.rows) == len(kept)
    legacy = parsed.format == FORMAT_LEGACY
    for r, row in zip(kept, parsed.rows, strict=True):
        if legacy:
            assert row.close == Decimal(r["CLOSE"]) and row.settle == Decimal(r["SETTLE_PR"])
            assert row.volume == int(r["CONTRACTS"]) and row.open_interest == int(r["OPEN_INT"])
            assert row.option_type == ("FUT" if r["OPTION_TYP"] == "XX" else r["OPTION_TYP"])
        else:
            assert row.close == Decimal(r["ClsPric"]) and row.settle == Decimal(r["SttlmPric"])
            assert row.volume == int(r["TtlTradgVol"]) and row.lot_size == int(r["NewBrdLotQty"])
            assert row.oi_change == int(r["ChngInOpnIntrst"])
            assert row.underlying == Decimal(r["UndrlygPric"])
            assert (row.instrument_id, row.contract_name) == (r["FinInstrmId"], r["FinInstrmNm"])


def test_inspect_counts_every_type_and_underlying() -> None:
    path = require_shared_data(FULL_0203)
    s = inspect_bytes(path.read_bytes(), path.name)
    raw = _raw_rows(path)
    assert s.format == FORMAT_UDIFF_RSVD1 and s.header[-1] == "Rsvd4" and len(s.header) == 34
    assert s.total_rows == len(raw) == sum(s.by_type.values())
    assert s.by_type["IDO"] == sum(1 for r in raw if r["FinInstrmTp"] == "IDO")
    assert s.by_underlying[("IDO", "NIFTY")] == sum(
        1 for r in raw if r["FinInstrmTp"] == "IDO" and r["TckrSymb"] == "NIFTY")
    assert s.kept_rows == len(_kept(raw))


def test_ingest_one_full_file_and_every_filtered_file(pool) -> None:
    full = require_shared_data(FULL_0228)
    folder = require_shared_data(FILTERED)
    res = ingest_file(pool, full)
    assert res.inserted == res.kept_rows == len(_kept(_raw_rows(full))) == _count(pool, res.trade_date)
    summary = import_paths(pool, [folder], progress=False)
    assert not summary.errors and len(summary.results) == 23
    for r in summary.results:
        assert _count(pool, r.trade_date) == r.kept_rows == r.inserted
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT close, settle, volume, lot_size, underlying, contract_name, instrument_id"
            " FROM bhavcopy_ohlc WHERE trade_date = '2025-02-28' AND symbol = 'NIFTY'"
            " AND expiry = '2025-03-27' AND option_type = 'CE' AND strike = 22500").fetchone()
    src = next(r for r in udiff_rows(full) if r["FinInstrmNm"] == "NIFTY25MAR22500CE")
    assert row["close"] == Decimal(src["ClsPric"]) and row["settle"] == Decimal(src["SttlmPric"])
    assert row["volume"] == int(src["TtlTradgVol"]) and row["lot_size"] == int(src["NewBrdLotQty"])
    assert row["instrument_id"] == src["FinInstrmId"]


def test_reimport_is_idempotent(pool) -> None:
    path = require_shared_data(FILTERED, "BhavCopy_NSE_FO_0_0_0_20250902_F_0000.csv")
    first = ingest_file(pool, path)
    before = _checksum(pool)
    again = ingest_file(pool, path)
    assert (again.inserted, again.updated) == (0, first.inserted)
    assert _checksum(pool) == before and _count(pool) == first.inserted


def _zip(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, text)
    return buf.getvalue()


def test_truncated_zip_refused_nothing_written(pool) -> None:
    path = require_shared_data(FULL_0203)
    data = path.read_bytes()
    with pytest.raises(BhavcopyError, match=rf"{path.name}: truncated or corrupt zip"):
        ingest_bytes(pool, data[: len(data) // 2], path.name)
    assert _count(pool) == 0


def _filtered_text(day: str) -> tuple[str, str]:
    name = f"BhavCopy_NSE_FO_0_0_0_{day}_F_0000.csv"
    return name, require_shared_data(FILTERED, name).read_text(encoding="utf-8")


def test_wrong_header_refused_with_line_and_column(pool) -> None:
    name, text = _filtered_text("20250903")
    bad = text.replace("ClsPric", "ClosePrice", 1)
    with pytest.raises(BhavcopyError, match=rf"{name}\.zip, line 1: UDiFF header without ClsPric"):
        ingest_bytes(pool, _zip(name, bad), name + ".zip")
    with pytest.raises(BhavcopyError, match="line 1: unknown header"):
        parse_bytes(b"Date,Open,High\n2025-01-01,1,2\n", "vix.csv")
    assert _count(pool) == 0


def test_non_numeric_price_refused_with_location_and_previous_rows_kept(pool) -> None:
    name, text = _filtered_text("20250904")
    ingest_bytes(pool, text.encode(), name)   # a good import first: it must stay untouched
    before = _checksum(pool)
    lines = text.split("\n")
    cells = lines[500].split(",")
    cells[17] = "12.3x"                       # ClsPric of data line 500 (file line 501)
    lines[500] = ",".join(cells)
    with pytest.raises(BhavcopyError) as err:
        ingest_bytes(pool, "\n".join(lines).encode(), name)
    assert (err.value.line, err.value.column) == (501, "ClsPric")
    assert f"{name}, line 501, column ClsPric: not a number: '12.3x'" == str(err.value)
    assert _checksum(pool) == before


def test_short_row_refused(pool) -> None:
    name, text = _filtered_text("20250905")
    cut = text[: len(text) - 40]              # the last line cut short (a truncated csv)
    with pytest.raises(BhavcopyError, match=r"line \d+: \d+ fields, the header has 34"):
        ingest_bytes(pool, cut.encode(), name)
    assert _count(pool) == 0


def test_position_across_the_aug_2025_redating_is_priced_every_day(pool) -> None:
    """A NIFTY 25000 CE of the 2025-09-25 monthly bought on 2025-02-28 is listed with expiry
    2025-09-30 from the re-dating on: through redated_expiry it is found on every day."""
    ingest_file(pool, require_shared_data(FULL_0228))
    days = ["20250825", "20250826", "20250828", "20250829", "20250901", "20250902", "20250903",
            "20250904", "20250905"]
    for d in days:
        ingest_file(pool, require_shared_data(FILTERED, f"BhavCopy_NSE_FO_0_0_0_{d}_F_0000.csv"))
    redatings = load_redatings(pool, "NIFTY")
    held = date(2025, 9, 25)
    with pool.connection() as conn:
        trade_days = [r["trade_date"] for r in conn.execute(
            "SELECT DISTINCT trade_date FROM bhavcopy_ohlc ORDER BY 1").fetchall()]
        assert len(trade_days) == 10
        for d in trade_days:
            e = redated_expiry(redatings, "NIFTY", held, d)
            assert e == (held if d == date(2025, 2, 28) else date(2025, 9, 30))
            row = conn.execute(
                "SELECT settle, contract_name FROM bhavcopy_ohlc WHERE trade_date = %s AND"
                " symbol = 'NIFTY' AND expiry = %s AND option_type = 'CE' AND strike = 25000",
                (d, e)).fetchone()
            assert row is not None and row["settle"] > 0, d
            assert row["contract_name"] == "NIFTY25SEP25000CE"
            naive = conn.execute(
                "SELECT 1 FROM bhavcopy_ohlc WHERE trade_date = %s AND symbol = 'NIFTY' AND"
                " expiry = %s AND option_type = 'CE' AND strike = 25000", (d, held)).fetchone()
            assert (naive is not None) == (d == date(2025, 2, 28))  # keyed naively it vanishes
    moved = {(r.old_expiry, r.new_expiry) for r in redatings}
    assert {(date(2025, 9, 25), date(2025, 9, 30)), (date(2025, 12, 24), date(2025, 12, 30)),
            (date(2029, 12, 27), date(2029, 12, 24))} <= moved
    assert all(r.redated_on == date(2025, 8, 25) for r in redatings)


def test_redated_expiry_follows_chains_and_dates() -> None:
    r = [Redating("NIFTY", date(2026, 3, 26), date(2026, 3, 31), date(2025, 8, 29)),
         Redating("NIFTY", date(2026, 3, 31), date(2026, 3, 30), date(2025, 12, 29))]
    assert redated_expiry(r, "NIFTY", date(2026, 3, 26), date(2025, 8, 28)) == date(2026, 3, 26)
    assert redated_expiry(r, "NIFTY", date(2026, 3, 26), date(2025, 9, 1)) == date(2026, 3, 31)
    assert redated_expiry(r, "NIFTY", date(2026, 3, 26), date(2026, 1, 2)) == date(2026, 3, 30)
    assert redated_expiry(r, "BANKNIFTY", date(2026, 3, 26), date(2026, 1, 2)) == date(2026, 3, 26)
    clash = [*r, Redating("NIFTY", date(2026, 3, 31), date(2026, 4, 7), date(2025, 12, 29))]
    with pytest.raises(ValueError, match="several expiries"):
        redated_expiry(clash, "NIFTY", date(2026, 3, 31), date(2026, 1, 2))


def test_detect_redatings_ignores_a_reused_id_of_an_expired_contract() -> None:
    k = Decimal("25000.00")
    earlier = [ListedContract("NIFTY", date(2025, 9, 25), "CE", k, "64694", "NIFTY25SEP25000CE"),
               ListedContract("NIFTY", date(2025, 8, 28), "CE", k, "71974", "NIFTY25AUG25000CE")]
    later = [ListedContract("NIFTY", date(2025, 9, 30), "CE", k, "64694", "NIFTY25SEP25000CE"),
             # id 71974 reused by a new contract after the 28-Aug expiry: no re-dating
             ListedContract("NIFTY", date(2025, 10, 7), "CE", k, "71974", "NIFTY25O0725000CE")]
    found = detect_redatings(earlier, later, date(2025, 8, 29))
    assert found == {("NIFTY", date(2025, 9, 25), date(2025, 9, 30)): (1, "NIFTY25SEP25000CE")}


def test_the_replay_prices_a_leg_held_across_the_redating_every_day(pool) -> None:
    """The replay's sessions (eod_data.group_days with the recorded re-datings) find the leg
    under the id it was opened with, at the re-dated contract's own settle price."""
    from engine.backtest.eod_data import contract_id, group_days, load_rows

    ingest_file(pool, require_shared_data(FULL_0228))
    for d in ("20250825", "20250828", "20250902", "20250905"):
        ingest_file(pool, require_shared_data(FILTERED, f"BhavCopy_NSE_FO_0_0_0_{d}_F_0000.csv"))
    rows = load_rows(pool, date(2025, 2, 1), date(2025, 9, 30))
    held = contract_id(date(2025, 9, 25), 25000, "CE")
    plain = group_days(rows)
    assert [d for d in plain if held in plain[d].contracts] == [date(2025, 2, 28)]
    days = group_days(rows, load_redatings(pool, "NIFTY"))
    assert len(days) == 5
    for d, day in days.items():
        c = day.contracts[held]
        assert c.settle is not None and c.settle > 0, d
        assert c.expiry == (date(2025, 9, 25) if d == date(2025, 2, 28) else date(2025, 9, 30))
        assert c is day.contracts[contract_id(c.expiry, 25000, "CE")]  # the same contract
