"""Render the simulated market's instruments as Dhan's compact or detailed master CSV."""

from __future__ import annotations

import csv
import io

from engine.dhan_sim.market import InstrumentRow

COMPACT_HEADER = ("SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,"
                  "SEM_EXPIRY_CODE,SEM_TRADING_SYMBOL,SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,"
                  "SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,SEM_OPTION_TYPE,SEM_TICK_SIZE,"
                  "SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,SM_SYMBOL_NAME")
DETAILED_HEADER = ("EXCH_ID,SEGMENT,SECURITY_ID,ISIN,INSTRUMENT,UNDERLYING_SECURITY_ID,"
                   "UNDERLYING_SYMBOL,SYMBOL_NAME,DISPLAY_NAME,INSTRUMENT_TYPE,SERIES,LOT_SIZE,"
                   "SM_EXPIRY_DATE,STRIKE_PRICE,OPTION_TYPE,TICK_SIZE,EXPIRY_FLAG,BRACKET_FLAG,"
                   "COVER_FLAG,ASM_GSM_FLAG,ASM_GSM_CATEGORY,BUY_SELL_INDICATOR,"
                   "BUY_CO_MIN_MARGIN_PER,BUY_CO_SL_RANGE_MAX_PERC,BUY_CO_SL_RANGE_MIN_PERC,"
                   "BUY_BO_MIN_MARGIN_PER,BUY_BO_PROFIT_RANGE_MAX_PERC,"
                   "BUY_BO_PROFIT_RANGE_MIN_PERC,MTF_LEVERAGE,SM_UPPER_LIMIT,SM_LOWER_LIMIT,"
                   "SM_FREEZE_QTY")
_TYPE = {"INDEX": "INDEX", "FUTIDX": "FUT", "OPTIDX": "OP"}


def _strike(row: InstrumentRow) -> str:
    if row.instrument == "INDEX":
        return ""
    return f"{row.strike:.5f}" if row.strike is not None else "-0.01000"


def compact_csv(rows: list[InstrumentRow]) -> str:
    """Compact master (``api-scrip-master.csv``): blank SM_SYMBOL_NAME on derivatives."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    out.write(COMPACT_HEADER + "\n")
    for r in rows:
        index = r.instrument == "INDEX"
        writer.writerow([
            "NSE", "I" if index else "D", r.security_id, r.instrument, 0, r.trading_symbol,
            f"{float(r.lot_size):.1f}", r.display_name,
            "0001-01-01" if index else f"{r.expiry:%Y-%m-%d} 14:30:00", _strike(r),
            r.option_type or "XX", "0.0500" if index else "5.0000", r.expiry_flag or "",
            _TYPE[r.instrument], "X" if index else "", "NIFTY" if index else ""])
    return out.getvalue()


def detailed_csv(rows: list[InstrumentRow]) -> str:
    """Detailed master (``api-scrip-master-detailed.csv``), with the trailing empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    out.write(DETAILED_HEADER + "\n")
    for r in rows:
        index = r.instrument == "INDEX"
        writer.writerow([
            "NSE", "I" if index else "D", r.security_id, "NA", r.instrument,
            13 if index else 26000, "NIFTY", r.trading_symbol, r.display_name,
            _TYPE[r.instrument], "NA", f"{float(r.lot_size):.1f}",
            "0001-01-01" if index else f"{r.expiry:%Y-%m-%d}", _strike(r),
            r.option_type or "XX", "0.0500" if index else "5.0000", r.expiry_flag or "N",
            "N", "N", "N", "NA", "A", 0, 0, 0, 0, 0, 0, 0, "0.0000", "0.0000",
            r.freeze_qty or 0, ""])
    return out.getvalue()
