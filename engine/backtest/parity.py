"""Daily backtest-vs-live parity: the day's recorded ``iv_snapshots`` replayed through the
backtester (:mod:`engine.backtest.snapshot_replay`) with the engine's own parameters (the
stored settings), diffed against what the engine did that day (``closed_trades``,
``executions``, ``open_trades``).

Matching: a trade of the engine and a backtest trade match when they are of the same
strategy, hold the same legs (side, option type, strike, expiry, quantity) and opened within
``window`` minutes of each other (default: the replay's decision spacing); nearest first, each
trade matched once. Per matched pair the report gives the entry and exit delay (seconds), per
leg the fill against the modelled fill (₹ per unit, adverse positive, and ₹ in total), the
charges and the P&L difference; unmatched trades are listed as ``live_only`` /
``backtest_only``.

Status: ``match`` when every trade matched, with no price difference above
``PARITY_PRICE_TOLERANCE`` (₹/unit), no charges or P&L difference above
``PARITY_RUPEE_TOLERANCE`` and the same exit; ``differs`` otherwise; ``no_data`` when nothing
was recorded that day. The report is stored in ``parity_reports`` (one row per day and
strategy set, replaced when run again) and summarised in one chat message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.backtest import snapshot_replay
from engine.backtest.eod_data import DataRefused
from engine.settings.registry import all_knobs
from engine.store.tx import transaction

D = Decimal
_CENT = D("0.01")


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One trade, normalised (engine or backtest)."""

    tag: str
    strategy: str
    opened_at: datetime
    closed_at: datetime | None
    legs: tuple[Mapping[str, Any], ...]   # security_id side quantity option_type strike expiry
    #                                       entry_price exit_price (str | None)
    charges: Decimal | None
    pnl: Decimal | None
    exit_reason: str | None

    def signature(self) -> tuple:
        return (self.strategy, tuple(sorted(
            (str(x["side"]), str(x.get("option_type") or ""), _num(x.get("strike")),
             str(x.get("expiry") or ""), int(x["quantity"])) for x in self.legs)))


def _num(v: Any) -> str:
    return "" if v is None or v == "" else str(D(str(v)).normalize())


def _d(v: Any) -> Decimal | None:
    return None if v is None or v == "" else D(str(v))


def _dt(v: Any) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    return datetime.fromisoformat(str(v))


def from_backtest(trades: Sequence[Mapping[str, Any]]) -> list[TradeRecord]:
    """The backtest's trades (``BacktestResult.trades``)."""
    out = []
    for t in trades:
        out.append(TradeRecord(
            tag=str(t["tag"]), strategy=str(t["strategy"]), opened_at=_dt(t["opened_at"]),
            closed_at=_dt(t.get("closed_at")),
            legs=tuple({k: x.get(k) for k in ("security_id", "side", "quantity", "option_type",
                                                "strike", "expiry", "entry_price", "exit_price")}
                       for x in t["legs"]),
            charges=_d(t.get("charges")) if t.get("status") == "closed" else None,
            pnl=_d(t.get("realized_pnl")), exit_reason=t.get("exit_reason")
            if t.get("status") == "closed" else None))
    return out


def load_live(pool: Any, day: date, strategies: Sequence[str]) -> list[TradeRecord]:
    """What the engine did on ``day``: trades of ``strategies`` opened that day (IST), closed
    (exit prices from their CLOSE executions) or still open."""
    with pool.connection() as conn:
        closed = conn.execute(
            "SELECT * FROM closed_trades WHERE strategy = ANY(%s) AND (opened_at AT TIME ZONE"
            " 'Asia/Kolkata')::date = %s ORDER BY opened_at", (list(strategies), day)).fetchall()
        opened = conn.execute(
            "SELECT * FROM open_trades WHERE strategy = ANY(%s) AND (opened_at AT TIME ZONE"
            " 'Asia/Kolkata')::date = %s ORDER BY opened_at", (list(strategies), day)).fetchall()
        exits = conn.execute(
            "SELECT tag, security_id, price FROM executions WHERE action = 'CLOSE' AND tag ="
            " ANY(%s) ORDER BY id", ([r["tag"] for r in closed],)).fetchall()
    exit_px: dict[tuple[str, str], Decimal] = {(r["tag"], r["security_id"]): r["price"]
                                               for r in exits}
    out = []
    for r, is_closed in [(r, True) for r in closed] + [(r, False) for r in opened]:
        legs = []
        for x in (r["payload"] or {}).get("legs", []):
            px = exit_px.get((r["tag"], x["security_id"])) if is_closed else None
            legs.append({**{k: x.get(k) for k in ("security_id", "side", "quantity",
                                                  "option_type", "strike", "expiry",
                                                  "entry_price")},
                         "exit_price": str(px) if px is not None else None})
        out.append(TradeRecord(
            tag=r["tag"], strategy=r["strategy"], opened_at=r["opened_at"],
            closed_at=r["closed_at"] if is_closed else None, legs=tuple(legs),
            charges=r["charges"] if is_closed else None,
            pnl=r["realized_pnl"] if is_closed else None,
            exit_reason=r["exit_reason"] if is_closed else None))
    return out


def _adverse(side: str, live: Decimal, model: Decimal) -> Decimal:
    """₹ per unit the live fill is worse than the model (BUY: paid more; SELL: got less)."""
    return (live - model) if side == "BUY" else (model - live)


def compare(live: Sequence[TradeRecord], backtest: Sequence[TradeRecord], *, window_min: int,
            price_tol: Decimal, rupee_tol: Decimal) -> dict[str, Any]:
    """The diff (module docstring): ``{"status", "matched", "live_only", "backtest_only",
    "totals", "flags"}``."""
    free = list(backtest)
    pairs: list[tuple[TradeRecord, TradeRecord]] = []
    live_only: list[TradeRecord] = []
    for t in sorted(live, key=lambda x: x.opened_at):
        cands = [b for b in free if b.signature() == t.signature()
                 and abs((b.opened_at - t.opened_at).total_seconds()) <= window_min * 60]
        if not cands:
            live_only.append(t)
            continue
        best = min(cands, key=lambda b: abs((b.opened_at - t.opened_at).total_seconds()))
        free.remove(best)
        pairs.append((t, best))
    flags: list[str] = []
    matched = []
    tot = {"entry_slippage": D(0), "exit_slippage": D(0), "charges": D(0), "pnl": D(0)}
    for t, b in pairs:
        legs = []
        by_leg = {(x["side"], str(x.get("option_type") or ""), _num(x.get("strike")),
                   str(x.get("expiry") or "")): x for x in b.legs}
        for x in t.legs:
            m = by_leg.get((x["side"], str(x.get("option_type") or ""), _num(x.get("strike")),
                            str(x.get("expiry") or "")))
            qty = int(x["quantity"])
            row: dict[str, Any] = {"security_id": x["security_id"], "side": x["side"],
                                   "strike": x.get("strike"), "option_type": x.get("option_type"),
                                   "quantity": qty}
            for what, side in (("entry", str(x["side"])),
                               ("exit", "SELL" if x["side"] == "BUY" else "BUY")):
                lp, mp = _d(x.get(f"{what}_price")), _d(m.get(f"{what}_price")) if m else None
                row[f"{what}_fill"], row[f"{what}_model"] = _s(lp), _s(mp)
                if lp is None or mp is None:
                    continue
                per = _adverse(side, lp, mp).quantize(_CENT)
                row[f"{what}_slippage_per_unit"] = _s(per)
                row[f"{what}_slippage"] = _s((per * qty).quantize(_CENT))
                tot[f"{what}_slippage"] += per * qty
                if abs(per) > price_tol:
                    flags.append(f"{t.tag} {what} {x['side'] if what == 'entry' else side} "
                                 f"{qty} of {x['security_id']}: filled {lp}, modelled {mp} "
                                 f"({per:+} ₹/unit, {(per * qty).quantize(_CENT):+} ₹)")
            legs.append(row)
        d_ch = (t.charges - b.charges) if t.charges is not None and b.charges is not None \
            else None
        d_pnl = (t.pnl - b.pnl) if t.pnl is not None and b.pnl is not None else None
        if d_ch is not None:
            tot["charges"] += d_ch
            if abs(d_ch) > rupee_tol:
                flags.append(f"{t.tag}: charges {t.charges} vs modelled {b.charges}")
        if d_pnl is not None:
            tot["pnl"] += d_pnl
            if abs(d_pnl) > rupee_tol:
                flags.append(f"{t.tag}: P&L {t.pnl} vs backtest {b.pnl} ({d_pnl:+})")
        if (t.closed_at is None) != (b.closed_at is None):
            flags.append(f"{t.tag}: {'closed' if t.closed_at else 'open'} live, "
                         f"{'closed' if b.closed_at else 'open'} in the backtest")
        exit_delay = (t.closed_at - b.closed_at).total_seconds() \
            if t.closed_at and b.closed_at else None
        if exit_delay is not None and abs(exit_delay) > window_min * 60:
            flags.append(f"{t.tag}: exit {exit_delay:+.0f} s from the backtest's")
        matched.append({
            "live_tag": t.tag, "backtest_tag": b.tag, "strategy": t.strategy,
            "entry_delay_s": (t.opened_at - b.opened_at).total_seconds(),
            "exit_delay_s": exit_delay, "exit_reason": t.exit_reason,
            "backtest_exit_reason": b.exit_reason, "legs": legs,
            "charges": _s(t.charges), "backtest_charges": _s(b.charges),
            "charges_diff": _s(d_ch), "pnl": _s(t.pnl), "backtest_pnl": _s(b.pnl),
            "pnl_diff": _s(d_pnl)})
    for t in live_only:
        flags.append(f"{t.tag} ({t.strategy}) opened {t.opened_at:%H:%M}: no backtest trade")
    for b in free:
        flags.append(f"backtest {b.tag} ({b.strategy}) opened {b.opened_at:%H:%M}: the engine "
                     "did not trade it")
    return {"status": "match" if not flags else "differs", "matched": matched,
            "live_only": [_brief(t) for t in live_only],
            "backtest_only": [_brief(b) for b in free],
            "totals": {k: _s(v.quantize(_CENT)) for k, v in tot.items()}, "flags": flags}


def _s(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def _brief(t: TradeRecord) -> dict[str, Any]:
    return {"tag": t.tag, "strategy": t.strategy, "opened_at": t.opened_at.isoformat(),
            "closed_at": t.closed_at.isoformat() if t.closed_at else None,
            "pnl": _s(t.pnl), "legs": [dict(x) for x in t.legs]}


def engine_params(settings: Any) -> dict[str, Any]:
    """The engine's parameters now: every registered knob's current value."""
    return {k.key: settings.get(k.key) for k in all_knobs()}


def run(pool: Any, day: date, *, strategies: Sequence[str], params: Mapping[str, Any],
        every_minutes: int = 1, window_min: int | None = None) -> dict[str, Any]:
    """The parity report of ``day`` (not stored): replay + diff per strategy, merged."""
    price_tol = D(str(params.get("PARITY_PRICE_TOLERANCE", "0.05")))
    rupee_tol = D(str(params.get("PARITY_RUPEE_TOLERANCE", "1")))
    window = window_min if window_min is not None else max(every_minutes, 1)
    live_all = load_live(pool, day, strategies)
    replayed: list[TradeRecord] = []
    notes: list[str] = []
    for strategy in strategies:
        try:
            result = snapshot_replay.run(strategy, day, day,
                                         {**params, "every_minutes": every_minutes}, pool=pool)
        except DataRefused as exc:
            notes.append(f"{strategy}: {exc}")
            continue
        replayed.extend(from_backtest(result.trades))
    if not replayed and not live_all and notes:
        return {"status": "no_data", "trade_date": day.isoformat(), "notes": notes,
                "matched": [], "live_only": [], "backtest_only": [], "flags": [],
                "totals": {}}
    diff = compare(live_all, replayed, window_min=window, price_tol=price_tol,
                   rupee_tol=rupee_tol)
    return {**diff, "trade_date": day.isoformat(), "strategies": list(strategies),
            "every_minutes": every_minutes, "window_min": window, "notes": notes,
            "tolerances": {"price_per_unit": str(price_tol), "rupees": str(rupee_tol)},
            "live_trades": len(live_all), "backtest_trades": len(replayed)}


def summary_text(report: Mapping[str, Any]) -> str:
    """One chat message."""
    day = report.get("trade_date")
    if report["status"] == "no_data":
        return f"Parity {day}: no recorded snapshots to replay ({'; '.join(report['notes'])})"
    t = report.get("totals") or {}
    head = (f"Parity {day} ({', '.join(report.get('strategies', []))}): "
            f"{'MATCH' if report['status'] == 'match' else 'DIFFERS'} — "
            f"{report.get('live_trades', 0)} live / {report.get('backtest_trades', 0)} backtest "
            f"trades, {len(report['matched'])} matched, {len(report['live_only'])} live-only, "
            f"{len(report['backtest_only'])} backtest-only; slippage vs model: entry "
            f"₹{t.get('entry_slippage')}, exit ₹{t.get('exit_slippage')}; charges Δ "
            f"₹{t.get('charges')}; P&L Δ ₹{t.get('pnl')}")
    flags = report.get("flags") or []
    if flags:
        head += "\n" + "\n".join(f"• {f}" for f in flags[:5])
        if len(flags) > 5:
            head += f"\n… and {len(flags) - 5} more (dashboard: /api/parity/{day})"
    return head


def store(pool: Any, report: Mapping[str, Any], *, notify: bool = True) -> int:
    """Store the report (replacing that day's for the same strategies) and queue its summary
    to chat (``chat_outbox``, de-duplicated per report content) in one transaction."""
    from engine.chat import outbox
    from engine.messages.codec import to_jsonable

    body = to_jsonable(dict(report))
    strategies = sorted(report.get("strategies") or [])
    summary = {"status": report["status"], "text": summary_text(report),
               "matched": len(report.get("matched") or []),
               "flags": len(report.get("flags") or []), "totals": report.get("totals") or {}}
    with transaction(pool) as conn:
        row = conn.execute(
            "INSERT INTO parity_reports (trade_date, strategies, status, summary, report)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (trade_date, strategies) DO UPDATE SET"
            " status = EXCLUDED.status, summary = EXCLUDED.summary, report = EXCLUDED.report,"
            " created_at = now() RETURNING id",
            (date.fromisoformat(str(report["trade_date"])), strategies, report["status"],
             Jsonb(summary), Jsonb(body))).fetchone()
        if notify:
            outbox.queue(conn, summary["text"],
                         dedup_key=f"parity:{report['trade_date']}:{','.join(strategies)}:"
                                   f"{report['status']}:{len(summary['text'])}:"
                                   f"{summary['flags']}")
    return int(row["id"])


__all__ = ["TradeRecord", "compare", "engine_params", "from_backtest", "load_live", "run",
           "store", "summary_text"]
