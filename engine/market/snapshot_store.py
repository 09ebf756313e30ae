"""Persist IV surface samples to ``iv_snapshots`` (the only I/O in engine.market).

Units in the table: IV columns (near/far ATM IV, ATM call/put IV, skew) and every IV in the
payload are **annualized percent** (13.25 = 13.25 %), 4 decimals, matching NUMERIC(8,4) and
Dhan's option-chain convention; straddles and realized range are index points (2 decimals).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.market.surface import IvSurface
from engine.timeutil import now_ist, to_ist

__all__ = ["prune_iv_snapshots", "record_iv_snapshot"]

logger = logging.getLogger(__name__)

_COLUMNS = (
    "created_at", "trade_date", "spot", "near_expiry", "far_expiry", "near_dte", "far_dte",
    "near_atm_iv", "far_atm_iv", "atm_call_iv", "atm_put_iv", "skew", "near_straddle",
    "far_straddle", "realized_range", "payload",
)


def decimal_or_none(x: float | None, places: int) -> Decimal | None:
    """A finite float as a Decimal with ``places`` decimals; None for None/NaN/inf."""
    return _num(x, places)


def iv_percent(x: float | None) -> Decimal | None:
    """An IV fraction (0.1325) as stored percent (13.2500)."""
    return _iv(x)


def _num(x: float | None, places: int) -> Decimal | None:
    if x is None or not math.isfinite(x):
        return None
    return Decimal(repr(round(float(x), places))).quantize(Decimal(1).scaleb(-places))


def _iv(x: float | None) -> Decimal | None:
    return None if x is None else _num(100.0 * x, 4)


def iv_snapshot_row(surface: IvSurface) -> dict[str, Any]:
    """Column -> value mapping for one iv_snapshots row (no I/O)."""
    spot = _num(surface.spot, 2)
    if spot is None:
        raise ValueError(f"iv snapshot spot {surface.spot!r} is not a finite number")
    return {
        "created_at": to_ist(surface.created_at), "trade_date": surface.trade_date,
        "spot": spot, "near_expiry": surface.near_expiry, "far_expiry": surface.far_expiry,
        "near_dte": surface.near_dte, "far_dte": surface.far_dte,
        "near_atm_iv": _iv(surface.near_atm_iv), "far_atm_iv": _iv(surface.far_atm_iv),
        "atm_call_iv": _iv(surface.atm_call_iv), "atm_put_iv": _iv(surface.atm_put_iv),
        "skew": _iv(surface.skew), "near_straddle": _num(surface.near_straddle, 2),
        "far_straddle": _num(surface.far_straddle, 2),
        "realized_range": _num(surface.realized_range, 2),
        "payload": surface.payload,
    }


def record_iv_snapshot(conn: Any, surface: IvSurface) -> int | None:
    """Insert one iv_snapshots row; returns its id, or None when a sample of the same instant
    is stored already (one sample per scan cycle). The caller owns the transaction."""
    row = iv_snapshot_row(surface)
    values = [Jsonb(row[c]) if c == "payload" else row[c] for c in _COLUMNS]
    sql = (f"INSERT INTO iv_snapshots ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
           " ON CONFLICT (created_at) DO NOTHING RETURNING id")
    with conn.cursor() as cur:
        cur.execute(sql, values)
        got = cur.fetchone()
    if got is None:
        logger.debug("iv snapshot of %s already recorded", row["created_at"])
        return None
    new_id = int(got["id"] if isinstance(got, dict) else got[0])
    logger.debug("iv snapshot %s recorded for %s", new_id, surface.trade_date)
    return new_id


def prune_iv_snapshots(conn: Any, older_than_days: int = 180,
                       now: datetime | None = None) -> int:
    """Delete iv_snapshots rows created more than ``older_than_days`` before ``now``.

    Returns:
        Number of rows deleted.
    """
    if older_than_days < 0:
        raise ValueError(f"older_than_days must be >= 0, got {older_than_days}")
    cutoff = to_ist(now or now_ist()) - timedelta(days=older_than_days)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM iv_snapshots WHERE created_at < %s", (cutoff,))
        deleted = cur.rowcount
    if deleted:
        logger.info("pruned %d iv_snapshots older than %s", deleted, cutoff.isoformat())
    return int(deleted)
