"""Backfill ``trade_journal`` for closed trades that lack a row or fields (the seeds' "rows
are written at close and can be backfilled from closed_trades, iv_snapshots,
strategy_battle_log and ai_market_analysis").

For each ``closed_trades`` row with ``trade_date`` in the range (the latest close of a tag
when a tag closed on several days):

* no journal row: one is inserted from the close (trade payload, realized P&L, exit reason,
  MFE / MAE from the payload, the trade's context as ``selection_context``);
* every journal column that is NULL (or an empty JSON value) is filled, never overwritten:
  ``entry_spot`` / ``entry_iv`` (near ATM IV) / ``skew`` from the last ``iv_snapshots`` row at
  or before the open (else the first after it, the same day), ``exit_spot`` / ``exit_iv`` from
  the last row at or before the close; ``rejected_strategies`` from the last
  ``strategy_battle_log`` row at or before the open (every other strategy's eligibility and
  reasons); ``ai_verdict`` from the last ``ai_market_analysis`` verdict of the entry day at or
  before the open (else that day's first).

Idempotent: a second run finds nothing to fill and writes nothing (rows compare equal,
``updated_at`` included). Each trade is one transaction; the source of every filled field is
recorded in ``selection_context.backfill``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from engine.store.tx import transaction
from engine.timeutil import IST

_SNAP = ("SELECT spot, near_atm_iv, skew, created_at FROM iv_snapshots WHERE trade_date = %s"
         " AND created_at {op} %s ORDER BY created_at {order} LIMIT 1")


@dataclass
class BackfillResult:
    """What a run did: trades seen, rows inserted, rows with fields filled (tag -> fields)."""

    seen: int = 0
    inserted: list[str] = field(default_factory=list)
    filled: dict[str, list[str]] = field(default_factory=dict)

    def text(self) -> str:
        return (f"journal backfill: {self.seen} closed trade(s), {len(self.inserted)} row(s) "
                f"inserted, {len(self.filled)} row(s) with fields filled")


def _empty(v: Any) -> bool:
    return v is None or v == {} or v == []


def _snapshot(conn: Any, day: date, at: Any, *, after_ok: bool) -> dict[str, Any] | None:
    row = conn.execute(_SNAP.format(op="<=", order="DESC"), (day, at)).fetchone()
    if row is None and after_ok:
        row = conn.execute(_SNAP.format(op=">", order="ASC"), (day, at)).fetchone()
    return row


def _rejected(conn: Any, day: date, at: Any, strategy: str) -> list[dict[str, Any]] | None:
    row = conn.execute(
        "SELECT eligibility, rejections FROM strategy_battle_log WHERE trade_date = %s AND"
        " created_at <= %s ORDER BY created_at DESC LIMIT 1", (day, at)).fetchone()
    if row is None:
        return None
    elig, rej = dict(row["eligibility"] or {}), dict(row["rejections"] or {})
    out = []
    for name in sorted(set(elig) | set(rej)):
        if name == strategy:
            continue
        reasons = rej.get(name)
        out.append({"strategy": name, "eligible": bool(elig.get(name, False)),
                    "reasons": list(reasons) if isinstance(reasons, list | tuple)
                    else ([str(reasons)] if reasons else [])})
    return out


def _verdict(conn: Any, day: date, at: Any) -> str | None:
    row = conn.execute(
        "SELECT verdict FROM ai_market_analysis WHERE trade_date = %s AND verdict IS NOT NULL"
        " ORDER BY (called_at <= %s) DESC, CASE WHEN called_at <= %s THEN called_at END DESC,"
        " called_at ASC LIMIT 1", (day, at, at)).fetchone()
    return row["verdict"] if row else None


def backfill(pool: Any, start: date | None = None, end: date | None = None) -> BackfillResult:
    """Fill ``trade_journal`` for the closed trades of ``start`` .. ``end`` (inclusive; None:
    unbounded). See the module docstring."""
    if start is not None and end is not None and end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    with pool.connection() as conn:
        closes = conn.execute(
            "SELECT DISTINCT ON (tag) * FROM closed_trades WHERE (%(f)s::date IS NULL OR"
            " trade_date >= %(f)s) AND (%(t)s::date IS NULL OR trade_date <= %(t)s)"
            " ORDER BY tag, closed_at DESC", {"f": start, "t": end}).fetchall()
    result = BackfillResult(seen=len(closes))
    for c in closes:
        with transaction(pool) as conn:
            _one(conn, c, result)
    return result


def _one(conn: Any, c: dict[str, Any], result: BackfillResult) -> None:
    tag = c["tag"]
    payload = dict(c["payload"] or {})
    row = conn.execute("SELECT * FROM trade_journal WHERE tag = %s FOR UPDATE",
                       (tag,)).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO trade_journal (tag, trade_date, strategy, trade_payload, realized_pnl,"
            " exit_reason, mfe, mae, selection_context) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
            " %s)",
            (tag, c["trade_date"], c["strategy"], Jsonb(payload), c["realized_pnl"],
             c["exit_reason"], payload.get("mfe"), payload.get("mae"),
             Jsonb({**dict(payload.get("context") or {}), "backfill": {"row": "closed_trades"}})))
        result.inserted.append(tag)
        row = conn.execute("SELECT * FROM trade_journal WHERE tag = %s", (tag,)).fetchone()
    opened, closed = c["opened_at"], c["closed_at"]
    open_day = opened.astimezone(IST).date()
    close_day = closed.astimezone(IST).date()
    fills: dict[str, Any] = {}
    sources: dict[str, str] = {}
    base = {"realized_pnl": c["realized_pnl"], "exit_reason": c["exit_reason"],
            "mfe": payload.get("mfe"), "mae": payload.get("mae")}
    for col, value in base.items():
        if row[col] is None and value is not None:
            fills[col], sources[col] = value, "closed_trades"
    if _empty(row["trade_payload"]) and payload:
        fills["trade_payload"], sources["trade_payload"] = Jsonb(payload), "closed_trades"
    if row["entry_spot"] is None or row["entry_iv"] is None or row["skew"] is None:
        snap = _snapshot(conn, open_day, opened, after_ok=True)
        if snap is not None:
            for col, key in (("entry_spot", "spot"), ("entry_iv", "near_atm_iv"),
                             ("skew", "skew")):
                if row[col] is None and snap[key] is not None:
                    fills[col] = snap[key]
                    sources[col] = f"iv_snapshots {snap['created_at'].isoformat()}"
    if row["exit_spot"] is None or row["exit_iv"] is None:
        snap = _snapshot(conn, close_day, closed, after_ok=False)
        if snap is not None:
            for col, key in (("exit_spot", "spot"), ("exit_iv", "near_atm_iv")):
                if row[col] is None and snap[key] is not None:
                    fills[col] = snap[key]
                    sources[col] = f"iv_snapshots {snap['created_at'].isoformat()}"
    if _empty(row["rejected_strategies"]):
        rejected = _rejected(conn, open_day, opened, c["strategy"])
        if rejected:
            fills["rejected_strategies"] = Jsonb(rejected)
            sources["rejected_strategies"] = "strategy_battle_log"
    if row["ai_verdict"] is None:
        verdict = _verdict(conn, open_day, opened)
        if verdict is not None:
            fills["ai_verdict"], sources["ai_verdict"] = verdict, "ai_market_analysis"
    if not fills:
        return
    ctx = dict(row["selection_context"] or {})
    ctx["backfill"] = {**dict(ctx.get("backfill") or {}), **sources}
    fills["selection_context"] = Jsonb(ctx)
    sets = ", ".join(f"{k} = %({k})s" for k in fills)
    conn.execute(f"UPDATE trade_journal SET {sets}, updated_at = now() WHERE tag = %(tag)s",
                 {**fills, "tag": tag})
    result.filled[tag] = sorted(k for k in sources)


__all__ = ["BackfillResult", "backfill"]
