"""NSE F&O bhavcopy parser: UDiFF (both header variants) and the legacy ``fo*bhav.csv`` format.

Pure: bytes or a path in, typed rows out; no database. Columns are read by name, so the
UDiFF ``Rsvd01..04`` header (files 2024-01-01 … 2024-06-20) and ``Rsvd1..4`` (from
2024-06-21) parse alike. Kept: NIFTY and BANKNIFTY index options and futures (UDiFF
``IDO``/``IDF``, legacy ``OPTIDX``/``FUTIDX``); futures carry the sentinels of
``bhavcopy_ohlc``: option type ``FUT``, strike 0. Formats: ../shared/reference/nse-data.md §1.

A malformed file (not a zip / truncated zip, an unknown header, a short row, a non-numeric
number, a date that is not one) raises :class:`BhavcopyError` naming the file, the line and
the column. Rows of other underlyings are only checked for their field count (their numbers
are not read).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_LEGACY", "FORMAT_UDIFF_RSVD01", "FORMAT_UDIFF_RSVD1", "KEEP_SYMBOLS",
           "BhavRow", "BhavcopyError", "FileSummary", "ParsedFile", "inspect_bytes", "parse_bytes",
           "parse_path", "read_csv_text"]

FORMAT_UDIFF_RSVD1 = "UDiFF (Rsvd1)"
FORMAT_UDIFF_RSVD01 = "UDiFF (Rsvd01)"
FORMAT_LEGACY = "legacy"
KEEP_SYMBOLS = frozenset({"NIFTY", "BANKNIFTY"})

_UDIFF_BASE = ("TradDt", "BizDt", "Sgmt", "Src", "FinInstrmTp", "FinInstrmId", "ISIN", "TckrSymb",
               "SctySrs", "XpryDt", "FininstrmActlXpryDt", "StrkPric", "OptnTp", "FinInstrmNm",
               "OpnPric", "HghPric", "LwPric", "ClsPric", "LastPric", "PrvsClsgPric", "UndrlygPric",
               "SttlmPric", "OpnIntrst", "ChngInOpnIntrst", "TtlTradgVol", "TtlTrfVal",
               "TtlNbOfTxsExctd", "SsnId", "NewBrdLotQty", "Rmks")
_RSVD1 = ("Rsvd1", "Rsvd2", "Rsvd3", "Rsvd4")
_RSVD01 = ("Rsvd01", "Rsvd02", "Rsvd03", "Rsvd04")
#: columns the parser reads (the others may move or go without harm)
_UDIFF_NEEDED = ("TradDt", "FinInstrmTp", "FinInstrmId", "TckrSymb", "XpryDt", "StrkPric",
                 "OptnTp", "FinInstrmNm", "OpnPric", "HghPric", "LwPric", "ClsPric",
                 "UndrlygPric", "SttlmPric", "OpnIntrst", "ChngInOpnIntrst", "TtlTradgVol",
                 "NewBrdLotQty")
_LEGACY_NEEDED = ("INSTRUMENT", "SYMBOL", "EXPIRY_DT", "STRIKE_PR", "OPTION_TYP", "OPEN", "HIGH",
                  "LOW", "CLOSE", "SETTLE_PR", "CONTRACTS", "OPEN_INT", "CHG_IN_OI", "TIMESTAMP")
_UDIFF_KEEP_TYPES = {"IDO": "option", "IDF": "future"}
_LEGACY_KEEP_TYPES = {"OPTIDX": "option", "FUTIDX": "future"}
_NAME_DATE = re.compile(r"(?:BhavCopy_NSE_FO_0_0_0_(\d{8})_F_0000|fo(\d{2}[A-Za-z]{3}\d{4})bhav)")


class BhavcopyError(ValueError):
    """A bhavcopy file that cannot be read; ``str()`` names the file, line and column."""

    def __init__(self, source: str, message: str, *, line: int | None = None,
                 column: str | None = None) -> None:
        where = source
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")
        self.source, self.line, self.column, self.reason = source, line, column, message


@dataclass(frozen=True, slots=True)
class BhavRow:
    """One NIFTY/BANKNIFTY contract on one trade date (a ``bhavcopy_ohlc`` row)."""

    trade_date: date
    symbol: str
    expiry: date
    option_type: str                 # CE, PE or FUT
    strike: Decimal                  # 0 for futures
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None            # ClsPric / CLOSE
    settle: Decimal | None           # SttlmPric / SETTLE_PR
    underlying: Decimal | None       # UndrlygPric (index close); None in legacy files
    open_interest: int | None        # units
    oi_change: int | None            # units
    volume: int | None               # contracts (TtlTradgVol / CONTRACTS)
    lot_size: int | None             # NewBrdLotQty; None in legacy files
    instrument_id: str | None        # FinInstrmId; None in legacy files
    contract_name: str | None        # FinInstrmNm; None in legacy files

    @property
    def key(self) -> tuple[date, str, date, str, Decimal]:
        """The ``bhavcopy_ohlc`` primary key."""
        return (self.trade_date, self.symbol, self.expiry, self.option_type, self.strike)


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A parsed bhavcopy: its format, trade date, kept rows and how many rows it had."""

    source: str
    format: str
    header: tuple[str, ...]
    trade_date: date
    rows: tuple[BhavRow, ...]
    total_rows: int


@dataclass(frozen=True, slots=True)
class FileSummary:
    """What ``--inspect-header`` prints: header, format, rows per instrument type/underlying."""

    source: str
    format: str
    header: tuple[str, ...]
    trade_dates: tuple[date, ...]
    total_rows: int
    by_type: dict[str, int] = field(default_factory=dict)
    by_underlying: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, symbol)
    kept_rows: int = 0


def read_csv_text(data: bytes, source: str) -> str:
    """The CSV text of a bhavcopy: the single ``.csv`` member of a zip, or the bytes as text.

    Raises:
        BhavcopyError: a truncated or corrupt zip, a zip without exactly one csv, bad UTF-8.
    """
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = [n for n in zf.namelist() if n.lower().endswith(".csv")]
                if len(members) != 1:
                    raise BhavcopyError(source, f"expected one .csv member in the zip, found "
                                        f"{len(members)} ({', '.join(zf.namelist()) or 'none'})")
                raw = zf.read(members[0])
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise BhavcopyError(source, f"truncated or corrupt zip ({exc})") from None
    elif source.lower().endswith(".zip"):
        raise BhavcopyError(source, "not a zip file (no PK signature): an HTML error page or "
                            "a truncated download?")
    else:
        raw = data
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BhavcopyError(source, f"not UTF-8 text ({exc})") from None


def detect_format(header: list[str] | tuple[str, ...], source: str) -> str:
    """The format of a header row (names compared stripped).

    Raises:
        BhavcopyError: neither UDiFF nor legacy, or a needed column is missing.
    """
    names = [h.strip() for h in header]
    if names and names[-1] == "":  # the legacy header ends with a comma
        names = names[:-1]
    have = set(names)
    if "TradDt" in have or "FinInstrmTp" in have:
        missing = [c for c in _UDIFF_NEEDED if c not in have]
        if missing:
            raise BhavcopyError(source, f"UDiFF header without {', '.join(missing)}", line=1)
        if set(_RSVD01) <= have:
            return FORMAT_UDIFF_RSVD01
        return FORMAT_UDIFF_RSVD1
    if "INSTRUMENT" in have:
        missing = [c for c in _LEGACY_NEEDED if c not in have]
        if missing:
            raise BhavcopyError(source, f"legacy header without {', '.join(missing)}", line=1)
        return FORMAT_LEGACY
    shown = ",".join(names[:6]) + ("…" if len(names) > 6 else "")
    raise BhavcopyError(source, f"unknown header {shown!r}: expected a UDiFF F&O bhavcopy "
                        "(TradDt,BizDt,…) or a legacy fo*bhav.csv (INSTRUMENT,SYMBOL,…)", line=1)


_DATES: dict[tuple[str, str], date] = {}  # parsed date strings (few distinct per file)


class _Cells:
    """Typed access to one row's fields, errors naming file, line and column."""

    __slots__ = ("cells", "full", "idx", "pos", "source")

    def __init__(self, source: str, idx: dict[str, int]) -> None:
        self.source, self.idx = source, idx
        self.cells: list[str] = []
        self.full: str | None = None  # the file's text: pos is an offset in it, else a line
        self.pos = 0

    @property
    def line(self) -> int:
        return self.pos if self.full is None else self.full.count("\n", 0, self.pos) + 1

    def text(self, col: str) -> str:
        return self.cells[self.idx[col]].strip()

    def fail(self, col: str, what: str) -> BhavcopyError:
        return BhavcopyError(self.source, f"{what} {self.text(col)!r}", line=self.line, column=col)

    def dec(self, col: str, *, required: bool = False) -> Decimal | None:
        s = self.text(col)
        if not s:
            if required:
                raise BhavcopyError(self.source, "empty value", line=self.line, column=col)
            return None
        try:
            v = Decimal(s)
        except InvalidOperation:
            raise self.fail(col, "not a number:") from None
        if not v.is_finite():
            raise self.fail(col, "not a finite number:")
        return v

    def int(self, col: str) -> int | None:
        s = self.text(col)
        if not s:
            return None
        try:
            return int(s)
        except ValueError:
            pass
        v = self.dec(col)  # "1200.00" is an integer written with decimals
        if v is None or v != v.to_integral_value():
            raise self.fail(col, "not an integer:")
        return int(v)

    def day(self, col: str, fmt: str) -> date:
        s = self.text(col)
        d = _DATES.get((s, fmt))
        if d is None:
            try:
                d = (date.fromisoformat(s) if fmt == "%Y-%m-%d" and len(s) == 10
                     else datetime.strptime(s, fmt).date())
            except ValueError:
                raise self.fail(col, f"not a date ({fmt}):") from None
            if len(_DATES) < 10_000:
                _DATES[(s, fmt)] = d
        return d


def _header_and_rows(text: str, source: str) -> tuple[list[str], Any]:
    """The header cells and a csv reader over the data rows (line numbers from 2)."""
    cut = text.find("\n")
    first = text if cut == -1 else text[:cut]
    if not first.strip():
        raise BhavcopyError(source, "empty file (no header)", line=1)
    try:
        header = next(csv.reader([first]))
    except csv.Error as exc:
        raise BhavcopyError(source, f"unreadable CSV ({exc})", line=1) from None
    reader = _Reader(text[cut + 1:] if cut != -1 else "")
    return header, reader


class _Reader:
    """csv.reader over the data rows with ``line_num`` counted from the file's first line."""

    def __init__(self, body: str) -> None:
        self._r = csv.reader(io.StringIO(body, newline=""))

    @property
    def line_num(self) -> int:
        return self._r.line_num + 1

    def __iter__(self) -> Any:
        return iter(self._r)


def _split(line: str, source: str, number: int) -> list[str]:
    try:
        return next(csv.reader([line]))
    except (csv.Error, StopIteration) as exc:
        raise BhavcopyError(source, f"unreadable CSV ({exc})", line=number) from None


def _index(header: list[str]) -> dict[str, int]:
    return {h.strip(): i for i, h in enumerate(header) if h.strip()}


def _file_date(source: str) -> date | None:
    m = _NAME_DATE.search(Path(source).name)
    if not m:
        return None
    if m.group(1):
        return datetime.strptime(m.group(1), "%Y%m%d").date()
    return datetime.strptime(m.group(2), "%d%b%Y").date()


def parse_bytes(data: bytes, source: str, *, symbols: frozenset[str] = KEEP_SYMBOLS) -> ParsedFile:
    """Parse a bhavcopy (zip or csv bytes) into typed rows of ``symbols``' index contracts.

    Raises:
        BhavcopyError: the file is malformed (the message names file, line and column), has
            no row at all, mixes trade dates, or its trade date differs from its file name's.
    """
    return parse_text(read_csv_text(data, source), source, symbols=symbols)


def parse_path(path: Path | str, *, symbols: frozenset[str] = KEEP_SYMBOLS) -> ParsedFile:
    """:func:`parse_bytes` of a file on disk."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BhavcopyError(str(p), f"cannot read ({exc.strerror or exc})") from None
    return parse_bytes(data, str(p), symbols=symbols)


def parse_text(text: str, source: str, *, symbols: frozenset[str] = KEEP_SYMBOLS) -> ParsedFile:
    """Parse the CSV text of a bhavcopy (see :func:`parse_bytes`)."""
    header, _ = _header_and_rows(text, source)
    fmt = detect_format(header, source)
    idx = _index(header)
    width = len(header)
    c = _Cells(source, idx)
    rows: list[BhavRow] = []
    total = 0
    trade_dates: set[date] = set()
    legacy = fmt == FORMAT_LEGACY
    tp_col, sym_col = ("INSTRUMENT", "SYMBOL") if legacy else ("FinInstrmTp", "TckrSymb")
    keep_types = _LEGACY_KEEP_TYPES if legacy else _UDIFF_KEEP_TYPES
    tp_i, sym_i = idx[tp_col], idx[sym_col]
    marks = tuple(f",{sym}," for sym in symbols)

    def keep(cells: list[str]) -> None:
        kind = keep_types.get(cells[tp_i].strip())
        if kind is None or cells[sym_i].strip() not in symbols:
            return
        c.cells = cells
        row = _legacy_row(c, kind) if legacy else _udiff_row(c, kind)
        if row is not None:
            rows.append(row)
            trade_dates.add(row.trade_date)

    body_at = text.find("\n") + 1 if "\n" in text else len(text)
    end = len(text.rstrip("\n"))
    n_lines = text.count("\n", body_at, end) + 1 if end > body_at else 0
    fast = ('"' not in text and "\r" not in text and "\n\n" not in text[body_at:end]
            and text.count(",", body_at, end) == (width - 1) * n_lines)
    if fast:
        # every row has the header's field count: only the rows of the kept underlyings
        # (found by their ",SYMBOL," cell) are split and typed; line numbers on demand
        c.full = text
        starts: set[int] = set()
        for mark in marks:
            i = text.find(mark, body_at)
            while i != -1:
                starts.add(text.rfind("\n", 0, i) + 1)
                i = text.find(mark, i + 1)
        total = n_lines
        for start in sorted(starts):
            stop = text.find("\n", start)
            cells = text[start:stop if stop != -1 else len(text)].split(",")
            if len(cells) != width:  # a short row balanced by a long one
                fast = False
                break
            c.pos = start
            keep(cells)
    if not fast:
        rows.clear()
        trade_dates.clear()
        total = 0
        c.full = None
        for line, text_line in enumerate(text.splitlines()[1:], start=2):
            if not text_line.strip():
                continue
            cells = _split(text_line, source, line) if '"' in text_line else text_line.split(",")
            if len(cells) != width:
                raise BhavcopyError(source, f"{len(cells)} fields, the header has {width} "
                                    "(a truncated or shifted row)", line=line)
            total += 1
            c.pos = line
            keep(cells)
    if total == 0:
        raise BhavcopyError(source, "no data rows after the header", line=2)
    if len(trade_dates) > 1:
        shown = ", ".join(str(d) for d in sorted(trade_dates))
        raise BhavcopyError(source, f"rows of several trade dates ({shown}) in one file")
    trade = next(iter(trade_dates), None) or _first_date(text, source, fmt)
    named = _file_date(source)
    if named is not None and named != trade:
        raise BhavcopyError(source, f"trade date {trade} in the rows but {named} in the file name")
    return ParsedFile(source=source, format=fmt, header=tuple(h.strip() for h in header),
                      trade_date=trade, rows=tuple(rows), total_rows=total)


def _first_date(text: str, source: str, fmt: str) -> date:
    """The trade date of a file none of whose rows was kept (from its first data row)."""
    header, reader = _header_and_rows(text, source)
    c = _Cells(source, _index(header))
    for cells in reader:
        if cells:
            c.cells, c.pos = cells, reader.line_num
            return c.day("TIMESTAMP", "%d-%b-%Y") if fmt == FORMAT_LEGACY else c.day("TradDt",
                                                                                     "%Y-%m-%d")
    raise BhavcopyError(source, "no data rows after the header", line=2)


def _option_type(c: _Cells, col: str, kind: str, legacy: bool) -> str | None:
    raw = c.text(col)
    if kind == "future":
        if raw not in ("", "XX"):
            raise c.fail(col, "a future with option type")
        return "FUT"
    if raw in ("CE", "PE"):
        return raw
    if legacy and raw in ("CA", "PA"):  # American-style options of very old files: not kept
        return None
    raise c.fail(col, "option type not CE/PE:")


def _udiff_row(c: _Cells, kind: str) -> BhavRow | None:
    otype = _option_type(c, "OptnTp", kind, legacy=False)
    if otype is None:
        return None
    strike = D0 if otype == "FUT" else c.dec("StrkPric", required=True)
    return BhavRow(
        trade_date=c.day("TradDt", "%Y-%m-%d"), symbol=c.text("TckrSymb"),
        expiry=c.day("XpryDt", "%Y-%m-%d"), option_type=otype,
        strike=(strike or D0).quantize(CENT),
        open=c.dec("OpnPric"), high=c.dec("HghPric"), low=c.dec("LwPric"),
        close=c.dec("ClsPric"), settle=c.dec("SttlmPric"), underlying=c.dec("UndrlygPric"),
        open_interest=c.int("OpnIntrst"), oi_change=c.int("ChngInOpnIntrst"),
        volume=c.int("TtlTradgVol"), lot_size=c.int("NewBrdLotQty"),
        instrument_id=c.text("FinInstrmId") or None, contract_name=c.text("FinInstrmNm") or None)


def _legacy_row(c: _Cells, kind: str) -> BhavRow | None:
    otype = _option_type(c, "OPTION_TYP", kind, legacy=True)
    if otype is None:
        return None
    strike = D0 if otype == "FUT" else c.dec("STRIKE_PR", required=True)
    return BhavRow(
        trade_date=c.day("TIMESTAMP", "%d-%b-%Y"), symbol=c.text("SYMBOL"),
        expiry=c.day("EXPIRY_DT", "%d-%b-%Y"), option_type=otype,
        strike=(strike or D0).quantize(CENT),
        open=c.dec("OPEN"), high=c.dec("HIGH"), low=c.dec("LOW"), close=c.dec("CLOSE"),
        settle=c.dec("SETTLE_PR"), underlying=None,
        open_interest=c.int("OPEN_INT"), oi_change=c.int("CHG_IN_OI"),
        volume=c.int("CONTRACTS"), lot_size=None, instrument_id=None, contract_name=None)


D0 = Decimal(0)
CENT = Decimal("0.01")


def inspect_bytes(data: bytes, source: str) -> FileSummary:
    """Header, format and row counts per instrument type and (type, underlying) of a file,
    for ``download --inspect-header``; the kept rows are fully parsed (so a malformed one is
    reported the same way an import would).

    Raises:
        BhavcopyError: as :func:`parse_bytes`.
    """
    text = read_csv_text(data, source)
    parsed = parse_text(text, source)
    header, reader = _header_and_rows(text, source)
    idx = _index(header)
    legacy = parsed.format == FORMAT_LEGACY
    tp_i = idx["INSTRUMENT" if legacy else "FinInstrmTp"]
    sym_i = idx["SYMBOL" if legacy else "TckrSymb"]
    by_type: Counter[str] = Counter()
    by_und: Counter[tuple[str, str]] = Counter()
    for cells in reader:
        if len(cells) != len(header):
            continue
        tp, sym = cells[tp_i].strip(), cells[sym_i].strip()
        by_type[tp] += 1
        by_und[(tp, sym)] += 1
    return FileSummary(source=source, format=parsed.format, header=parsed.header,
                       trade_dates=(parsed.trade_date,), total_rows=parsed.total_rows,
                       by_type=dict(by_type.most_common()),
                       by_underlying=dict(sorted(by_und.items(), key=lambda kv: (-kv[1], kv[0]))),
                       kept_rows=len(parsed.rows))
