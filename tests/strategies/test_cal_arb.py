"""The calendar-spread strategy is a pure function: same input, same decision."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from engine.messages.legs import Side
from engine.settings import all_knobs
from engine.strategies.base import FuturesQuote, OpenTradeView, StrategyInput
from engine.strategies.cal_arb import PARAM_KEYS, decide
from engine.timeutil import IST

NOW = datetime(2025, 2, 3, 11, 0, tzinfo=IST)
PARAMS = {k.key: k.default for k in all_knobs() if k.key in PARAM_KEYS} | {"CAL_ARB_ENABLED": True}


def _quote(sid: str, ltp: str, expiry: date) -> FuturesQuote:
    p = Decimal(ltp)
    return FuturesQuote(security_id=sid, expiry=expiry, ltp=p, bid=p - Decimal("0.5"),
                        ask=p + Decimal("0.5"), lot_size=75)


def _input(far_ltp: str, history, open_trades=(), paused=None) -> StrategyInput:
    return StrategyInput(now=NOW, spot=Decimal("23400"),
                         near=_quote("N1", "23500", date(2025, 2, 27)),
                         far=_quote("F1", far_ltp, date(2025, 3, 27)),
                         spread_history=tuple(Decimal(x) for x in history),
                         open_trades=open_trades, entries_paused_reason=paused)


HISTORY = [str(120 + (i % 5) - 2) for i in range(100)]  # mean 120, stdev ~1.41


def test_dc_warming_up_is_ineligible_with_reason() -> None:
    d = decide(_input("23620", HISTORY[:10]), PARAMS)
    assert not d.eligible and "warming up: 10/30" in d.reasons[0]


def test_dc_rich_spread_sells_far_buys_near_at_touch() -> None:
    d = decide(_input("23630", HISTORY), PARAMS)  # spread 130 -> z ~ 7
    assert d.eligible and len(d.entries) == 1
    far_leg, near_leg = d.entries[0].legs
    assert (far_leg.side, near_leg.side) == (Side.SELL, Side.BUY)
    assert far_leg.price == Decimal("23629.5") and near_leg.price == Decimal("23500.5")
    assert far_leg.quantity == 75 and d.entries[0].direction == "SHORT_SPREAD"


def test_dc_cheap_spread_buys_far() -> None:
    d = decide(_input("23610", HISTORY), PARAMS)  # spread 110 -> z ~ -7
    assert d.entries[0].direction == "LONG_SPREAD"
    assert d.entries[0].legs[0].side == Side.BUY


def test_dc_within_threshold_no_entry_reason() -> None:
    d = decide(_input("23620", HISTORY), PARAMS)
    assert d.entries == () and "within entry threshold" in d.reasons[0]


def test_dc_paused_envelope_becomes_rejection_reason() -> None:
    d = decide(_input("23630", HISTORY, paused="daily loss cap"), PARAMS)
    assert d.entries == () and d.reasons == ("risk paused: daily loss cap",)


def test_dc_reversion_exits_open_trade_and_slots_limit_entries() -> None:
    trade = OpenTradeView(tag="CAL_ARB-1", strategy="CAL_ARB", opened_at=NOW, direction="SHORT_SPREAD", legs=())
    reverted = decide(_input("23620", HISTORY, open_trades=(trade,)), PARAMS)
    assert [e.tag for e in reverted.exits] == ["CAL_ARB-1"]
    full = decide(_input("23630", HISTORY, open_trades=(trade,)), PARAMS)
    assert full.entries == () and "slots full" in full.reasons[0]


def test_dc_threshold_parameter_changes_decision() -> None:
    strict = dict(PARAMS, CAL_ARB_ZSCORE_ENTRY=Decimal("9.5"))
    assert decide(_input("23630", HISTORY), strict).entries == ()
    assert decide(_input("23630", HISTORY), PARAMS).entries != ()
