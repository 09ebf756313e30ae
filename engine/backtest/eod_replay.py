"""End-of-day backtest on real NSE bhavcopy data (``bhavcopy_ohlc``), through the live
strategy code: the registry's ``decide`` (via ``run_cycle``) and each strategy's own
``exit_rule``, the RiskActor's margin refusal, the dated charges, expiry settlement with
exercise STT. The shape follows :mod:`engine.backtest.sim_replay`; the market is one close
snapshot per session (:mod:`engine.backtest.eod_data`) and fills follow the documented fill
model (:mod:`engine.backtest.fill_model`).

Each session of the calendar in range, at its close (15:30 IST):

1. (``next_close`` only) fill what was decided at the previous close, at today's close;
2. legs that reach expiry today settle at the index close (intrinsic value, STT on ITM
   longs: ``engine.execution.expiry``); the rest of such a structure closes at today's close;
3. every open trade is checked with its strategy's exit rule at the close (the
   session-before-expiry exit included); an exit whose legs did not all trade today is
   deferred (flagged) — an untraded leg is never filled;
4. entries are decided on today's view with ``run_cycle``. The close snapshot is taken as at
   the last minute of the strategy's entry window (``view.now`` = ``inp.now``: the entry
   window is *mapped to the close*; IVs use that instant's time to expiry); exit rules run
   with the session close (15:30) as ``now``;
5. every open position is marked: settle price of traded legs, model mark of untraded ones
   (flagged), giving the day's point of the equity curve.

Intraday settings on end-of-day data:

=================  ======================================================================
setting            on EOD data
=================  ======================================================================
entry window       mapped to the close: the close snapshot is taken as the last minute of
                   ``DC_ENTRY_*`` / ``IC_ENTRY_*`` (one decision a session)
realized range     approximated: NIFTY's day high − low from the near future's high/low
                   less its close basis (the whole session, known at the close)
breach / stop      at the close only (the rules see the close); a session whose
                   approximated high/low crossed a breakeven or short strike is flagged
                   ``intraday_breach_likely`` in the trade record (stops are not modelled
                   intraday)
expiry-day time    mapped to the close: ``DC_EXIT_TIME`` / ``EXPIRY_DAY_EXIT_TIME`` fire at
                   that session's close; legs still open on their expiry settle at the index
                   close
``*_MAX_HOLD_*``   counted in sessions / minutes between decision instants, as live
=================  ======================================================================

Positions still open at ``end`` are marked and reported open (``status: open``), not closed.
CAL_ARB is refused: its z-score needs intraday samples. Ranges the data cannot support are
refused with the reason (:class:`~engine.backtest.eod_data.DataRefused`), never returned empty.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from engine.backtest import metrics as metrics_mod
from engine.backtest.eod_data import (
    NIFTY_WEEKLIES_FROM,
    Contract,
    DataRefused,
    EodDay,
    build_view,
    group_days,
    load_rows,
    model_marks,
    trading_days,
)
from engine.backtest.fill_model import check_fill_model, half_spread, touch
from engine.backtest.redating import load_redatings, redated_expiry
from engine.backtest.sim_replay import BacktestResult, default_params
from engine.execution.charges import order_charges
from engine.execution.expiry import settlement_fill
from engine.execution.trades import OpenLeg, Trade, sign
from engine.market.calendar import NseCalendar
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.risk.margin import entry_margin_check
from engine.settings import knob
from engine.strategies import registry
from engine.strategies.base import OpenTradeView, StrategyInput
from engine.strategies.cycle import run_cycle
from engine.strategies.slots import slot_limits, slots_from
from engine.timeutil import IST

__all__ = ["ENTRY_WINDOWS", "LOOKBACK_DAYS", "decision_time", "exit_kind", "run"]

D = Decimal
_CENT = D("0.01")
#: calendar days of rows loaded before ``start`` (daily closes for realized vol)
LOOKBACK_DAYS = 45
#: strategy -> its entry-window knobs
ENTRY_WINDOWS = {"DC": ("DC_ENTRY_START", "DC_ENTRY_END"), "MDC": ("DC_ENTRY_START", "DC_ENTRY_END"),
                 "IC": ("IC_ENTRY_START", "IC_ENTRY_END")}


def decision_time(strategy: str, day: date, params: Mapping[str, Any]) -> datetime:
    """The instant a close snapshot is taken as for entries: the last minute of the
    strategy's entry window (``[start, end)``), on ``day`` (IST)."""
    keys = ENTRY_WINDOWS.get(strategy)
    if keys is None:
        return datetime.combine(day, time(15, 29), IST)
    start = time.fromisoformat(str(params[keys[0]]))
    end = time.fromisoformat(str(params[keys[1]]))
    at = datetime.combine(day, end, IST) - timedelta(minutes=1)
    return max(at, datetime.combine(day, start, IST))


def exit_kind(reason: str) -> str:
    """A short category of an exit reason (for P&L by exit reason)."""
    r = reason.lower()
    for key, kind in (("expiry settlement", "expiry settlement"), ("stop", "stop loss"),
                      ("profit target", "profit target"), ("breakeven", "breakeven"),
                      ("short", "short strike breached"), ("max hold", "max hold"),
                      ("planned exit", "session before expiry"),
                      ("session before expiry", "session before expiry"),
                      ("past the planned exit", "session before expiry"),
                      ("expiry", "expiry")):
        if key in r:
            return kind
    return reason.split(":")[0][:40]


@dataclass
class _Book:
    """Bookkeeping of one open trade next to its engine ``Trade``."""

    trade: Trade
    entry_day: date
    legs: list[dict[str, Any]]                # per-leg record (entry side filled in)
    flags: list[str] = field(default_factory=list)
    pending_exit: tuple[date, str] | None = None   # next_close: (decided on, reason)
    last_mark: dict[str, Any] = field(default_factory=dict)


def _rank(day: EodDay, expiry: date) -> int:
    live = sorted(e for e in day.options if e > day.trade_date)
    return live.index(expiry) if expiry in live else 0


def _touch(day: EodDay, c: Contract) -> Any:
    """The modelled quote of a traded contract on ``day`` (the same as the view's)."""
    if c.option_type == "FUT":
        return touch(c.close, half_spread(c.close, rank=0, volume=c.volume, moneyness=0,  # type: ignore[arg-type]
                                          kind="FUT"))
    h = half_spread(c.close, rank=_rank(day, c.expiry), volume=c.volume,  # type: ignore[arg-type]
                    moneyness=math.log(float(c.strike) / float(day.spot)))
    return touch(c.close, h)  # type: ignore[arg-type]


def _fill_price(day: EodDay, security_id: str, side: Side) -> Decimal | None:
    """A buy at the modelled ask, a sell at the bid, of a contract that traded on ``day``;
    None when it did not trade (never filled)."""
    c = day.contracts.get(security_id)
    if c is None or not c.traded:
        return None
    q = _touch(day, c)
    return q.ask if side is Side.BUY else q.bid


def _closing(leg: Leg) -> Side:
    return Side.SELL if leg.side is Side.BUY else Side.BUY


def _charges(leg: Leg, side: Side, price: Decimal, on: date) -> Decimal:
    return order_charges(kind=leg.kind.value, side=side.value, price=price, quantity=leg.quantity,
                         on=on).total


def _mark(day: EodDay, models: Mapping[str, Decimal], security_id: str) -> tuple[Decimal | None, str]:
    """The mark-to-market value of a held contract: settle if traded, model if untraded."""
    c = day.contracts.get(security_id)
    if c is None:
        return None, "missing"
    if c.traded and c.settle is not None:
        return c.settle, "settle"
    if security_id in models:
        return models[security_id], "model"
    if c.settle is not None:  # no traded strike to fit a smile on: NSE's settle, flagged
        return c.settle, "settle_untraded"
    return None, "missing"


def _coerce(params: Mapping[str, Any]) -> dict[str, Any]:
    return default_params() | {key: knob(key).coerce(str(value)) for key, value in params.items()
                               if not key.startswith("_")}


# A grid search replays the same rows hundreds of times with other parameters: the sessions
# grouped from them and each session's view (with its model marks) depend only on the rows,
# the calendar and the decision instant, never on a parameter, so a worker builds them once.
# Keyed on the identity of the rows object (kept alive in the key's value) and of the day.
_GROUP_CACHE: dict[int, tuple[Sequence[Mapping[str, Any]], tuple[date, tuple[Any, ...]],
                              dict[date, EodDay]]] = {}
_VIEW_CACHE: dict[tuple[int, int, datetime, float | None], tuple[EodDay, Any, Any]] = {}
_CACHE_LIMIT = 4_096


_CALENDAR: list[NseCalendar] = []


def _default_calendar() -> NseCalendar:
    """One calendar per process (the view cache is keyed on it)."""
    if not _CALENDAR:
        _CALENDAR.append(NseCalendar())
    return _CALENDAR[0]


def _grouped(rows: Sequence[Mapping[str, Any]], until: date, redatings: tuple[Any, ...]
             ) -> dict[date, EodDay]:
    hit = _GROUP_CACHE.get(id(rows))
    if hit is not None and hit[0] is rows and hit[1] == (until, redatings):
        return hit[2]
    eod = group_days((r for r in rows if r["trade_date"] <= until), redatings)
    if len(_GROUP_CACHE) >= 8:
        _GROUP_CACHE.clear()
    _GROUP_CACHE[id(rows)] = (rows, (until, redatings), eod)
    return eod


def _view_of(day: EodDay, cal: NseCalendar, realized: float | None, now: datetime
             ) -> tuple[Any, Any]:
    key = (id(day), id(cal), now, realized)
    hit = _VIEW_CACHE.get(key)
    if hit is not None and hit[0] is day:
        return hit[1], hit[2]
    view = build_view(day, cal, realized_range=realized, at=now)
    models = model_marks(view, day)
    if len(_VIEW_CACHE) >= _CACHE_LIMIT:
        _VIEW_CACHE.clear()
    _VIEW_CACHE[key] = (day, view, models)
    return view, models


def load_events(pool: Any, start: date, end: date) -> tuple[Any, ...]:
    """The market events a replay of ``start`` .. ``end`` guards against (the same window the
    scanner reads live: a week back, a month ahead)."""
    from engine.events.store import events_between

    return events_between(pool, start - timedelta(days=7), end + timedelta(days=30))


def run(strategy: str, start: date, end: date, params: Mapping[str, Any], *, pool: Any = None,
        rows: Sequence[Mapping[str, Any]] | None = None, fill_model: str | None = None,
        progress: Callable[[float], None] | None = None,
        calendar: NseCalendar | None = None,
        events: Sequence[Any] | None = None,
        redatings: Sequence[Any] | None = None) -> BacktestResult:
    """Replay ``strategy`` from ``start`` to ``end`` (inclusive) on the bhavcopy rows.

    Args:
        strategy: a registered strategy usable on end-of-day data (not CAL_ARB).
        params: setting overrides (text or typed), checked by their knobs.
        pool: the database pool to read ``bhavcopy_ohlc`` from (or pass ``rows``).
        rows: the table rows already loaded (a grid search loads them once).
        events: the market events (``engine.events``) the guard reads, as live; default:
            those of ``pool``'s ``market_events`` from a week before ``start`` to a month
            after ``end`` (none without a pool).
        redatings: NSE's re-dated expiries (``engine.backtest.redating``; default: those
            recorded in ``pool``'s ``bhavcopy_redated``): a leg held across one is priced under
            its new expiry and settles on it.
        fill_model: ``close`` (default: ``BT_FILL_MODEL``) or ``next_close``.
        progress: called with the fraction of sessions done.

    Raises:
        ValueError: an unknown strategy (naming the registered ones) or a bad parameter.
        DataRefused: CAL_ARB, a range before NIFTY weeklies, no rows in the range, rows
            without lot size or index close.
    """
    t0 = _time.perf_counter()
    spec = registry.get(strategy)
    if not spec.eod_backtest:
        raise DataRefused(f"{strategy} cannot be backtested on end-of-day data: its z-score needs "
                          "intraday samples of the futures spread (use --data sim)")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if start < NIFTY_WEEKLIES_FROM:
        raise DataRefused(f"start {start} is before NIFTY weekly options ({NIFTY_WEEKLIES_FROM}): "
                          "the strategies' near/next-weekly structures did not exist")
    p = _coerce(params)
    fill = check_fill_model(fill_model or str(p["BT_FILL_MODEL"]))
    p["BT_FILL_MODEL"] = fill
    p[spec.enabled_key] = True
    cal = calendar or _default_calendar()
    p["_calendar"] = cal
    days = trading_days(cal, start, end)
    if not days:
        raise DataRefused(f"no trading session between {start} and {end}")
    if rows is None:
        if pool is None:
            raise ValueError("eod_replay.run needs a database pool or the rows")
        rows = load_rows(pool, start - timedelta(LOOKBACK_DAYS), end + timedelta(10))
    if events is None:
        events = load_events(pool, start, end) if pool is not None else ()
    events = tuple(events)
    if redatings is None:
        redatings = load_redatings(pool, "NIFTY") if pool is not None else ()
    redatings = tuple(redatings)

    def expiry_of(leg: Leg, on: date) -> date | None:
        """The leg's expiry as of ``on`` (its new one once NSE re-dated it)."""
        if leg.expiry is None or not redatings:
            return leg.expiry
        return redated_expiry(redatings, "NIFTY", leg.expiry, on)
    eod = _grouped(rows, end + timedelta(10), redatings)
    have = [d for d in days if d in eod]
    if not have:
        raise DataRefused(f"no NIFTY rows in bhavcopy_ohlc between {start} and {end}: import the "
                          "bhavcopies first (python -m engine backtest download / import)")
    limits = slot_limits(p)
    capital = D(str(p["BT_CAPITAL"]))

    open_: dict[str, _Book] = {}
    closed: list[dict[str, Any]] = []
    denied: list[dict[str, Any]] = []
    unfilled: list[dict[str, Any]] = []
    pending_entries: list[tuple[date, Any, dict[str, Any]]] = []
    curve: list[dict[str, Any]] = []
    realized = D(0)
    marks_total = marks_model = 0
    decisions_log: list[dict[str, Any]] = []
    prev_day: EodDay | None = None

    def close_book(b: _Book, day: EodDay, reason: str, prices: Mapping[str, tuple[Decimal, str, Decimal]]
                   ) -> None:
        nonlocal realized
        gross = D(0)
        exit_charges = D(0)
        for rec, ol in zip(b.legs, b.trade.legs, strict=True):
            px, src, ch = prices[ol.leg.security_id]
            rec.update(exit_price=str(px), exit_source=src, exit_charges=str(ch.quantize(_CENT)))
            gross += (px - ol.entry_price) * ol.leg.quantity * sign(ol.leg.side)
            exit_charges += ch
        charges = b.trade.entry_charges + exit_charges
        net = (gross - charges).quantize(_CENT)
        realized += net
        closed.append(_record(b, status="closed", closed_at=day.close_time, exit_day=day.trade_date,
                              reason=reason, gross=gross, charges=charges, net=net))
        del open_[b.trade.tag]

    def try_exit(b: _Book, day: EodDay, reason: str) -> bool:
        """Fill every leg at ``day``'s close (closing side); False (deferred) when a leg did
        not trade today."""
        prices = {}
        for ol in b.trade.legs:
            side = _closing(ol.leg)
            px = _fill_price(day, ol.leg.security_id, side)
            if px is None:
                b.flags.append(f"exit_deferred {day.trade_date}: {ol.leg.security_id} untraded "
                               f"(volume 0), not filled ({reason})")
                return False
            prices[ol.leg.security_id] = (px, "close", _charges(ol.leg, side, px, day.trade_date))
        close_book(b, day, reason, prices)
        return True

    def open_entry(entry: Any, day: EodDay, decided: date, margin: dict[str, Any]) -> None:
        legs, recs = [], []
        for leg in entry.legs:
            px = _fill_price(day, leg.security_id, leg.side)
            if px is None:
                unfilled.append({"tag": entry.tag, "decided": decided.isoformat(),
                                 "day": day.trade_date.isoformat(),
                                 "reason": f"leg {leg.security_id} untraded on {day.trade_date}: "
                                           "not filled"})
                return
            ch = _charges(leg, leg.side, px, day.trade_date)
            legs.append(OpenLeg(leg, px, ch))
            c = day.contracts[leg.security_id]
            recs.append({"security_id": leg.security_id, "side": leg.side.value,
                         "quantity": leg.quantity, "lot_size": c.lot_size, "kind": leg.kind.value,
                         "option_type": leg.option_type.value if leg.option_type else None,
                         "expiry": leg.expiry.isoformat() if leg.expiry else None,
                         "strike": str(leg.strike) if leg.strike is not None else None,
                         "entry_price": str(px), "entry_source": "close",
                         "entry_close": str(c.close), "entry_volume": c.volume,
                         "entry_charges": str(ch.quantize(_CENT))})
        opened_at = decision_time(strategy, day.trade_date, p) if decided == day.trade_date \
            else day.close_time
        trade = Trade(tag=entry.tag, strategy=strategy, mode="backtest", trade_date=day.trade_date,
                      opened_at=opened_at, direction=entry.direction, legs=tuple(legs),
                      context={**entry.context, "margin": margin})
        open_[entry.tag] = _Book(trade=trade, entry_day=day.trade_date, legs=recs)

    for n, d in enumerate(days):
        day = eod.get(d)
        if day is None:
            curve.append({"date": d.isoformat(), "equity": str(curve[-1]["equity"]) if curve else "0.00",
                          "realized": str(realized), "unrealized": None, "open_trades": len(open_),
                          "margin": "0.00", "data": "missing"})
            continue
        rng = day.spot_range()
        now = decision_time(strategy, d, p)
        view, models = _view_of(day, cal, float(rng[1] - rng[0]) if rng else None, now)

        # 1. next_close: what the previous close decided fills now
        if fill == "next_close":
            for b in list(open_.values()):
                if b.pending_exit is not None and b.trade.tag in open_:
                    try_exit(b, day, b.pending_exit[1])
            for decided, entry, margin in pending_entries:
                open_entry(entry, day, decided, margin)
            pending_entries = []

        # intraday flags: the day's approximated high/low against breakevens / short strikes
        if rng is not None:
            lo_d, hi_d, _src = rng
            for b in open_.values():
                if b.entry_day >= d:
                    continue
                for what, level, crossed in _levels(b.trade, lo_d, hi_d):
                    if crossed:
                        b.flags.append(f"intraday_breach_likely {d}: NIFTY low/high {lo_d:.2f}/"
                                       f"{hi_d:.2f} (near future less basis) crossed {what} {level}")

        # 2. expiry: legs expiring today (or missed) settle at the index close
        for b in list(open_.values()):
            expiring = [ol for ol in b.trade.legs if (x := expiry_of(ol.leg, d)) is not None and x <= d]
            if not expiring:
                continue
            prices = {}
            for ol in b.trade.legs:
                if (x := expiry_of(ol.leg, d)) is not None and x <= d:
                    at = eod.get(x, day).spot
                    f = settlement_fill(ol.leg, at)
                    prices[ol.leg.security_id] = (f.price, "settlement", f.charges.total)
                    continue
                side = _closing(ol.leg)
                px = _fill_price(day, ol.leg.security_id, side)
                if px is not None:
                    prices[ol.leg.security_id] = (px, "close", _charges(ol.leg, side, px, d))
                else:  # the structure is closed whole: an untraded far leg at its model mark
                    mk, src = _mark(day, models, ol.leg.security_id)
                    mk = mk if mk is not None else D(0)
                    b.flags.append(f"untraded_leg_closed_at_mark {d}: {ol.leg.security_id} {src} {mk}")
                    prices[ol.leg.security_id] = (mk, src, _charges(ol.leg, side, mk, d))
            close_book(b, day, f"expiry settlement: legs expiring {min(expiry_of(ol.leg, d) for ol in expiring)}"
                               f" settled at the index close {day.spot}", prices)

        # 3. exits at the close, each strategy's own rule
        for b in list(open_.values()):
            if b.pending_exit is not None and fill == "next_close":
                continue
            reason = spec.exit_rule(b.trade, view, day.close_time, p)
            if not reason:
                continue
            if fill == "next_close":
                b.pending_exit = (d, reason)
            else:
                try_exit(b, day, reason)

        # 4. entries on today's view
        views = tuple(OpenTradeView(tag=b.trade.tag, strategy=b.trade.strategy,
                                    opened_at=b.trade.opened_at, direction=b.trade.direction,
                                    legs=tuple(x.leg for x in b.trade.legs)) for b in open_.values())
        closes = tuple(eod[x].spot for x in sorted(eod) if x < d)
        inp = StrategyInput(now=now, spot=view.spot, near=None, far=None, open_trades=views,
                            market=view, slots=slots_from([b.trade for b in open_.values()], limits),
                            events=events, extra={"daily_closes": closes})
        cycle = run_cycle(inp, {spec.name: p}, (spec,))
        dec = cycle.decisions.get(spec.name)
        decisions_log.append({"date": d.isoformat(), "entries": [e.tag for e in cycle.entries],
                              "reasons": list(dec.reasons)[:3] if dec else []})
        for entry in cycle.entries:
            if entry.tag in open_:
                continue
            margin = entry_margin_check(entry, spec, view.spot, now, cal, p,
                                     [b.trade for b in open_.values()])
            if isinstance(margin, str):
                denied.append({"tag": entry.tag, "at": now.isoformat(), "reason": margin})
                continue
            if fill == "next_close":
                pending_entries.append((d, entry, margin))
            else:
                open_entry(entry, day, d, margin)

        # 5. mark every open position (settle / model), the equity point
        unreal = D(0)
        margin_used = D(0)
        model_today = 0
        for b in open_.values():
            value = D(0)
            leg_marks = {}
            for ol in b.trade.legs:
                mk, src = _mark(day, models, ol.leg.security_id)
                marks_total += 1
                if src in ("model", "settle_untraded"):
                    marks_model += 1
                    model_today += 1
                    b.flags.append(f"model_marked {d}: {ol.leg.security_id} {src} {mk}")
                if mk is None:
                    mk = ol.entry_price
                leg_marks[ol.leg.security_id] = {"price": str(mk), "source": src}
                value += (mk - ol.entry_price) * ol.leg.quantity * sign(ol.leg.side)
            pnl = (value - b.trade.entry_charges).quantize(_CENT)
            b.trade = b.trade.marked(pnl)
            b.last_mark = {"date": d.isoformat(), "unrealized_pnl": str(pnl), "legs": leg_marks}
            unreal += pnl
            margin_used += D(str((b.trade.context.get("margin") or {}).get("total", 0)))
        curve.append({"date": d.isoformat(), "equity": str((realized + unreal).quantize(_CENT)),
                      "realized": str(realized.quantize(_CENT)), "unrealized": str(unreal.quantize(_CENT)),
                      "open_trades": len(open_), "margin": str(margin_used.quantize(_CENT)),
                      "model_marked_legs": model_today, "spot": str(day.spot), "data": "bhavcopy"})
        prev_day = day
        if progress is not None:
            progress((n + 1) / len(days))

    still_open = [_record(b, status="open", closed_at=None, exit_day=None,
                          reason=(f"open at {end}: marked, not closed"
                                  + (f" (exit decided {b.pending_exit[0]}: {b.pending_exit[1]})"
                                     if b.pending_exit else "")),
                          gross=None, charges=b.trade.entry_charges, net=None)
                  for b in open_.values()]
    m = metrics_mod.compute(closed, [c for c in curve if c["data"] == "bhavcopy"], capital=capital)
    fills = [leg for t in closed + still_open for leg in t["legs"]]
    sources: dict[str, int] = {}
    for leg in fills:
        for key in ("entry_source", "exit_source"):
            if leg.get(key):
                sources[leg[key]] = sources.get(leg[key], 0) + 1
    m.update({
        "data": "bhavcopy", "fill_model": fill, "open_at_end": len(still_open),
        "open_unrealized_pnl": str(sum((D(t["last_mark"]["unrealized_pnl"]) for t in still_open
                                        if t.get("last_mark")), D(0)).quantize(_CENT)),
        "margin_denied": len(denied), "unfilled_entries": len(unfilled),
        "price_sources": dict(sorted(sources.items())),
        "model_marked_share": round(marks_model / marks_total, 4) if marks_total else 0.0,
        "leg_marks": marks_total,
        "coverage": {"sessions": len(days), "sessions_with_data": len(have),
                     "missing_sessions": [x.isoformat() for x in days if x not in eod],
                     "first": have[0].isoformat(), "last": have[-1].isoformat(),
                     "lookback_closes": sum(1 for x in eod if x < start)},
        "equity_curve": curve,
        "run_seconds": round(_time.perf_counter() - t0, 3),
    })
    if denied:
        m["margin_denials"] = denied[:20]
    if unfilled:
        m["unfilled"] = unfilled[:20]
    m["decisions"] = decisions_log
    del prev_day
    return BacktestResult(closed + still_open, m)


def _levels(trade: Trade, lo: Decimal, hi: Decimal) -> list[tuple[str, str, bool]]:
    """(what, level, crossed by today's low/high) for the trade's breach levels: the model
    breakevens stored at entry (DC/MDC), else the short strikes (IC)."""
    out = []
    be = (trade.context or {}).get("breakevens")
    if be and len(be) == 2 and be[0] is not None and be[1] is not None:
        out.append(("the lower model breakeven", f"{float(be[0]):.2f}", float(lo) < float(be[0])))
        out.append(("the upper model breakeven", f"{float(be[1]):.2f}", float(hi) > float(be[1])))
        return out
    for ol in trade.legs:
        leg = ol.leg
        if leg.side is Side.SELL and leg.kind is InstrumentKind.OPT and leg.strike is not None:
            if leg.option_type is not None and leg.option_type.value == "CE":
                out.append(("the short CE strike", str(leg.strike), hi >= leg.strike))
            else:
                out.append(("the short PE strike", str(leg.strike), lo <= leg.strike))
    return out


def _record(b: _Book, *, status: str, closed_at: datetime | None, exit_day: date | None,
            reason: str, gross: Decimal | None, charges: Decimal, net: Decimal | None
            ) -> dict[str, Any]:
    t = b.trade
    ctx = t.context or {}
    return {
        "tag": t.tag, "strategy": t.strategy, "status": status, "direction": t.direction,
        "entry_day": b.entry_day.isoformat(), "opened_at": t.opened_at.isoformat(),
        "exit_day": exit_day.isoformat() if exit_day else None,
        "closed_at": closed_at.isoformat() if closed_at else None,
        "legs": [dict(x) for x in b.legs],
        "entry_net_premium": str(sum((ol.entry_price * ol.leg.quantity * sign(ol.leg.side)
                                      for ol in t.legs), D(0)).quantize(_CENT)),
        "gross_pnl": None if gross is None else str(gross.quantize(_CENT)),
        "charges": str(charges.quantize(_CENT)),
        "realized_pnl": None if net is None else str(net),
        "exit_reason": reason, "exit_kind": exit_kind(reason) if status == "closed" else None,
        "mfe": str(t.mfe), "mae": str(t.mae), "flags": list(dict.fromkeys(b.flags)),
        "last_mark": b.last_mark or None,
        "margin": ctx.get("margin"),
        "context": {k: ctx[k] for k in ("variant", "call_strike", "put_strike", "near", "far",
                                        "breakevens", "planned_exit", "far_kind", "debit",
                                        "credit", "richness_vol_pts") if k in ctx},
    }

