"""futures_id_cache refresh: NIFTY near/far futures security ids from the instrument master."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from engine.broker.dhan.instruments import Instrument, InstrumentMaster, InstrumentNotFound
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FuturesCacheResult:
    """What :func:`refresh_futures_cache` did."""

    refreshed: bool
    reason: str
    near: dict[str, Any]
    far: dict[str, Any]


def read_futures_cache(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """Rows of futures_id_cache keyed by leg (``near``/``far``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT leg, security_id, symbol, expiry, lot_size, refreshed_at "
                    "FROM futures_id_cache")
        return {row["leg"]: row for row in cur.fetchall()}


def _row(leg: str, fut: Instrument, now: datetime) -> dict[str, Any]:
    return {"leg": leg, "security_id": fut.security_id, "symbol": fut.trading_symbol,
            "expiry": fut.expiry, "lot_size": fut.lot_size, "refreshed_at": now}


def refresh_futures_cache(conn: psycopg.Connection[Any], master: InstrumentMaster, today: date,
                          *, now: datetime | None = None) -> FuturesCacheResult:
    """Write near/far NIFTY futures when a row is missing or the cached near has expired.

    Args:
        conn: connection (the caller owns the transaction).
        master: a fresh instrument master.
        today: the trading day (a contract expiring today is still the near one).
        now: refresh instant (default now in IST).

    Raises:
        StaleInstrumentMaster: ``master`` is older than ``today``.
        InstrumentNotFound: fewer than two futures expire on or after ``today``.
    """
    cached = read_futures_cache(conn)
    near_row = cached.get("near")
    if "near" not in cached or "far" not in cached:
        reason = "missing rows"
    elif near_row is not None and near_row["expiry"] < today:
        reason = f"near contract expired {near_row['expiry']}"
    else:
        return FuturesCacheResult(refreshed=False, reason="cache current",
                                  near=cached["near"], far=cached["far"])
    master.ensure_fresh(today)
    live = master.futures(on_or_after=today)
    if len(live) < 2:
        raise InstrumentNotFound(
            f"instrument master has {len(live)} NIFTY futures expiring on/after {today}; "
            "need near and far")
    stamp = now or now_ist()
    rows = {"near": _row("near", live[0], stamp), "far": _row("far", live[1], stamp)}
    for row in rows.values():
        conn.execute(
            "INSERT INTO futures_id_cache (leg, security_id, symbol, expiry, lot_size, "
            "refreshed_at) VALUES (%(leg)s, %(security_id)s, %(symbol)s, %(expiry)s, "
            "%(lot_size)s, %(refreshed_at)s) ON CONFLICT (leg) DO UPDATE SET "
            "security_id = EXCLUDED.security_id, symbol = EXCLUDED.symbol, "
            "expiry = EXCLUDED.expiry, lot_size = EXCLUDED.lot_size, "
            "refreshed_at = EXCLUDED.refreshed_at", row)
    logger.info("futures_id_cache refreshed (%s): near %s %s, far %s %s", reason,
                rows["near"]["symbol"], rows["near"]["expiry"], rows["far"]["symbol"],
                rows["far"]["expiry"])
    return FuturesCacheResult(refreshed=True, reason=reason, near=rows["near"], far=rows["far"])
