"""Backtest a strategy on the seeded simulated market, with the live code path's pure cores.

One loop calls the very functions the actors call: the strategy's ``decide``, the paper
broker's fills with Indian charges, the monitor's exit rules. No actors, no database — so a
grid search is just many calls with different parameter dicts. (The bhavcopy replay comes with
the backtesting issue; this is the simulated-market flavour.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.clock import ManualClock
from engine.execution.paper import NoQuote, PaperBroker
from engine.execution.trades import OpenLeg, Trade
from engine.market.calendar import NseCalendar
from engine.market.simulator import SimulatedMarket
from engine.messages.legs import Leg, Side
from engine.ports.market_data import SimMarketData
from engine.risk.margin import entry_margin_check
from engine.scan_inputs import next_spread_history, strategy_input
from engine.settings import all_knobs, knob
from engine.strategies import registry
from engine.strategies.cycle import run_cycle
from engine.strategies.exits import mark_to_market
from engine.strategies.market_view import build_market_view
from engine.strategies.slots import slot_limits, slots_from
from engine.timeutil import IST


@dataclass(frozen=True, slots=True)
class BacktestResult:
    trades: list[dict[str, Any]]
    metrics: dict[str, Any]


def default_params() -> dict[str, Any]:
    return {k.key: k.default for k in all_knobs()}


def run(strategy: str, start: date, end: date, params: Mapping[str, Any], *, seed: int = 7,
        scan_every: timedelta = timedelta(minutes=1),
        progress: Callable[[float], None] | None = None) -> BacktestResult:
    """Run ``strategy`` from ``start`` to ``end`` (inclusive) on the simulated market.

    Raises:
        ValueError: an unknown strategy (naming the registered ones), a bad parameter, or
            no trading day in the range.
    """
    spec = registry.get(strategy)  # UnknownStrategy (a ValueError) lists the valid names
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    # overrides arrive as text or JSON values (CLI, dashboard): each is checked and typed by
    # its knob, so a bad key or value fails the run with the registry's reason
    p = default_params() | {key: knob(key).coerce(str(value)) for key, value in params.items()}
    p[spec.enabled_key] = True  # a backtest of a strategy runs it, whatever the live switch
    cal = NseCalendar()
    p["_calendar"] = cal
    limits = slot_limits(p)
    days = [d for d in (start + timedelta(n) for n in range((end - start).days + 1))
            if cal.is_trading_day(d)]
    if not days:
        raise ValueError(f"no trading day between {start} and {end}")
    first = datetime.combine(days[0], datetime.min.time(), IST)
    clock = ManualClock(first)  # the engine's own market-data adapter, driven by this loop
    market = SimMarketData(SimulatedMarket(seed, first, cal), clock)
    broker = PaperBroker(market.quote, lambda: int(p["PAPER_SLIPPAGE_TICKS"]))
    history: list[Decimal] = []
    pair: tuple[date, date] | None = None
    open_trades: dict[str, Trade] = {}
    closed: list[dict[str, Any]] = []
    denied: list[dict[str, Any]] = []  # entries refused on margin (RISK_MAX_*MARGIN_PCT)
    for n, day in enumerate(days):
        t = cal.session_open(day)
        close = cal.session_close(day)
        while t <= close:
            clock.advance_to(t)
            snap = market.snapshot()
            inp = strategy_input(snap, t, history, open_trades.values(), None)
            if inp.near is not None and inp.far is not None:
                history, pair, _ = next_spread_history(history, pair, inp.near, inp.far)
            view = build_market_view(snap, cal)
            inp = replace(inp, market=view, slots=slots_from(open_trades.values(), limits),
                          extra={"daily_closes": market.daily_closes(30)})
            decision = run_cycle(inp, {spec.name: p}, (spec,))
            for trade in list(open_trades.values()):
                try:
                    mtm = mark_to_market(trade, view.quote)
                except NoQuote:
                    continue
                open_trades[trade.tag] = trade = trade.marked(mtm)
                reason = spec.exit_rule(trade, view, t, p) or next(
                    (x.reason for x in decision.exits if x.tag == trade.tag), None)
                if reason:
                    closed.append(_close(trade, broker, t, reason))
                    del open_trades[trade.tag]
            for entry in decision.entries:
                if entry.tag in open_trades:
                    continue
                margin = entry_margin_check(entry, spec, Decimal(str(snap.spot)), t, cal, p,
                                         open_trades.values())
                if isinstance(margin, str):  # refused, as the RiskActor would
                    denied.append({"tag": entry.tag, "at": t.isoformat(), "reason": margin})
                    continue
                try:
                    fills = broker.execute(entry.legs, correlation_base=entry.tag, trade_date=day)
                except NoQuote:
                    continue
                open_trades[entry.tag] = Trade(
                    tag=entry.tag, strategy=strategy, mode="backtest", trade_date=day, opened_at=t,
                    direction=entry.direction,
                    legs=tuple(OpenLeg(f.leg, f.price, f.charges.total) for f in fills),
                    context={**entry.context, "margin": margin})
            t += scan_every
        if progress is not None:
            progress((n + 1) / len(days))
    metrics = _metrics(closed)
    metrics["margin_denied"] = len(denied)
    if denied:
        metrics["margin_denials"] = denied[:20]
    return BacktestResult(closed, metrics)


def _close(trade: Trade, broker: PaperBroker, t: datetime, reason: str) -> dict[str, Any]:
    legs = tuple(Leg(security_id=x.leg.security_id, quantity=x.leg.quantity, kind=x.leg.kind,
                     option_type=x.leg.option_type, expiry=x.leg.expiry, strike=x.leg.strike,
                     side=Side.SELL if x.leg.side is Side.BUY else Side.BUY)
                 for x in _exit_order(trade))
    fills = broker.execute(legs, correlation_base=f"{trade.tag}-X", trade_date=t.date())
    gross = trade.gross_pnl({f.leg.security_id: f.price for f in fills})
    charges = trade.entry_charges + sum((f.charges.total for f in fills), Decimal(0))
    return {"tag": trade.tag, "direction": trade.direction, "opened_at": trade.opened_at.isoformat(),
            "closed_at": t.isoformat(), "gross_pnl": str(gross.quantize(Decimal("0.01"))),
            "charges": str(charges.quantize(Decimal("0.01"))),
            "realized_pnl": str((gross - charges).quantize(Decimal("0.01"))),
            "mfe": str(trade.mfe), "mae": str(trade.mae), "exit_reason": reason}


def _exit_order(trade: Trade):
    """Shorts bought back before their wings are sold (never an unhedged short)."""
    return sorted(trade.legs, key=lambda x: 0 if x.leg.side is Side.SELL else 1)


def _metrics(closed: list[dict[str, Any]]) -> dict[str, Any]:
    pnls = [Decimal(c["realized_pnl"]) for c in closed]
    equity, peak, max_dd = Decimal(0), Decimal(0), Decimal(0)
    for x in pnls:
        equity += x
        peak = max(peak, equity)
        max_dd = max(max_dd, peak - equity)
    wins = [x for x in pnls if x > 0]
    return {"trades": len(pnls), "net_pnl": str(sum(pnls, Decimal(0))),
            "win_rate": round(len(wins) / len(pnls), 4) if pnls else None,
            "max_drawdown": str(max_dd),
            "charges": str(sum((Decimal(c["charges"]) for c in closed), Decimal(0)))}
