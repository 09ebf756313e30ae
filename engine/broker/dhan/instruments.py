"""Dhan instrument master: download, parse (compact or detailed CSV), look up NIFTY contracts.

Headers and gotchas are in reference §9: the compact file (``SEM_*`` columns) and the
detailed file (``SECURITY_ID``, ``UNDERLYING_SYMBOL``, ``SM_FREEZE_QTY`` ...) are both
accepted, recognised by their header. Blank ``SM_SYMBOL_NAME`` on compact derivative rows
(underlying taken from the trading symbol), detailed ``UNDERLYING_SECURITY_ID`` 26000 for
NIFTY, tick sizes in paise for derivatives, ``0001-01-01`` / ``XX`` / ``-0.01`` sentinels,
fake ``*NSETEST`` scrips and trailing empty fields are all handled. Only the NIFTY index,
NIFTY index futures and NIFTY index options of NSE are kept.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import requests

from engine.timeutil import IST

logger = logging.getLogger(__name__)

NIFTY_INDEX_ID = "13"
_KEEP = ("INDEX", "FUTIDX", "OPTIDX")

_COMPACT = {"exchange": "SEM_EXM_EXCH_ID", "segment": "SEM_SEGMENT",
            "security_id": "SEM_SMST_SECURITY_ID", "instrument": "SEM_INSTRUMENT_NAME",
            "trading_symbol": "SEM_TRADING_SYMBOL", "lot_size": "SEM_LOT_UNITS",
            "display_name": "SEM_CUSTOM_SYMBOL", "expiry": "SEM_EXPIRY_DATE",
            "strike": "SEM_STRIKE_PRICE", "option_type": "SEM_OPTION_TYPE",
            "tick_size": "SEM_TICK_SIZE", "expiry_flag": "SEM_EXPIRY_FLAG",
            "symbol_name": "SM_SYMBOL_NAME"}
_DETAILED = {"exchange": "EXCH_ID", "segment": "SEGMENT", "security_id": "SECURITY_ID",
             "instrument": "INSTRUMENT", "trading_symbol": "SYMBOL_NAME",
             "lot_size": "LOT_SIZE", "display_name": "DISPLAY_NAME", "expiry": "SM_EXPIRY_DATE",
             "strike": "STRIKE_PRICE", "option_type": "OPTION_TYPE", "tick_size": "TICK_SIZE",
             "expiry_flag": "EXPIRY_FLAG", "symbol_name": "UNDERLYING_SYMBOL",
             "underlying_id": "UNDERLYING_SECURITY_ID", "freeze_qty": "SM_FREEZE_QTY"}


class StaleInstrumentMaster(RuntimeError):
    """The instrument master is older than the trading day it is used for."""


class InstrumentNotFound(LookupError):
    """No contract matches the lookup."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """One NIFTY contract (or the index) from the master."""

    security_id: str
    exchange: str
    segment: str
    instrument: str
    underlying: str
    trading_symbol: str
    display_name: str
    expiry: date | None
    strike: Decimal | None
    option_type: str | None
    lot_size: int
    tick_size: Decimal
    expiry_flag: str | None
    freeze_qty: int | None
    underlying_security_id: str | None

    @property
    def exchange_segment(self) -> str:
        """Segment enum for orders/quotes: ``IDX_I`` for indices, ``NSE_FNO`` for F&O."""
        return "IDX_I" if self.segment == "I" else f"{self.exchange}_FNO"


def _date(text: str) -> date | None:
    text = (text or "").strip()
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"bad expiry date {text!r} in instrument master") from None


def _decimal(text: str) -> Decimal | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"bad number {text!r} in instrument master") from None


def _parse_row(row: dict[str, Any], cols: dict[str, str], underlying: str) -> Instrument | None:
    def get(name: str) -> str:
        column = cols.get(name)
        value = row.get(column) if column else None
        return value.strip() if isinstance(value, str) else ""

    instrument = get("instrument")
    if get("exchange") != "NSE" or instrument not in _KEEP:
        return None
    symbol = get("trading_symbol")
    if "NSETEST" in symbol.upper():
        return None
    name = get("symbol_name") or symbol.split("-")[0]
    if instrument == "INDEX":
        if name != underlying and symbol != underlying:
            return None
    elif symbol.split("-")[0] != underlying and name != underlying:
        return None
    segment = get("segment")
    tick = _decimal(get("tick_size")) or Decimal("0.05")
    if segment != "I":
        tick = tick / 100  # derivatives quote tick size in paise
    strike = _decimal(get("strike"))
    option_type = get("option_type").upper()
    freeze = _decimal(get("freeze_qty"))
    return Instrument(
        security_id=get("security_id"), exchange="NSE", segment=segment, instrument=instrument,
        underlying=underlying, trading_symbol=symbol, display_name=get("display_name"),
        expiry=_date(get("expiry")),
        strike=strike if strike is not None and strike > 0 else None,
        option_type=option_type if option_type in ("CE", "PE") else None,
        lot_size=int(_decimal(get("lot_size")) or 1), tick_size=tick,
        expiry_flag=get("expiry_flag") or None,
        freeze_qty=int(freeze) if freeze else None,
        underlying_security_id=get("underlying_id") or None)


class InstrumentMaster:
    """The NIFTY part of Dhan's instrument master as of one date.

    Args:
        instruments: parsed rows.
        as_of: the date the master was fetched (used by :meth:`ensure_fresh`).
        source: where it came from (for messages).
    """

    def __init__(self, instruments: list[Instrument], as_of: date, source: str = "") -> None:
        self.as_of = as_of
        self.source = source
        self._by_id = {i.security_id: i for i in instruments}
        self._options: dict[tuple[date, Decimal, str], Instrument] = {}
        self._futures: list[Instrument] = []
        self._index: Instrument | None = None
        for inst in instruments:
            if inst.instrument == "OPTIDX" and inst.expiry and inst.strike and inst.option_type:
                self._options[(inst.expiry, inst.strike.normalize(), inst.option_type)] = inst
            elif inst.instrument == "FUTIDX" and inst.expiry:
                self._futures.append(inst)
            elif inst.instrument == "INDEX" and (self._index is None
                                                 or inst.security_id == NIFTY_INDEX_ID):
                self._index = inst
        self._futures.sort(key=lambda i: i.expiry or date.min)

    def __len__(self) -> int:
        return len(self._by_id)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_csv_text(cls, text: str, as_of: date, *, underlying: str = "NIFTY",
                      source: str = "text") -> InstrumentMaster:
        """Parse compact or detailed CSV text.

        Raises:
            ValueError: the header is neither the compact nor the detailed form.
        """
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        if "SEM_SMST_SECURITY_ID" in header:
            cols = _COMPACT
        elif "SECURITY_ID" in header and "EXCH_ID" in header:
            cols = _DETAILED
        else:
            raise ValueError(f"{source}: not a Dhan instrument master (header starts "
                             f"{header[:4]}); expected SEM_* (compact) or EXCH_ID,SEGMENT,"
                             "SECURITY_ID (detailed)")
        rows = [inst for row in reader if (inst := _parse_row(row, cols, underlying))]
        logger.info("instrument master %s as of %s: %d %s rows", source, as_of, len(rows),
                    underlying)
        return cls(rows, as_of, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str], as_of: date | None = None) -> InstrumentMaster:
        """Read a saved CSV; ``as_of`` defaults to the file's modification date (IST)."""
        p = Path(path)
        if as_of is None:
            as_of = datetime.fromtimestamp(p.stat().st_mtime, IST).date()
        return cls.from_csv_text(p.read_text(encoding="utf-8"), as_of, source=str(p))

    @classmethod
    def download(cls, url: str, *, as_of: date | None = None, save_to: str | None = None,
                 timeout: float = 60.0,
                 session: requests.Session | None = None) -> InstrumentMaster:
        """Download the CSV (``DHAN_INSTRUMENTS_URL``); ``as_of`` defaults to today in IST.

        Raises:
            requests.HTTPError: the download failed.
        """
        http = session or requests.Session()
        resp = http.get(url, timeout=timeout)
        resp.raise_for_status()
        text = resp.content.decode("utf-8-sig")
        if save_to:
            Path(save_to).write_text(text, encoding="utf-8")
        return cls.from_csv_text(text, as_of or datetime.now(IST).date(), source=url)

    def ensure_fresh(self, trading_day: date) -> None:
        """Refuse a master older than ``trading_day``.

        Raises:
            StaleInstrumentMaster: with the two dates and what to do.
        """
        if self.as_of < trading_day:
            raise StaleInstrumentMaster(
                f"instrument master from {self.as_of} ({self.source or 'unknown source'}) is "
                f"older than trading day {trading_day}: download a fresh one before trading")

    # ---------------------------------------------------------------- lookups
    def nifty_index(self) -> Instrument:
        """The NIFTY 50 index row (``IDX_I`` 13)."""
        if self._index is None:
            raise InstrumentNotFound("instrument master has no NIFTY index row")
        return self._index

    def by_security_id(self, security_id: str | int) -> Instrument:
        """Any kept instrument by security id."""
        try:
            return self._by_id[str(security_id)]
        except KeyError:
            raise InstrumentNotFound(f"security id {security_id} not in the master") from None

    def futures(self, on_or_after: date | None = None) -> list[Instrument]:
        """NIFTY futures by expiry (only those expiring on/after ``on_or_after``)."""
        return [f for f in self._futures if on_or_after is None or f.expiry >= on_or_after]

    def future(self, expiry: date) -> Instrument:
        """The NIFTY future of ``expiry``."""
        for fut in self._futures:
            if fut.expiry == expiry:
                return fut
        known = ", ".join(str(f.expiry) for f in self._futures) or "none"
        raise InstrumentNotFound(f"no NIFTY future expiring {expiry} (known: {known})")

    def option(self, expiry: date, strike: Decimal | float | int, option_type: str) -> Instrument:
        """The NIFTY option of ``(expiry, strike, CE|PE)``."""
        side = option_type.upper()
        if side not in ("CE", "PE"):
            raise ValueError(f"option_type must be CE or PE, got {option_type!r}")
        key = (expiry, Decimal(str(strike)).normalize(), side)
        try:
            return self._options[key]
        except KeyError:
            raise InstrumentNotFound(f"no NIFTY {side} {strike} expiring {expiry}") from None

    def options(self, expiry: date) -> list[Instrument]:
        """All options of ``expiry`` sorted by strike then side."""
        return sorted((o for k, o in self._options.items() if k[0] == expiry),
                      key=lambda o: (o.strike, o.option_type))

    def option_expiries(self, on_or_after: date | None = None) -> list[date]:
        """Distinct option expiries, ascending."""
        return sorted({k[0] for k in self._options
                       if on_or_after is None or k[0] >= on_or_after})

    def lot_size(self, security_id: str | int | None = None) -> int:
        """Lot size of a contract, or of the nearest future when no id is given."""
        if security_id is not None:
            return self.by_security_id(security_id).lot_size
        if not self._futures:
            raise InstrumentNotFound("no NIFTY futures in the master to read a lot size from")
        return self._futures[0].lot_size

    def freeze_quantity(self, security_id: str | int) -> int | None:
        """Exchange freeze quantity (only the detailed master carries it; else ``None``)."""
        return self.by_security_id(security_id).freeze_qty
