"""Where an open trade's exit rules stand: stop and target in rupees and how far away, the
spot levels and the times at which its strategy's ``exit_rule`` would close it (pure).

This restates the thresholds the strategies' exit rules compare against, from the same
parameters and the same helpers, for the dashboard; it decides nothing (the monitor runs
the strategies' own ``exit_rule``). Per strategy:

* IC (``engine.strategies.iron_condor``): stop at a loss of the stop multiple (clamped to
  the maximum loss) × the credit, target at ``IC_PROFIT_TARGET_PCT`` × the credit, both on
  P&L net of entry and exit charges; spot through a short strike; the session before
  expiry (DTE ≤ 1); ``IC_MAX_HOLD_MINUTES``.
* DC and MDC (``engine.strategies.double_calendar``): stop at ``DC_STOP_LOSS_PCT`` × the
  debit, target at the structure's target % × the debit (net of costs); spot beyond the
  model breakevens stored at entry; the planned exit; ``DC_MAX_HOLD_DAYS`` sessions.
* Any other (CAL_ARB, imported trades; ``engine.strategies.exits``): stop / target as
  fractions of the margin proxy on the MTM; the expiry-day exit; ``<S>_MAX_HOLD_MINUTES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from engine.execution.trades import Trade, sign
from engine.market.calendar import NseCalendar
from engine.messages.legs import OptionType, Side
from engine.settings import SettingError, knob
from engine.timeutil import IST, MARKET_OPEN

__all__ = ["ExitRule", "exit_plan"]

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class ExitRule:
    kind: str                       # stop | target | spot | time
    label: str
    level: Decimal | None = None    # rupees (stop: a loss, negative) or index points (spot)
    distance: Decimal | None = None  # rupees / points still to go (>= 0 means not reached)
    at: datetime | None = None      # when a time rule fires
    basis: str = ""                 # how a stop/target level is set, e.g. "0.50 × the credit"
    base: Decimal | None = None     # the rupees that basis refers to (the credit, the debit)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = self.at.isoformat() if self.at else None
        return d


def _get(params: Mapping[str, Any], key: str, default: Any = None) -> Any:
    if key in params:
        return params[key]
    try:
        return knob(key).default
    except SettingError:  # an unknown key: the caller's default
        return default


def _hhmm(params: Mapping[str, Any], key: str) -> time:
    return time.fromisoformat(str(_get(params, key, "15:00")))


def _sessions_before(cal: NseCalendar, d: date, n: int) -> date:
    for _ in range(max(0, n)):
        d = cal.previous_trading_day(d)
    return d


def _pnl_rules(pnl: Decimal, stop: Decimal, target: Decimal, stop_basis: str,
               target_basis: str, base: Decimal | None) -> list[ExitRule]:
    stop, target = stop.quantize(CENT), target.quantize(CENT)
    base = base.quantize(CENT) if base is not None else None
    return [ExitRule("stop", "stop loss", -stop, (pnl + stop).quantize(CENT), basis=stop_basis, base=base),
            ExitRule("target", "profit target", target, (target - pnl).quantize(CENT),
                     basis=target_basis, base=base)]


def _ic(trade: Trade, pnl: Decimal, spot: Decimal | None, now: datetime,
        params: Mapping[str, Any], cal: NseCalendar) -> list[ExitRule]:
    from engine.strategies.iron_condor import EXIT_DTE, _stop_multiple

    rules: list[ExitRule] = []
    legs = [x.leg for x in trade.legs]
    shorts = {leg.option_type: leg for leg in legs if leg.side is Side.SELL}
    wings = {leg.option_type: leg for leg in legs if leg.side is Side.BUY}
    credit = -trade.entry_charges - sum((x.entry_price * x.leg.quantity * sign(x.leg.side)
                                         for x in trade.legs), Decimal(0))
    complete = set(shorts) == set(wings) == {OptionType.CE, OptionType.PE}
    if complete and credit > 0:
        sc, sp = shorts[OptionType.CE], shorts[OptionType.PE]
        units = min(leg.quantity for leg in legs)
        width = max(wings[OptionType.CE].strike - sc.strike, sp.strike - wings[OptionType.PE].strike)
        _mult, eff, _clamped = _stop_multiple(Decimal(str(_get(params, "IC_STOP_LOSS_MULT"))),
                                             credit, width * units - credit)
        target = Decimal(str(_get(params, "IC_PROFIT_TARGET_PCT"))) * credit
        of = "the credit (P&L net of charges)"
        rules += _pnl_rules(pnl, eff * credit, target, f"{eff.quantize(CENT)} × {of}",
                            f"{_get(params, 'IC_PROFIT_TARGET_PCT')} × {of}", credit)
        if spot is not None:
            rules.append(ExitRule("spot", f"spot at or above the short {sc.strike:.0f} CE",
                                  sc.strike, sc.strike - spot))
            rules.append(ExitRule("spot", f"spot at or below the short {sp.strike:.0f} PE",
                                  sp.strike, spot - sp.strike))
    near = min(leg.expiry for leg in legs if leg.expiry is not None)
    day = _sessions_before(cal, near, EXIT_DTE)
    rules.append(ExitRule("time", f"session before expiry {near:%d %b} (DTE ≤ {EXIT_DTE})",
                          at=datetime.combine(day, MARKET_OPEN, tzinfo=IST)))
    minutes = int(_get(params, "IC_MAX_HOLD_MINUTES", 10080))
    rules.append(ExitRule("time", f"max hold {minutes} minutes", at=trade.opened_at + timedelta(minutes=minutes)))
    return rules


def _dc(trade: Trade, pnl: Decimal, spot: Decimal | None, now: datetime,
        params: Mapping[str, Any], cal: NseCalendar) -> list[ExitRule]:
    from engine.strategies.double_calendar import profit_target_pct
    from engine.strategies.market_view import dte

    rules: list[ExitRule] = []
    ctx = trade.context or {}
    debit = trade.entry_charges + sum((x.entry_price * x.leg.quantity * sign(x.leg.side)
                                       for x in trade.legs), Decimal(0))
    if debit > 0:
        stop = Decimal(str(_get(params, "DC_STOP_LOSS_PCT"))) * debit
        pct = profit_target_pct(None, None, {**params}, far_kind=str(ctx.get("far_kind") or "next_weekly"))
        of = "the debit (P&L net of costs)"
        rules += _pnl_rules(pnl, stop, pct * debit, f"{_get(params, 'DC_STOP_LOSS_PCT')} × {of}",
                            f"{pct} × {of}", debit)
    be = ctx.get("breakevens") or ()
    if spot is not None and len(be) == 2:
        lo, hi = (Decimal(str(x)) if x is not None else None for x in be)
        if lo is not None:
            rules.append(ExitRule("spot", f"spot below the model breakeven {lo:.0f}", lo, spot - lo))
        if hi is not None:
            rules.append(ExitRule("spot", f"spot above the model breakeven {hi:.0f}", hi, hi - spot))
    near = min(x.leg.expiry for x in trade.legs if x.leg.expiry is not None)
    n = int(_get(params, "DC_EXIT_DAYS_BEFORE_EXPIRY", 1))
    at = _hhmm(params, "EXPIRY_DAY_EXIT_TIME" if n == 0 else "DC_EXIT_TIME")
    rules.append(ExitRule("time", f"planned exit {n} session(s) before near expiry {near:%d %b}, "
                                  f"{at:%H:%M}",
                          at=datetime.combine(_sessions_before(cal, near, n), at, tzinfo=IST)))
    entry_left = ctx.get("near_dte_at_entry")
    if entry_left is None:
        entry_left = dte(cal, trade.opened_at.astimezone(IST).date(), near)
    max_hold = int(_get(params, "DC_MAX_HOLD_DAYS", 5))
    fire_left = int(entry_left) - max_hold  # the exit fires once sessions left <= this
    if fire_left >= 0:
        day = _sessions_before(cal, near, fire_left)
        rules.append(ExitRule("time", f"max hold {max_hold} session(s)",
                              at=datetime.combine(day, MARKET_OPEN, tzinfo=IST)))
    return rules


def _generic(trade: Trade, mtm: Decimal, now: datetime, params: Mapping[str, Any]) -> list[ExitRule]:
    from engine.strategies.exits import margin_proxy

    rules: list[ExitRule] = []
    p = trade.strategy
    proxy = margin_proxy(trade)
    if proxy > 0:
        stop_pct = params.get(f"{p}_STOP_LOSS_PCT", "0.5")
        target_pct = params.get(f"{p}_PROFIT_TARGET_PCT", "0.3")
        of = "the margin proxy (on the MTM)"
        rules += _pnl_rules(mtm, Decimal(str(stop_pct)) * proxy, Decimal(str(target_pct)) * proxy,
                            f"{stop_pct} × {of}", f"{target_pct} × {of}", proxy)
    expiries = [x.leg.expiry for x in trade.legs if x.leg.expiry is not None]
    if expiries:
        cutoff = _hhmm(params, "EXPIRY_DAY_EXIT_TIME")
        rules.append(ExitRule("time", f"expiry-day exit at {cutoff:%H:%M}",
                              at=datetime.combine(min(expiries), cutoff, tzinfo=IST)))
    max_hold = params.get(f"{p}_MAX_HOLD_MINUTES")
    if max_hold is not None:
        rules.append(ExitRule("time", f"time exit after {max_hold} minutes",
                              at=trade.opened_at + timedelta(minutes=int(max_hold))))
    return rules


def exit_plan(trade: Trade, *, mtm: Decimal | None, pnl_net: Decimal | None,
              spot: Decimal | None, now: datetime, params: Mapping[str, Any],
              calendar: NseCalendar | None = None) -> dict[str, Any]:
    """The trade's exit rules with levels and distances, and the first time rule due.

    ``mtm`` is the engine's mark (touch, net of entry charges); ``pnl_net`` the same less
    the estimated exit charges (the P&L the IC and DC rules compare). Returns
    ``{"rules": [...], "next_time": rule | None, "nearest": rule | None}`` where
    ``nearest`` is the P&L or spot rule with the least distance still to go.
    """
    cal = calendar or NseCalendar()
    base = pnl_net if pnl_net is not None else mtm
    try:
        if trade.strategy == "IC":
            rules = _ic(trade, base or Decimal(0), spot, now, params, cal)
        elif trade.strategy in ("DC", "MDC"):
            rules = _dc(trade, base or Decimal(0), spot, now, params, cal)
        else:
            rules = _generic(trade, mtm or Decimal(0), now, params)
    except (ValueError, KeyError, LookupError, TypeError) as exc:
        return {"rules": [], "next_time": None, "nearest": None,
                "problem": f"cannot restate the exit rules of {trade.tag}: {exc}"}
    if base is None:  # no mark: distances would be made up
        rules = [r if r.kind != "stop" and r.kind != "target" else
                 ExitRule(r.kind, r.label, r.level, None, r.at, r.basis, r.base) for r in rules]
    timed = sorted((r for r in rules if r.at is not None), key=lambda r: r.at)
    ranged = [r for r in rules if r.distance is not None and r.kind != "spot"]
    nearest = min(ranged, key=lambda r: r.distance, default=None)
    return {"rules": [r.to_json() for r in rules],
            "next_time": timed[0].to_json() if timed else None,
            "nearest": nearest.to_json() if nearest else None}
