"""Intraday backtest on the engine's own recorded ``iv_snapshots`` (``--data snapshots``),
through the live strategy code: ``run_cycle`` (the registry's ``decide``), each strategy's own
``exit_rule``, the RiskActor's margin refusal, the dated charges, expiry settlement with
exercise STT. The loop follows :mod:`engine.backtest.eod_replay`; the market is one recorded
scan-cycle sample per decision instant.

What a decision instant sees (its :class:`~engine.strategies.market_view.MarketView`):

* spot: the row's ``spot``; ``realized_range``: the row's ``realized_range`` (session so far);
* two expiries only: the **near** one with the strikes and CE/PE IVs of ``payload.smile`` and
  the **far** one with those of ``payload.far_smile`` (this replay is the only user of
  ``far_smile``). The term structure's ``mid`` expiry has no smile and is not in the view;
* every option price is a **model price**: Black-76 at the stored IV on the expiry's forward
  (``far_smile.forward`` / ``term_structure.near.forward``; else spot·e^{rT}), r = 6.5 %;
  bid/ask = model ∓ :func:`engine.backtest.fill_model.half_spread` (volume unknown: the
  widest, < 1 000-contract bucket). Every leg's price source is ``model_from_snapshot``;
* no volume, no OI are recorded: they are 0 in the view, so **liquidity filters cannot be
  applied** — ``DC_MIN_VOLUME``, ``DC_MIN_OI``, ``IC_MIN_VOLUME``, ``IC_MIN_OI_LOTS`` are set
  to 0 for this data source and the metrics say so (``liquidity_filters``);
* no futures quotes are recorded: CAL_ARB is refused.

Decisions: each recorded row in range (ordered by ``created_at``), thinned to one per
``every_minutes`` (a parameter, default 5; not a setting). At each: legs whose expiry is
past settle at the index (spot) of the expiry day's last snapshot (or the current one when
that day was not recorded, flagged); exits by the strategy's exit rule fill at the modelled
touch (a leg whose strike is not in the row's smile has no price: the exit waits, flagged);
entries via ``run_cycle`` with slots and margin refusal. At each day's last snapshot legs
expiring that day settle at its spot and every open position is marked (model price): the
daily equity curve the metrics (:mod:`engine.backtest.metrics`) are computed on. Positions
still open at ``end`` are marked and reported open.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from engine.backtest import metrics as metrics_mod
from engine.backtest.eod_data import DataRefused, contract_id
from engine.backtest.eod_replay import (
    _Book,
    _charges,
    _closing,
    _coerce,
    _default_calendar,
    _record,
    load_events,
)
from engine.backtest.fill_model import check_fill_model, half_spread, touch
from engine.backtest.sim_replay import BacktestResult
from engine.execution.expiry import settlement_fill
from engine.execution.trades import OpenLeg, Trade, sign
from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_price, year_fraction
from engine.market.snapshot import ChainSide, MarketSnapshot, OptionChain
from engine.messages.legs import Leg, Side
from engine.risk.margin import entry_margin_check
from engine.strategies import registry
from engine.strategies.base import OpenTradeView, StrategyInput
from engine.strategies.cycle import run_cycle
from engine.strategies.market_view import build_market_view
from engine.strategies.slots import slot_limits, slots_from
from engine.timeutil import IST

__all__ = ["LIQUIDITY_KEYS", "PRICE_SOURCE", "RATE", "load_snapshots", "run", "snapshot_view"]

D = Decimal
_CENT = D("0.01")
PRICE_SOURCE = "model_from_snapshot"
RATE = 0.065
#: the strategies' volume / OI floors, forced to 0 (no volume or OI is recorded)
LIQUIDITY_KEYS = ("DC_MIN_VOLUME", "DC_MIN_OI", "IC_MIN_VOLUME", "IC_MIN_OI_LOTS")
_COLS = ("id", "created_at", "trade_date", "spot", "near_expiry", "far_expiry",
         "realized_range", "payload")


def load_snapshots(pool: Any, start: date, end: date) -> list[dict[str, Any]]:
    """The iv_snapshots rows with ``trade_date`` in ``start`` .. ``end``, by ``created_at``."""
    with pool.connection() as conn:
        return [dict(r) for r in conn.execute(
            f"SELECT {', '.join(_COLS)} FROM iv_snapshots WHERE trade_date BETWEEN %s AND %s"
            " ORDER BY created_at", (start, end)).fetchall()]


def _thin(rows: Sequence[Mapping[str, Any]], every: int) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for r in rows:
        if not out or out[-1]["trade_date"] != r["trade_date"] or \
                r["created_at"] - out[-1]["created_at"] >= timedelta(minutes=every):
            out.append(r)
    return out


def _chain(expiry: date, rows: Sequence[Mapping[str, Any]], now: datetime, spot: float,
           forward: float | None, rank: int
           ) -> tuple[OptionChain, dict[str, dict[str, Any]]]:
    """One expiry of the view from its smile rows: model prices at the stored IVs."""
    t = year_fraction(now, expiry)
    f = float(forward) if forward else spot * math.exp(RATE * t)
    strikes = np.array(sorted({float(r["strike"]) for r in rows}))
    by = {float(r["strike"]): r for r in rows}
    prices: dict[str, dict[str, Any]] = {}

    def side(kind: str) -> ChainSide:
        key = "ce_iv" if kind == "CE" else "pe_iv"
        sid, ltp, bid, ask, ivs = [], [], [], [], []
        for k in strikes.tolist():
            s = contract_id(expiry, k, kind)
            sid.append(int(s))
            iv = by[k].get(key)
            if iv is None or not float(iv) > 0 or t <= 0:
                ltp.append(math.nan)
                bid.append(math.nan)
                ask.append(math.nan)
                ivs.append(math.nan)
                continue
            sigma = float(iv) / 100.0
            px = float(black76_price(f, k, t, sigma, kind == "CE", RATE))
            model = max(D("0.05"), D(repr(px)).quantize(_CENT))
            q = touch(model, half_spread(model, rank=rank, volume=0,
                                         moneyness=math.log(k / spot)))
            prices[s] = {"model": model, "bid": q.bid, "ask": q.ask, "iv_pct": float(iv),
                         "forward": f, "t": t, "smile": "far_smile" if rank else "smile"}
            ltp.append(float(model))
            bid.append(float(q.bid))
            ask.append(float(q.ask))
            ivs.append(sigma)
        n = len(sid)
        return ChainSide(security_id=sid, ltp=ltp, bid=bid, ask=ask, iv=np.array(ivs),
                         oi=np.zeros(n, np.int64), volume=np.zeros(n, np.int64),
                         prev_close=np.full(n, np.nan))

    return OptionChain(expiry=expiry, strikes=strikes, ce=side("CE"), pe=side("PE")), prices


def snapshot_view(row: Mapping[str, Any], calendar: NseCalendar
                  ) -> tuple[Any, dict[str, dict[str, Any]]]:
    """(MarketView, security id -> {model, bid, ask, iv_pct, forward, t, smile}) of one
    iv_snapshots row: near expiry from ``smile``, far expiry from ``far_smile``.

    Raises:
        DataRefused: the row has no smile or no far_smile.
    """
    p = row["payload"] or {}
    smile, far = p.get("smile"), p.get("far_smile")
    if not smile or not smile.get("rows") or not far or not far.get("rows"):
        raise DataRefused(f"iv_snapshots row {row.get('id')} ({row['created_at']}) has no "
                          "smile / far_smile in its payload: the snapshot replay needs both "
                          "(recorded by the scanner since the IV surface was added)")
    now = row["created_at"].astimezone(IST)
    spot = float(row["spot"])
    near_exp = date.fromisoformat(smile["expiry"])
    far_exp = date.fromisoformat(far["expiry"])
    near_fwd = ((p.get("term_structure") or {}).get("near") or {}).get("forward")
    chains, prices = [], {}
    for rank, (exp, rows, fwd) in enumerate(((near_exp, smile["rows"], near_fwd),
                                             (far_exp, far["rows"], far.get("forward")))):
        if rank and exp == near_exp:
            continue
        ch, px = _chain(exp, rows, now, spot, fwd, rank)
        chains.append(ch)
        prices.update(px)
    snap = MarketSnapshot(time=now, spot=spot, near_future=None, far_future=None,
                          chains=tuple(chains), listed_expiries=tuple(c.expiry for c in chains))
    rr = row.get("realized_range")
    view = build_market_view(snap, calendar, rate=RATE,
                             realized_range=None if rr is None else float(rr))
    return view, prices


def run(strategy: str, start: date, end: date, params: Mapping[str, Any], *, pool: Any = None,
        rows: Sequence[Mapping[str, Any]] | None = None, fill_model: str | None = None,
        progress: Callable[[float], None] | None = None, events: Sequence[Any] | None = None,
        calendar: NseCalendar | None = None) -> BacktestResult:
    """Replay ``strategy`` on the recorded iv_snapshots from ``start`` to ``end`` (trade dates,
    inclusive). ``params``: setting overrides plus ``every_minutes`` (decision spacing,
    default 5). ``fill_model``: only ``close`` (fill at the deciding snapshot's touch).

    Raises:
        ValueError: a bad strategy or parameter. DataRefused: CAL_ARB, no snapshots in range,
            snapshots without smiles, or ``next_close``.
    """
    t0 = _time.perf_counter()
    spec = registry.get(strategy)
    if spec.needs != "options":
        raise DataRefused(f"{strategy} cannot be replayed on iv_snapshots: no futures quotes are "
                          "recorded in them (use --data sim)")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    params = dict(params)
    every = int(params.pop("every_minutes", 5))
    if every < 1:
        raise ValueError(f"every_minutes must be >= 1, got {every}")
    p = _coerce(params)
    fill = check_fill_model(fill_model or str(p["BT_FILL_MODEL"]))
    if fill != "close":
        raise DataRefused("--data snapshots fills at the deciding snapshot's modelled touch only "
                          "(fill model close); next_close is for bhavcopy")
    p["BT_FILL_MODEL"] = fill
    p[spec.enabled_key] = True
    floors = {k: p[k] for k in LIQUIDITY_KEYS if k in p}
    for k in floors:
        p[k] = 0
    cal = calendar or _default_calendar()
    p["_calendar"] = cal
    if rows is None:
        if pool is None:
            raise ValueError("snapshot_replay.run needs a database pool or the rows")
        rows = load_snapshots(pool, start, end)
    rows = [r for r in rows if start <= r["trade_date"] <= end]
    if not rows:
        raise DataRefused(f"the engine recorded no iv_snapshots between {start} and {end}: run the "
                          "engine (paper) to record them, or use --data bhavcopy")
    if events is None:
        events = load_events(pool, start, end) if pool is not None else ()
    events = tuple(events)
    decisions = _thin(rows, every)
    last_of_day = {r["trade_date"]: r for r in decisions}
    limits = slot_limits(p)
    capital = D(str(p["BT_CAPITAL"]))

    open_: dict[str, _Book] = {}
    closed: list[dict[str, Any]] = []
    denied: list[dict[str, Any]] = []
    unfilled: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    decisions_log: list[dict[str, Any]] = []
    last_px: dict[str, Decimal] = {}
    realized = D(0)
    closes: dict[date, Decimal] = {}

    def close_book(b: _Book, at: datetime, reason: str,
                   prices: Mapping[str, tuple[Decimal, str, Decimal]]) -> None:
        nonlocal realized
        gross = exit_charges = D(0)
        for rec, ol in zip(b.legs, b.trade.legs, strict=True):
            px, src, ch = prices[ol.leg.security_id]
            rec.update(exit_price=str(px), exit_source=src, exit_charges=str(ch.quantize(_CENT)))
            gross += (px - ol.entry_price) * ol.leg.quantity * sign(ol.leg.side)
            exit_charges += ch
        charges = b.trade.entry_charges + exit_charges
        net = (gross - charges).quantize(_CENT)
        realized += net
        closed.append(_record(b, status="closed", closed_at=at, exit_day=at.date(), reason=reason,
                              gross=gross, charges=charges, net=net))
        del open_[b.trade.tag]

    def quote(prices: Mapping[str, dict[str, Any]], leg: Leg, side: Side) -> Decimal | None:
        q = prices.get(leg.security_id)
        return None if q is None else (q["ask"] if side is Side.BUY else q["bid"])

    def settle(b: _Book, at: datetime, d: date, prices: Mapping[str, dict[str, Any]],
               spot_of: Callable[[date], tuple[Decimal, str]]) -> None:
        out = {}
        due = [ol for ol in b.trade.legs if ol.leg.expiry is not None and ol.leg.expiry <= d]
        for ol in b.trade.legs:
            if ol in due:
                s, how = spot_of(ol.leg.expiry)  # type: ignore[arg-type]
                f = settlement_fill(ol.leg, s)
                out[ol.leg.security_id] = (f.price, f"settlement ({how})", f.charges.total)
                continue
            side = _closing(ol.leg)
            px = quote(prices, ol.leg, side)
            src = PRICE_SOURCE
            if px is None:
                px, src = last_px.get(ol.leg.security_id, ol.entry_price), "last_model_price"
                b.flags.append(f"leg_closed_at_last_price {at}: {ol.leg.security_id} not in the "
                               f"row's smile, closed at {px}")
            out[ol.leg.security_id] = (px, src, _charges(ol.leg, side, px, d))
        close_book(b, at, f"expiry settlement: legs expiring {min(ol.leg.expiry for ol in due)}"  # type: ignore[type-var]
                          " settled at the index", out)

    for n, row in enumerate(decisions):
        d = row["trade_date"]
        at = row["created_at"].astimezone(IST)
        spot = D(str(row["spot"])).quantize(_CENT)
        view, prices = snapshot_view(row, cal)
        for sid, q in prices.items():
            last_px[sid] = q["model"]

        def spot_of(x: date, d: date = d, spot: Decimal = spot) -> tuple[Decimal, str]:
            r = last_of_day.get(x)
            if r is not None:
                return D(str(r["spot"])).quantize(_CENT), f"spot of the last snapshot of {x}"
            return spot, f"{x} not recorded: spot at {d}"

        # 1. legs past their expiry settle (expiring today: at the day's last snapshot)
        is_last = last_of_day[d] is row
        for b in list(open_.values()):
            if any(ol.leg.expiry is not None and (ol.leg.expiry < d or (ol.leg.expiry == d and is_last))
                   for ol in b.trade.legs):
                settle(b, at, d, prices, spot_of)
        # 2. exits by the strategy's own rule
        for b in list(open_.values()):
            reason = spec.exit_rule(b.trade, view, at, p)
            if not reason:
                continue
            out = {}
            for ol in b.trade.legs:
                side = _closing(ol.leg)
                px = quote(prices, ol.leg, side)
                if px is None:
                    b.flags.append(f"exit_deferred {at}: {ol.leg.security_id} not in the row's "
                                   f"smile, no price ({reason})")
                    break
                out[ol.leg.security_id] = (px, PRICE_SOURCE, _charges(ol.leg, side, px, d))
            else:
                close_book(b, at, reason, out)
        # 3. entries
        views = tuple(OpenTradeView(tag=b.trade.tag, strategy=b.trade.strategy,
                                    opened_at=b.trade.opened_at, direction=b.trade.direction,
                                    legs=tuple(x.leg for x in b.trade.legs)) for b in open_.values())
        inp = StrategyInput(now=at, spot=view.spot, near=None, far=None, open_trades=views,
                            market=view, slots=slots_from([b.trade for b in open_.values()], limits),
                            events=events, extra={"daily_closes": tuple(closes[x] for x in sorted(closes))})
        cycle = run_cycle(inp, {spec.name: p}, (spec,))
        dec = cycle.decisions.get(spec.name)
        decisions_log.append({"at": at.isoformat(), "entries": [e.tag for e in cycle.entries],
                              "reasons": list(dec.reasons)[:3] if dec else []})
        for entry in cycle.entries:
            if entry.tag in open_:
                continue
            margin = entry_margin_check(entry, spec, spot, at, cal, p, [b.trade for b in open_.values()])
            if isinstance(margin, str):
                denied.append({"tag": entry.tag, "at": at.isoformat(), "reason": margin})
                continue
            legs, recs = [], []
            for leg in entry.legs:
                q = prices.get(leg.security_id)
                if q is None:
                    unfilled.append({"tag": entry.tag, "at": at.isoformat(),
                                     "reason": f"leg {leg.security_id} has no model price"})
                    break
                px = q["ask"] if leg.side is Side.BUY else q["bid"]
                ch = _charges(leg, leg.side, px, d)
                legs.append(OpenLeg(leg, px, ch))
                recs.append({"security_id": leg.security_id, "side": leg.side.value,
                             "quantity": leg.quantity, "kind": leg.kind.value,
                             "option_type": leg.option_type.value if leg.option_type else None,
                             "expiry": leg.expiry.isoformat() if leg.expiry else None,
                             "strike": str(leg.strike) if leg.strike is not None else None,
                             "entry_price": str(px), "entry_source": PRICE_SOURCE,
                             "entry_model_price": str(q["model"]), "entry_iv_pct": q["iv_pct"],
                             "entry_iv_from": q["smile"], "entry_forward": round(q["forward"], 2),
                             "entry_t": q["t"], "entry_charges": str(ch.quantize(_CENT))})
            else:
                trade = Trade(tag=entry.tag, strategy=strategy, mode="backtest", trade_date=d,
                              opened_at=at, direction=entry.direction, legs=tuple(legs),
                              context={**entry.context, "margin": margin})
                open_[entry.tag] = _Book(trade=trade, entry_day=d, legs=recs)
        # 4. the day's last snapshot: mark every open position, the equity point
        if is_last:
            closes[d] = spot
            unreal = margin_used = D(0)
            for b in open_.values():
                value = D(0)
                leg_marks = {}
                for ol in b.trade.legs:
                    mk = last_px.get(ol.leg.security_id, ol.entry_price)
                    src = PRICE_SOURCE if ol.leg.security_id in prices else "last_model_price"
                    leg_marks[ol.leg.security_id] = {"price": str(mk), "source": src}
                    value += (mk - ol.entry_price) * ol.leg.quantity * sign(ol.leg.side)
                pnl = (value - b.trade.entry_charges).quantize(_CENT)
                b.trade = b.trade.marked(pnl)
                b.last_mark = {"date": d.isoformat(), "at": at.isoformat(),
                               "unrealized_pnl": str(pnl), "legs": leg_marks}
                unreal += pnl
                margin_used += D(str((b.trade.context.get("margin") or {}).get("total", 0)))
            curve.append({"date": d.isoformat(), "at": at.isoformat(),
                          "equity": str((realized + unreal).quantize(_CENT)),
                          "realized": str(realized.quantize(_CENT)),
                          "unrealized": str(unreal.quantize(_CENT)), "open_trades": len(open_),
                          "margin": str(margin_used.quantize(_CENT)), "spot": str(spot),
                          "data": "snapshots"})
        if progress is not None:
            progress((n + 1) / len(decisions))

    still_open = [_record(b, status="open", closed_at=None, exit_day=None,
                          reason=f"open at {end}: marked, not closed", gross=None,
                          charges=b.trade.entry_charges, net=None) for b in open_.values()]
    m = metrics_mod.compute(closed, curve, capital=capital)
    sources: dict[str, int] = {}
    for t in closed + still_open:
        for leg in t["legs"]:
            for key in ("entry_source", "exit_source"):
                if leg.get(key):
                    sources[leg[key]] = sources.get(leg[key], 0) + 1
    days = sorted({r["trade_date"] for r in rows})
    m.update({
        "data": "snapshots", "fill_model": fill, "open_at_end": len(still_open),
        "open_unrealized_pnl": str(sum((D(t["last_mark"]["unrealized_pnl"]) for t in still_open
                                        if t.get("last_mark")), D(0)).quantize(_CENT)),
        "margin_denied": len(denied), "unfilled_entries": len(unfilled),
        "price_sources": dict(sorted(sources.items())),
        "model_marked_share": 1.0 if sources else 0.0,
        "liquidity_filters": {
            "applied": False,
            "reason": "iv_snapshots record no volume or open interest: the volume/OI floors "
                      "were set to 0 for this run",
            "overridden": {k: (v if isinstance(v, (int, float, str)) else str(v))
                           for k, v in floors.items()}},
        "coverage": {"snapshots": len(rows), "decisions": len(decisions),
                     "every_minutes": every, "days": [x.isoformat() for x in days],
                     "first": rows[0]["created_at"].isoformat(),
                     "last": rows[-1]["created_at"].isoformat(),
                     "prices": "every option price is Black-76 at the recorded IV "
                               "(model_from_snapshot); near from smile, far from far_smile",
                     "liquidity_filters_applied": False},
        "equity_curve": curve,
        "run_seconds": round(_time.perf_counter() - t0, 3),
    })
    if denied:
        m["margin_denials"] = denied[:20]
    if unfilled:
        m["unfilled"] = unfilled[:20]
    m["decisions"] = decisions_log
    return BacktestResult(closed + still_open, m)
