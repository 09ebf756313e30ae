"""Backtest metrics on a daily mark-to-market equity curve and a declared capital base (pure).

Inputs: the closed trades (each with ``gross_pnl``, ``charges``, ``realized_pnl`` (net) and
``exit_reason``), the daily equity curve (one point per session: cumulative net P&L — realized
plus open positions marked at the settle price / model mark, after charges paid — and the
margin in use), and the capital base (``BT_CAPITAL``, or the peak margin used when asked).

Definitions:

* daily return r_t = (E_t − E_{t−1}) / capital, with E_0 = 0 before the first session;
* **Sharpe** = mean(r) / stdev(r) × √252 (sample stdev, n − 1); **Sortino** = mean(r) /
  downside deviation × √252, downside deviation = √(Σ min(r, 0)² / n); None when undefined;
* **max drawdown** = the largest fall of E from its running peak (the peak starts at 0), in
  ₹ and as % of capital; **Calmar** = annualized return / max drawdown %, annualized return =
  mean(r) × 252;
* **profit factor** = gross wins / |gross losses| of net trade P&L; **expectancy** = mean net
  P&L per closed trade; **win rate** = wins / closed trades (a win is net P&L > 0);
* **exposure** = share of sessions with at least one open position, and the mean margin in use
  over those sessions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["TRADING_DAYS", "compute", "daily_returns", "max_drawdown", "sharpe", "sortino"]

TRADING_DAYS = 252
_CENT = Decimal("0.01")


def _money(x: Decimal) -> str:
    return str(Decimal(x).quantize(_CENT))


def daily_returns(equity: Sequence[Decimal], capital: Decimal) -> list[float]:
    """Day-over-day change of the equity curve as a fraction of ``capital`` (E_0 = 0)."""
    if capital <= 0:
        raise ValueError(f"capital base must be positive, got {capital}")
    prev = Decimal(0)
    out = []
    for e in equity:
        out.append(float((Decimal(e) - prev) / capital))
        prev = Decimal(e)
    return out


def sharpe(returns: Sequence[float]) -> float | None:
    """mean / sample stdev × √252; None with fewer than 2 returns or zero variance."""
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns) / n
    var = sum((r - mean) ** 2 for r in returns) / (n - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(TRADING_DAYS)


def sortino(returns: Sequence[float]) -> float | None:
    """mean / downside deviation × √252; None when no return is negative."""
    n = len(returns)
    if n < 2:
        return None
    down = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / n)
    if down <= 0:
        return None
    return (sum(returns) / n) / down * math.sqrt(TRADING_DAYS)


def max_drawdown(equity: Sequence[Decimal]) -> Decimal:
    """Largest fall from the running peak (the peak starts at 0)."""
    peak, dd = Decimal(0), Decimal(0)
    for e in equity:
        peak = max(peak, Decimal(e))
        dd = max(dd, peak - Decimal(e))
    return dd


def _r(x: float | None, n: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, n)


def compute(trades: Sequence[Mapping[str, Any]], curve: Sequence[Mapping[str, Any]], *,
            capital: Decimal, capital_source: str = "BT_CAPITAL") -> dict[str, Any]:
    """Every metric of a run (see the module docstring). ``trades`` are the closed ones;
    ``curve`` points carry ``equity`` (₹ text or Decimal), ``open_trades`` and ``margin``."""
    pnls = [Decimal(str(t["realized_pnl"])) for t in trades]
    gross = sum((Decimal(str(t["gross_pnl"])) for t in trades), Decimal(0))
    charges = sum((Decimal(str(t["charges"])) for t in trades), Decimal(0))
    wins = [x for x in pnls if x > 0]
    losses = [x for x in pnls if x <= 0]
    equity = [Decimal(str(p["equity"])) for p in curve]
    rets = daily_returns(equity, capital) if equity else []
    dd = max_drawdown(equity)
    dd_pct = float(dd / capital) if capital > 0 else None
    ann = (sum(rets) / len(rets) * TRADING_DAYS) if rets else None
    in_market = [p for p in curve if int(p.get("open_trades", 0)) > 0]
    by_reason: dict[str, dict[str, Any]] = {}
    for t, x in zip(trades, pnls, strict=True):
        key = str(t.get("exit_kind") or t.get("exit_reason") or "?")
        row = by_reason.setdefault(key, {"trades": 0, "net_pnl": Decimal(0)})
        row["trades"] += 1
        row["net_pnl"] += x
    loss_sum = -sum(losses, Decimal(0))
    return {
        "trades": len(pnls),
        "net_pnl": _money(sum(pnls, Decimal(0))),
        "gross_pnl": _money(gross),
        "charges": _money(charges),
        "win_rate": round(len(wins) / len(pnls), 4) if pnls else None,
        "avg_win": _money(sum(wins, Decimal(0)) / len(wins)) if wins else None,
        "avg_loss": _money(sum(losses, Decimal(0)) / len(losses)) if losses else None,
        "profit_factor": (_r(float(sum(wins, Decimal(0)) / loss_sum)) if loss_sum > 0
                          else None),
        "expectancy": _money(sum(pnls, Decimal(0)) / len(pnls)) if pnls else None,
        "final_equity": _money(equity[-1]) if equity else "0.00",
        "max_drawdown": _money(dd),
        "max_drawdown_pct": _r(dd_pct),
        "sharpe": _r(sharpe(rets)),
        "sortino": _r(sortino(rets)),
        "calmar": _r(ann / dd_pct) if ann is not None and dd_pct else None,
        "annualized_return": _r(ann),
        "capital": _money(capital),
        "capital_source": capital_source,
        "sessions": len(curve),
        "exposure": round(len(in_market) / len(curve), 4) if curve else None,
        "avg_margin": (_money(sum((Decimal(str(p.get("margin", 0))) for p in in_market), Decimal(0))
                              / len(in_market)) if in_market else None),
        "pnl_by_exit_reason": {k: {"trades": v["trades"], "net_pnl": _money(v["net_pnl"])}
                               for k, v in sorted(by_reason.items())},
    }
