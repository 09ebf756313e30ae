"""The executor's tables: open_trades, executions, closed_trades, metrics_days, trade_journal,
go_live_state. Each open and each close is one transaction, so a crash leaves either the whole
trade or none of it, and a close recorded once can never be recorded twice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.execution.intents import settle_group
from engine.execution.paper import Fill
from engine.execution.trades import OpenLeg, Trade, sign
from engine.store.tx import transaction
from engine.timeutil import IST

STAGES = ("paper", "shadow", "live", "disabled")


@dataclass(frozen=True, slots=True)
class CloseResult:
    recorded: bool              # False when the tag was already closed that day
    gross_pnl: Decimal
    charges: Decimal
    realized_pnl: Decimal


def load_open(pool: ConnectionPool) -> dict[str, Trade]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT * FROM open_trades ORDER BY id").fetchall()
    return {r["tag"]: Trade.from_row(r) for r in rows}


def _insert_execution(conn, trade: Trade, fill: Fill, action: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO executions (trade_date, executed_at, tag, strategy, mode, action, security_id,"
        " side, quantity, price, charges, order_id, correlation_id, payload) VALUES"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (at.date(), at, trade.tag, trade.strategy, trade.mode, action, fill.leg.security_id,
         fill.leg.side.value, fill.leg.quantity, fill.price, fill.charges.total, fill.order_id,
         fill.correlation_id, Jsonb({"charges": fill.charges.as_dict()})))


def _upsert_open(conn, trade: Trade) -> None:
    conn.execute(
        "INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at, entry_price, quantity,"
        " payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tag) DO UPDATE SET"
        " payload = EXCLUDED.payload, updated_at = now()",
        (trade.tag, trade.strategy, trade.mode, trade.trade_date, trade.opened_at,
         trade.entry_price, trade.quantity, Jsonb(trade.payload())))


def _bump_metrics(conn, day: date, **deltas: Any) -> None:
    cols = ", ".join(deltas)
    placeholders = ", ".join(f"%({k})s" for k in deltas)
    updates = ", ".join(f"{k} = metrics_days.{k} + EXCLUDED.{k}" for k in deltas)
    conn.execute(
        f"INSERT INTO metrics_days (trade_date, {cols}) VALUES (%(day)s, {placeholders})"
        f" ON CONFLICT (trade_date) DO UPDATE SET {updates}, updated_at = now()",
        {"day": day, **deltas})


def bump_funnel(conn, day: date, counts: Mapping[str, int]) -> None:
    """Add scan-funnel counts (cycles, signals, denied, opened, ...) to metrics_days.funnel."""
    conn.execute(
        "INSERT INTO metrics_days (trade_date, funnel) VALUES (%s, %s) ON CONFLICT (trade_date)"
        " DO UPDATE SET funnel = (SELECT coalesce(jsonb_object_agg(k, coalesce((metrics_days.funnel"
        "->>k)::int, 0) + coalesce((EXCLUDED.funnel->>k)::int, 0)), '{}'::jsonb) FROM"
        " (SELECT jsonb_object_keys(metrics_days.funnel || EXCLUDED.funnel) AS k) keys),"
        " updated_at = now()",
        (day, Jsonb(dict(counts))))


def record_open(pool: ConnectionPool, trade: Trade, fills: list[Fill], at: datetime) -> bool:
    """Persist a new trade with its entry fills; False (nothing written) if the tag is open."""
    with transaction(pool) as conn:
        exists = conn.execute("SELECT 1 FROM open_trades WHERE tag = %s", (trade.tag,)).fetchone()
        if exists:
            return False
        for fill in fills:
            _insert_execution(conn, trade, fill, "OPEN", at)
        _upsert_open(conn, trade)
        _bump_metrics(conn, at.date(), trades_opened=1, charges=trade.entry_charges)
        bump_funnel(conn, at.date(), {"opened": 1})
        settle_group(conn, trade.tag, "entry", "booked: trade recorded open")
    return True


def save_marks(pool: ConnectionPool, trade: Trade) -> None:
    with transaction(pool) as conn:
        _upsert_open(conn, trade)


def replace_open_trades(pool: ConnectionPool, trades: Iterable[Trade]) -> None:
    """Replace the whole open_trades table in one transaction (the seeds' save semantics)."""
    with transaction(pool) as conn:
        conn.execute("DELETE FROM open_trades")
        for trade in trades:
            _upsert_open(conn, trade)


def close_trade_date(trade: Trade, at: datetime) -> date:
    """The trading date a close counts on: the IST date of the exit, or, for a trade whose
    every leg had expired before the exit was recorded (settlement), its last expiry."""
    day = at.astimezone(IST).date()
    expiries = [leg.leg.expiry for leg in trade.legs]
    if expiries and all(e is not None for e in expiries) and max(expiries) < day:
        return max(expiries)
    return day


def record_close(pool: ConnectionPool, trade: Trade, fills: list[Fill], at: datetime,
                 reason: str, journal: Mapping[str, Any]) -> CloseResult:
    """Close a trade in one transaction. A tag already closed that day is ignored.

    ``journal``: the ``trade_journal`` columns (``engine.execution.journal.build_journal_row``);
    absent keys are NULL (``mfe`` / ``mae`` default to the trade's, ``selection_context`` to
    its context)."""
    exit_prices = {f.leg.security_id: f.price for f in fills}
    gross = trade.gross_pnl(exit_prices)
    exit_charges = sum((f.charges.total for f in fills), Decimal("0"))
    charges = trade.entry_charges + exit_charges
    net = gross - charges
    day = close_trade_date(trade, at)
    with transaction(pool) as conn:
        inserted = conn.execute(
            "INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at, closed_at,"
            " entry_price, exit_price, quantity, gross_pnl, charges, realized_pnl, exit_reason,"
            " payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (trade_date, tag) DO NOTHING RETURNING id",
            (day, trade.tag, trade.strategy, trade.mode, trade.opened_at, at, trade.entry_price,
             sum((f.price * sign(f.leg.side) for f in fills), Decimal(0)),
             trade.quantity, gross.quantize(Decimal("0.01")), charges.quantize(Decimal("0.01")),
             net.quantize(Decimal("0.01")), reason, Jsonb(trade.payload()))).fetchone()
        settle_group(conn, trade.tag, "exit", "booked: trade recorded closed")
        if inserted is None:
            conn.execute("DELETE FROM open_trades WHERE tag = %s", (trade.tag,))
            return CloseResult(False, gross, charges, net)
        for fill in fills:
            _insert_execution(conn, trade, fill, "CLOSE", at)
        conn.execute("DELETE FROM open_trades WHERE tag = %s", (trade.tag,))
        win = net > 0
        _bump_metrics(conn, day, trades_closed=1, realized_pnl=net.quantize(Decimal("0.01")),
                      charges=exit_charges, wins=int(win), losses=int(not win))
        j = journal
        conn.execute(
            "INSERT INTO trade_journal (tag, trade_date, strategy, trade_payload, realized_pnl,"
            " exit_reason, entry_spot, exit_spot, entry_iv, exit_iv, skew, mfe, mae, slippage,"
            " selection_context, rejected_strategies, rejected_strategy_delta, event_risk_label)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (tag) DO UPDATE SET trade_date = EXCLUDED.trade_date,"
            " trade_payload = EXCLUDED.trade_payload, realized_pnl = EXCLUDED.realized_pnl,"
            " exit_reason = EXCLUDED.exit_reason, entry_spot = EXCLUDED.entry_spot,"
            " exit_spot = EXCLUDED.exit_spot, entry_iv = EXCLUDED.entry_iv,"
            " exit_iv = EXCLUDED.exit_iv, skew = EXCLUDED.skew, mfe = EXCLUDED.mfe,"
            " mae = EXCLUDED.mae, slippage = EXCLUDED.slippage,"
            " selection_context = EXCLUDED.selection_context,"
            " rejected_strategies = EXCLUDED.rejected_strategies,"
            " rejected_strategy_delta = EXCLUDED.rejected_strategy_delta,"
            " event_risk_label = EXCLUDED.event_risk_label, updated_at = now()",
            (trade.tag, day, trade.strategy, Jsonb(trade.payload()), net.quantize(Decimal("0.01")),
             reason, j.get("entry_spot"), j.get("exit_spot"), j.get("entry_iv"),
             j.get("exit_iv"), j.get("skew"), j.get("mfe", trade.mfe), j.get("mae", trade.mae),
             Jsonb(j.get("slippage") or {}),
             Jsonb(j.get("selection_context") or trade.context),
             Jsonb(j.get("rejected_strategies") or []),
             Jsonb(j["rejected_strategy_delta"]) if j.get("rejected_strategy_delta") is not None
             else None, j.get("event_risk_label")))
    return CloseResult(True, gross, charges, net)


def trading_stage(pool: ConnectionPool, strategy: str) -> str:
    """The envelope stage (paper / shadow / live) a strategy's trades count in: its go-live
    stage, ``paper`` when unset or ``disabled`` (the executor refuses a disabled one)."""
    with pool.connection() as conn:
        row = conn.execute("SELECT stage FROM go_live_state WHERE strategy = %s",
                           (strategy,)).fetchone()
    stage = row["stage"] if row else "paper"
    return stage if stage in ("paper", "shadow", "live") else "paper"


def seed_go_live(pool: ConnectionPool, dry_run_flags: Mapping[str, bool]) -> dict[str, str]:
    """Seed go_live_state from *_DRY_RUN flags on first run only; the DB owns it afterwards."""
    with transaction(pool) as conn:
        conn.execute("LOCK TABLE go_live_state IN SHARE ROW EXCLUSIVE MODE")
        empty = conn.execute("SELECT count(*) AS n FROM go_live_state").fetchone()["n"] == 0
        if empty:
            for strategy, dry in dry_run_flags.items():
                conn.execute(
                    "INSERT INTO go_live_state (strategy, stage, seeded_from) VALUES (%s, %s, %s)",
                    (strategy, "paper" if dry else "live", f"{strategy}_DRY_RUN={str(dry).lower()}"))
        rows = conn.execute("SELECT strategy, stage FROM go_live_state").fetchall()
    return {r["strategy"]: r["stage"] for r in rows}


def set_stage(pool: ConnectionPool, strategy: str, stage: str, by: str, at: datetime) -> str | None:
    """Change a strategy's stage; returns the old stage. Refuses an unknown stage."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
    with transaction(pool) as conn:
        row = conn.execute("SELECT stage FROM go_live_state WHERE strategy = %s FOR UPDATE",
                           (strategy,)).fetchone()
        old = row["stage"] if row else None
        entry = Jsonb([{"from": old, "to": stage, "by": by, "at": at.isoformat()}])
        conn.execute(
            "INSERT INTO go_live_state (strategy, stage, updated_by, updated_at, history)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (strategy) DO UPDATE SET stage ="
            " EXCLUDED.stage, updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at,"
            " history = go_live_state.history || EXCLUDED.history",
            (strategy, stage, by, at, entry))
    return old


__all__ = ["CloseResult", "OpenLeg", "Trade", "load_open", "record_close", "record_open",
           "replace_open_trades", "save_marks", "seed_go_live", "set_stage"]
