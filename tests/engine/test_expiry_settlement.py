"""A paper trade still holding a contract at its expiry is settled by the exchange's rules:
expired legs at intrinsic value against the NIFTY close of the expiry day (STT on a long
option exercised in the money), the rest filled at the touch; nothing is left to settle
by hand. A live trade's settlement is the broker's (tests/faults/test_broker_initiated_closes)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

import pykka
import pytest

from engine.execution import repository as repo
from engine.execution.trades import OpenLeg, Trade
from engine.market.simulator import SimulatedMarket
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.timeutil import IST
from tests.engine.harness import Harness

NEAR, FAR = date(2025, 2, 6), date(2025, 2, 13)  # the 06-Feb weekly expired on a Thursday
OPENED = datetime(2025, 2, 5, 11, 0, tzinfo=IST)
NEXT_MORNING = datetime(2025, 2, 7, 9, 15, tzinfo=IST)


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _leg(snap, expiry: date, strike: float, kind: str, side: Side, qty: int) -> OpenLeg:
    chain = snap.chain(expiry)
    quote = chain.quote_at(chain.index_of(strike), kind)
    price = Decimal(str(quote.ask if side is Side.BUY else quote.bid))
    return OpenLeg(leg=Leg(security_id=str(quote.security_id), side=side, quantity=qty,
                           kind=InstrumentKind.OPT, option_type=OptionType(kind), expiry=expiry,
                           strike=Decimal(str(strike))),
                   entry_price=price, entry_charges=Decimal("20.00"))


def test_expired_legs_settle_at_intrinsic_with_exercise_stt(db_url: str) -> None:
    market = SimulatedMarket(7, OPENED)
    settle = Decimal(repr(float(market.snapshot_at(
        datetime(2025, 2, 6, 15, 30, tzinfo=IST)).spot))).quantize(Decimal("0.01"))
    strike = float((settle - 300) // 50 * 50)  # the CE ends 300+ in the money, the PE worthless
    snap = market.snapshot_at(OPENED)
    qty = snap.lot_size
    legs = (_leg(snap, NEAR, strike, "CE", Side.BUY, qty),    # long, exercised ITM: STT
            _leg(snap, NEAR, strike, "PE", Side.SELL, qty),   # short, expires worthless
            _leg(snap, FAR, strike, "CE", Side.SELL, qty))    # not expired: filled at the touch
    trade = Trade(tag="DC-20250205-110000", strategy="DC", mode="paper",
                  trade_date=OPENED.date(), opened_at=OPENED, legs=legs, direction="TEST")
    h = Harness(db_url, start=NEXT_MORNING, strategies=())
    assert repo.record_open(h.pool, trade, [], OPENED)
    h.start()
    try:
        h.run_until(9, 20)
        closed = h.query("SELECT * FROM closed_trades")
        assert [c["tag"] for c in closed] == [trade.tag], "the expired trade was not settled"
        assert closed[0]["exit_reason"] == f"expiry settlement: {NEAR} expiry"
        assert h.query("SELECT count(*) AS n FROM open_trades")[0]["n"] == 0
        rows = {r["security_id"]: r for r in h.query(
            "SELECT * FROM executions WHERE action = 'CLOSE'")}
        ce, pe, far = (rows[x.leg.security_id] for x in legs)
        intrinsic = settle - Decimal(str(strike))
        assert ce["price"] == intrinsic and ce["side"] == "SELL"
        stt = (intrinsic * qty * Decimal("0.00125")).quantize(Decimal("1"), ROUND_HALF_UP)
        assert ce["charges"] == stt > 0, "STT on the exercised long CE (0.125 % before Apr 2026)"
        assert pe["price"] == 0 and pe["charges"] == 0 and pe["side"] == "BUY"
        assert far["price"] > 0 and far["charges"] > 0 and far["side"] == "BUY"
        gross = sum(((r["price"] - x.entry_price) * (1 if x.leg.side is Side.BUY else -1) * qty
                     for r, x in zip((ce, pe, far), legs, strict=True)), Decimal(0))
        charges = Decimal("60.00") + ce["charges"] + far["charges"]
        assert closed[0]["realized_pnl"] == (gross - charges).quantize(Decimal("0.01"))
    finally:
        h.stop()
