"""Executor persistence: one transaction per open/close, duplicate closes ignored."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from engine.execution import repository as repo
from engine.execution.paper import NoQuote, PaperBroker, Quote
from engine.execution.trades import OpenLeg, Trade
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.timeutil import IST

T0 = datetime(2025, 2, 3, 10, 0, tzinfo=IST)
T1 = datetime(2025, 2, 3, 11, 0, tzinfo=IST)
LEGS = (Leg(security_id="F", side=Side.SELL, quantity=75, kind=InstrumentKind.FUT),
        Leg(security_id="N", side=Side.BUY, quantity=75, kind=InstrumentKind.FUT))


def _broker(quotes: dict[str, tuple[str, str]]) -> PaperBroker:
    return PaperBroker(lambda sid: Quote(Decimal(quotes[sid][0]), Decimal(quotes[sid][1]),
                                         Decimal(quotes[sid][0])), lambda: 1)


def _open(pool) -> Trade:
    fills = _broker({"F": ("23630", "23631"), "N": ("23500", "23501")}).execute(
        LEGS, correlation_base="DC-1", trade_date=T0.date())
    trade = Trade(tag="DC-1", strategy="DC", mode="paper", trade_date=T0.date(), opened_at=T0,
                  legs=tuple(OpenLeg(f.leg, f.price, f.charges.total) for f in fills))
    assert repo.record_open(pool, trade, fills, T0)
    return trade


def test_paper_fill_buys_at_ask_sells_at_bid_with_slippage(pool) -> None:
    trade = _open(pool)
    prices = {leg.leg.security_id: leg.entry_price for leg in trade.legs}
    assert prices == {"F": Decimal("23629.95"), "N": Decimal("23501.05")}


def test_record_open_same_tag_twice_writes_once(pool) -> None:
    trade = _open(pool)
    assert not repo.record_open(pool, trade, [], T0)
    assert list(repo.load_open(pool)) == ["DC-1"]


def test_record_close_pnl_is_fills_minus_charges_and_duplicate_ignored(pool) -> None:
    trade = _open(pool)
    fills = _broker({"F": ("23610", "23611"), "N": ("23495", "23496")}).execute(
        tuple(Leg(security_id=leg.leg.security_id, side=Side.BUY if leg.leg.side is Side.SELL
                  else Side.SELL, quantity=75, kind=InstrumentKind.FUT) for leg in trade.legs),
        correlation_base="DC-1-x", trade_date=T1.date())
    result = repo.record_close(pool, trade, fills, T1, "z reverted", {})
    # far: sold 23629.95, bought back 23611.05 -> +18.90*75; near: bought 23501.05, sold 23494.95
    assert result.gross_pnl == Decimal("18.90") * 75 + Decimal("-6.10") * 75
    with pool.connection() as conn:
        charges = conn.execute("SELECT sum(charges) AS c FROM executions").fetchone()["c"]
        row = conn.execute("SELECT * FROM closed_trades").fetchone()
        metrics = conn.execute("SELECT * FROM metrics_days").fetchone()
        journal = conn.execute("SELECT * FROM trade_journal").fetchone()
    assert row["realized_pnl"] == (result.gross_pnl - charges).quantize(Decimal("0.01"))
    assert metrics["trades_opened"] == 1 and metrics["trades_closed"] == 1
    assert metrics["realized_pnl"] == row["realized_pnl"]
    assert journal["exit_reason"] == "z reverted"
    assert repo.load_open(pool) == {}
    again = repo.record_close(pool, trade, fills, T1, "again", {})
    assert not again.recorded
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"] == 1
        assert conn.execute("SELECT count(*) AS n FROM executions").fetchone()["n"] == 4


def test_paper_broker_without_quote_fills_nothing() -> None:
    broker = _broker({"F": ("0", "0"), "N": ("23500", "23501")})
    with pytest.raises(NoQuote):
        broker.execute(LEGS, correlation_base="x", trade_date=date(2025, 2, 3))


def test_go_live_seeded_once_then_owned_by_database(pool) -> None:
    assert repo.seed_go_live(pool, {"DC": True, "IC": False}) == {"DC": "paper", "IC": "live"}
    repo.set_stage(pool, "DC", "shadow", "test", T0)
    assert repo.seed_go_live(pool, {"DC": True, "IC": True})["DC"] == "shadow"
    with pytest.raises(ValueError, match="expected one of"):
        repo.set_stage(pool, "DC", "yolo", "test", T0)


def test_replace_open_trades_is_all_or_nothing(pool) -> None:
    trade = _open(pool)
    repo.replace_open_trades(pool, [trade.marked(Decimal("500")), ])
    assert repo.load_open(pool)["DC-1"].mfe == Decimal("500")


def test_funnel_counts_accumulate(pool) -> None:
    with pool.connection() as conn:
        repo.bump_funnel(conn, T0.date(), {"cycles": 1, "signals": 2})
        repo.bump_funnel(conn, T0.date(), {"cycles": 1, "denied": 1})
        funnel = conn.execute("SELECT funnel FROM metrics_days").fetchone()["funnel"]
    assert funnel == {"cycles": 2, "signals": 2, "denied": 1}


def test_close_counts_on_the_ist_exit_date_or_the_expiry_for_a_settlement() -> None:
    def trade(*expiries):
        legs = tuple(OpenLeg(Leg(security_id=str(i), side=Side.BUY, quantity=65,
                                 kind=InstrumentKind.FUT, expiry=e), Decimal(1), Decimal(0))
                     for i, e in enumerate(expiries))
        return Trade(tag="T", strategy="DC", mode="paper", trade_date=T0.date(), opened_at=T0,
                     legs=legs)

    from datetime import UTC
    # 20:00 UTC on Feb 3 is 01:30 IST on Feb 4: the IST date counts, not the UTC one
    late = datetime(2025, 2, 3, 20, 0, tzinfo=UTC)
    assert repo.close_trade_date(trade(date(2025, 2, 27)), late) == date(2025, 2, 4)
    # every leg expired before the close was recorded: it counts on the (last) expiry date
    after = datetime(2025, 3, 3, 10, 0, tzinfo=IST)
    assert repo.close_trade_date(trade(date(2025, 2, 25), date(2025, 2, 27)), after) == \
        date(2025, 2, 27)
    # a leg still alive: the exit date
    assert repo.close_trade_date(trade(date(2025, 2, 25), date(2025, 3, 27)), after) == \
        date(2025, 3, 3)
