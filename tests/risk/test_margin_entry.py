"""The RiskActor's margin check in a real engine (real actors, PostgreSQL, simulated market):
an entry over the cap is denied naming the margin, the cap and the capital; an admitted entry
carries its margin into the trade; the total cap counts open positions; the live stage asks
Dhan's calculator (the local simulator over HTTP) and falls back to the approximation."""

from __future__ import annotations

import logging
from decimal import Decimal

import pykka
import pytest

from engine.broker.dhan.margin import DhanMarginCalculator
from engine.market.calendar import NseCalendar
from engine.messages.commands import OpenPosition
from engine.messages.legs import Leg, Side
from engine.messages.tap import MessageTap
from engine.risk.margin import estimate_margin
from engine.settings import Settings, all_knobs
from engine.strategies import double_calendar as dc
from engine.strategies.market_view import build_market_view
from tests.broker.conftest import client, make_client  # noqa: F401 - fixtures
from tests.conftest import eventually
from tests.dhan_fixtures import make_sim, sim  # noqa: F401 - fixtures
from tests.engine.harness import Harness

#: DC's default plan: out the session before the 06-Feb near expiry (no expiry-day jump)
PLAN = {"direction": "LONG_CALENDAR", "planned_exit": "2025-02-05T15:00:00+05:30"}


@pytest.fixture
def engine(db_url):
    made: list[Harness] = []

    def start(settings: dict[str, str] | None = None, *, live: bool = False,
              services: dict | None = None) -> tuple[Harness, MessageTap]:
        tap = MessageTap()
        h = Harness(db_url, tap=tap, strategies=())  # no strategy scans: the test sends
        for key, value in (settings or {}).items():
            Settings(h.pool).set(key, value, updated_by="test")
        if live:
            with h.pool.connection() as conn:
                conn.execute("INSERT INTO go_live_state (strategy, stage, updated_by) VALUES"
                             " ('DC', 'live', 'test') ON CONFLICT (strategy) DO UPDATE SET"
                             " stage = 'live'")
        h.engine.services.update(services or {})
        made.append(h.start())
        return h, tap

    yield start
    for h in made:
        h.stop()
    pykka.ActorRegistry.stop_all(timeout=10)


def _dc_legs(h: Harness) -> tuple[tuple[Leg, ...], Decimal]:
    """A ±1 SD double calendar on the engine's simulated market now, and the spot."""
    snap = h.engine.market.snapshot()
    params = {k.key: k.default for k in all_knobs()} | {"_calendar": NseCalendar()}
    s = dc.build(build_market_view(snap, NseCalendar()), params, code="1SD", call_sd=1.0,
                 put_sd=1.0)
    return tuple(s.to_legs()), Decimal(str(snap.spot))


def _send(h: Harness, tag: str, legs, params) -> None:
    h.engine.directory.get("risk").tell(OpenPosition(
        ts=h.engine.clock.now(), strategy="DC", tag=tag, legs=legs, params=params))


def _denied(tap: MessageTap, tag: str) -> str:
    hits = eventually(lambda: [e for e in tap.entries()
                               if e.type == "EntryDenied" and e.fields["tag"] == tag])
    return hits[0].fields["reason"]


def test_entry_over_the_margin_cap_is_denied_with_the_reason(engine) -> None:
    h, tap = engine({"RISK_MAX_MARGIN_PCT": "0.05"})
    legs, spot = _dc_legs(h)
    expected = estimate_margin(legs, spot, h.engine.clock.now().date(), NseCalendar(),
                               expiry_day=False)
    _send(h, "DC-MARGIN-1", legs, PLAN)
    reason = _denied(tap, "DC-MARGIN-1")
    assert reason == (f"margin ₹{expected.total} (approximation) exceeds RISK_MAX_MARGIN_PCT "
                      "0.05 of capital ₹500000 (cap ₹25000.00) [paper]")
    assert not [e for e in tap.entries() if e.type == "OpenPosition" and e.sender == "risk"]


def test_admitted_entry_carries_its_margin_and_the_total_cap_counts_it(engine) -> None:
    h, tap = engine({"RISK_MAX_TOTAL_MARGIN_PCT": "0.2"})  # ₹100000 for everything open
    legs, spot = _dc_legs(h)
    _send(h, "DC-MARGIN-2", legs, PLAN)
    row = eventually(lambda: h.query("SELECT payload FROM open_trades WHERE tag = %s",
                                     "DC-MARGIN-2"), timeout=15)[0]
    recorded = row["payload"]["context"]["margin"]  # the trade context = the entry params
    expected = estimate_margin(legs, spot, h.engine.clock.now().date(), NseCalendar(),
                               expiry_day=False)
    assert recorded["source"] == "approximation" and recorded["held_into_jump"] is False
    assert Decimal(recorded["total"]) == expected.total < Decimal("100000")
    assert recorded["approximation"]["premium"] == str(expected.premium)
    # the same structure again: its margin plus the open one's exceeds the total cap
    _send(h, "DC-MARGIN-3", legs, PLAN)
    reason = _denied(tap, "DC-MARGIN-3")
    assert f"+ open positions' ₹{expected.total}" in reason
    assert "exceeds RISK_MAX_TOTAL_MARGIN_PCT 0.2 of capital ₹500000 (cap ₹100000.00)" in reason


def _dhan_condor(server) -> tuple[tuple[Leg, ...], Decimal]:
    market = server.sim.market
    expiry = market.expiries()[0]
    chain = market.option_chain(expiry)
    atm = min(chain, key=lambda k: abs(k - market.spot()))
    legs = []
    for side, strike, ot in (("SELL", atm + 200, "CE"), ("BUY", atm + 400, "CE"),
                             ("SELL", atm - 200, "PE"), ("BUY", atm - 400, "PE")):
        e = chain[strike][ot]
        legs.append(Leg(security_id=str(e.security_id), side=Side(side), quantity=75,
                        option_type=ot, expiry=expiry, strike=Decimal(str(strike)),
                        price=Decimal(str(e.ltp))))
    return tuple(legs), Decimal(str(market.spot()))


def test_live_stage_asks_dhans_calculator(engine, sim, client) -> None:  # noqa: F811
    calc = DhanMarginCalculator(client)
    legs, spot = _dhan_condor(sim)
    dhan = calc.basket(legs).total.quantize(Decimal("0.01"))
    h, tap = engine({"RISK_MAX_MARGIN_PCT": "0.05"}, live=True,
                    services={"margin_calculator": calc})
    _send(h, "DC-LIVE-1", legs, {**PLAN, "spot": str(spot)})
    reason = _denied(tap, "DC-LIVE-1")
    assert reason.startswith(f"margin ₹{dhan} (dhan) exceeds RISK_MAX_MARGIN_PCT 0.05")
    assert reason.endswith("[live]")


def test_live_stage_falls_back_to_the_approximation_when_dhan_fails(engine, sim, client,  # noqa: F811
                                                                      caplog) -> None:
    h, tap = engine({"RISK_MAX_MARGIN_PCT": "0.05"}, live=True,
                    services={"margin_calculator": DhanMarginCalculator(client)})
    legs, spot = _dc_legs(h)  # the engine's own contracts: unknown to the Dhan simulator
    expected = estimate_margin(legs, spot, h.engine.clock.now().date(), NseCalendar(),
                               expiry_day=False)
    with caplog.at_level(logging.WARNING, logger="engine.actors.risk"):
        _send(h, "DC-LIVE-2", legs, PLAN)
        reason = _denied(tap, "DC-LIVE-2")
    assert reason.startswith(f"margin ₹{expected.total} (approximation) exceeds")
    assert any("Dhan margin calculator failed for DC-LIVE-2" in r.getMessage()
               for r in caplog.records)
