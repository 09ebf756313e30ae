"""Backtest metrics on a daily equity curve, checked by hand."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from engine.backtest import metrics as m


def _curve(*equity: str, open_trades=(1, 1, 0, 1, 0), margin=("100000",) * 5):
    return [{"equity": e, "open_trades": o, "margin": g}
            for e, o, g in zip(equity, open_trades, margin, strict=True)]


def test_five_day_curve_sharpe_sortino_drawdown_by_hand() -> None:
    # equity 1000, 3000, 2000, 5000, 4000 on capital 100 000:
    # daily P&L 1000, 2000, -1000, 3000, -1000 -> returns .01 .02 -.01 .03 -.01
    curve = _curve("1000", "3000", "2000", "5000", "4000")
    rets = m.daily_returns([Decimal(c["equity"]) for c in curve], Decimal(100000))
    assert rets == pytest.approx([0.01, 0.02, -0.01, 0.03, -0.01])
    # mean = 0.04 / 5 = 0.008; deviations .002 .012 -.018 .022 -.018
    # squares 4e-6 + 144e-6 + 324e-6 + 484e-6 + 324e-6 = 1280e-6; / 4 = 320e-6
    sd = math.sqrt(320e-6)
    assert m.sharpe(rets) == pytest.approx(0.008 / sd * math.sqrt(252))
    # downside: (1e-4 + 1e-4) / 5 = 4e-5
    assert m.sortino(rets) == pytest.approx(0.008 / math.sqrt(4e-5) * math.sqrt(252))
    # peak 3000 -> 2000 (1000), peak 5000 -> 4000 (1000): max drawdown ₹1000 = 1 % of capital
    assert m.max_drawdown([Decimal(c["equity"]) for c in curve]) == Decimal(1000)
    trades = [{"gross_pnl": "1200", "charges": "200", "realized_pnl": "1000", "exit_kind": "profit target"},
              {"gross_pnl": "-300", "charges": "200", "realized_pnl": "-500", "exit_kind": "stop loss"},
              {"gross_pnl": "3700", "charges": "200", "realized_pnl": "3500", "exit_kind": "profit target"}]
    out = m.compute(trades, curve, capital=Decimal(100000))
    assert out["trades"] == 3 and out["net_pnl"] == "4000.00" and out["gross_pnl"] == "4600.00"
    assert out["charges"] == "600.00" and out["win_rate"] == round(2 / 3, 4)
    assert out["avg_win"] == "2250.00" and out["avg_loss"] == "-500.00"
    assert out["profit_factor"] == 9.0 and out["expectancy"] == "1333.33"
    assert out["max_drawdown"] == "1000.00" and out["max_drawdown_pct"] == 0.01
    assert out["sharpe"] == round(0.008 / sd * math.sqrt(252), 4)
    # annualized return 0.008 × 252 = 2.016; Calmar = 2.016 / 0.01
    assert out["calmar"] == pytest.approx(201.6)
    # in the market 3 of 5 sessions, at ₹100 000 margin each
    assert out["exposure"] == 0.6 and out["avg_margin"] == "100000.00"
    assert out["pnl_by_exit_reason"] == {"profit target": {"trades": 2, "net_pnl": "4500.00"},
                                         "stop loss": {"trades": 1, "net_pnl": "-500.00"}}


def test_undefined_ratios_are_none_not_zero() -> None:
    flat = _curve("0", "0", "0", "0", "0", open_trades=(0,) * 5)
    out = m.compute([], flat, capital=Decimal(500000))
    assert out["sharpe"] is None and out["sortino"] is None and out["calmar"] is None
    assert out["win_rate"] is None and out["profit_factor"] is None and out["exposure"] == 0.0
    with pytest.raises(ValueError, match="capital base must be positive"):
        m.daily_returns([Decimal(1)], Decimal(0))
