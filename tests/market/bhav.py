"""Tiny UDiFF / legacy bhavcopy reader for the market tests (zipfile + csv, no pandas)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path


def udiff_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a UDiFF F&O bhavcopy (.csv.zip or filtered .csv), header by name."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as raw:
            yield from csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
    else:
        with path.open(encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh)


def nifty_options(path: Path) -> Iterator[dict[str, str]]:
    """NIFTY index-option (IDO) rows of a UDiFF file."""
    for row in udiff_rows(path):
        if row["TckrSymb"] == "NIFTY" and row["FinInstrmTp"] == "IDO":
            yield row


def legacy_nifty_expiries(path: Path) -> tuple[date, set[date]]:
    """(trade date, NIFTY OPTIDX expiries) of a legacy fo*bhav.csv file."""
    expiries: set[date] = set()
    trade = None
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["INSTRUMENT"] == "OPTIDX" and row["SYMBOL"] == "NIFTY":
                expiries.add(datetime.strptime(row["EXPIRY_DT"], "%d-%b-%Y").date())
                trade = datetime.strptime(row["TIMESTAMP"], "%d-%b-%Y").date()
    assert trade is not None, f"no NIFTY options in {path}"
    return trade, expiries
