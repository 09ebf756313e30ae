"""Pure reconciliation core: books (live trades) against broker net positions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from engine.execution.reconcile import (
    CONFIRMED,
    ORPHAN,
    PENDING,
    ReconState,
    book_positions,
    reconcile,
)
from engine.execution.trades import OpenLeg, Trade
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.settings.registry import knob
from engine.timeutil import IST

T0 = datetime(2025, 2, 3, 10, 0, tzinfo=IST)


def _trade(tag: str, *legs: tuple[str, Side, int], mode: str = "live") -> Trade:
    return Trade(tag=tag, strategy="DC", mode=mode, trade_date=T0.date(), opened_at=T0,
                 legs=tuple(OpenLeg(Leg(security_id=sid, side=side, quantity=qty,
                                        kind=InstrumentKind.FUT), Decimal("100"), Decimal("1"))
                            for sid, side, qty in legs))


DC = _trade("DC-1", ("NEAR", Side.BUY, 75), ("FAR", Side.SELL, 75))
IN_BOOKS = {"NEAR": 75, "FAR": -75}


def _run(checks: list[tuple[list[Trade], dict[str, int]]]):
    state, results = ReconState(), []
    for trades, broker in checks:
        result = reconcile(trades, broker, state)
        state = result.state
        results.append(result)
    return results


def _actions(result) -> list[tuple[str, str]]:
    return [(f.action, f.security_id) for f in result.findings]


def test_book_positions_signed_sum_of_live_legs_only() -> None:
    paper = _trade("P-1", ("NEAR", Side.BUY, 150), mode="paper")
    other = _trade("DC-2", ("NEAR", Side.SELL, 25))
    expected, holders = book_positions([DC, paper, other])
    m = "MARGIN"  # the key is (security, product): Dhan keeps one position per product
    assert expected == {("NEAR", m): 50, ("FAR", m): -75}
    assert holders == {("NEAR", m): ("DC-1", "DC-2"), ("FAR", m): ("DC-1",)}


def test_reconcile_books_agree_with_broker_no_findings() -> None:
    (result,) = _run([([DC], {**IN_BOOKS, "OLD": 0})])
    assert result.findings == () and result.flat_candidates == () and result.resolved == ()
    assert dict(result.state.sightings) == {}


def test_reconcile_mismatch_pending_then_confirmed_once() -> None:
    broker = {"NEAR": 150, "FAR": -75}  # someone bought one more lot of NEAR by hand
    first, second, third = _run([([DC], broker)] * 3)
    assert _actions(first) == [(PENDING, "NEAR")]
    assert _actions(second) == [(CONFIRMED, "NEAR")]
    assert third.findings == (), "an unchanged confirmed mismatch is reported once"
    finding = second.findings[0]
    assert finding.details() == {"security_id": "NEAR", "product": "MARGIN", "expected": 75,
                                 "broker": 150,
                                 "trade_tags": ["DC-1"], "checks": 2}
    assert "confirmed" in finding.text() and "DC-1" in finding.text()


def test_reconcile_confirmed_mismatch_that_changes_is_reported_again() -> None:
    results = _run([([DC], {"NEAR": 150, "FAR": -75}), ([DC], {"NEAR": 150, "FAR": -75}),
                    ([DC], {"NEAR": 225, "FAR": -75})])
    assert [_actions(r) for r in results] == [[(PENDING, "NEAR")], [(CONFIRMED, "NEAR")],
                                              [(CONFIRMED, "NEAR")]]
    assert results[2].findings[0].broker == 225


def test_reconcile_fill_in_flight_explained_on_second_check_clears() -> None:
    # check 1: the executor's close filled at the broker, the books still hold the trade;
    # check 2: the close is recorded, the books and the broker agree (both flat)
    first, second = _run([([DC], {"NEAR": 0, "FAR": 0}), ([], {"NEAR": 0, "FAR": 0})])
    assert sorted(_actions(first)) == [(PENDING, "FAR"), (PENDING, "NEAR")]
    assert second.findings == () and second.flat_candidates == ()
    assert second.resolved == ("FAR:MARGIN", "NEAR:MARGIN")
    assert dict(second.state.sightings) == {} and dict(second.state.flat) == {}


def test_reconcile_resolved_mismatch_cleared_then_returns_as_pending() -> None:
    odd = {"NEAR": 150, "FAR": -75}
    results = _run([([DC], odd), ([DC], IN_BOOKS), ([DC], odd)])
    assert _actions(results[0]) == [(PENDING, "NEAR")]
    assert results[1].findings == () and results[1].resolved == ("NEAR:MARGIN",)
    assert _actions(results[2]) == [(PENDING, "NEAR")], "a fresh sighting, not a confirmation"


def test_reconcile_orphan_silent_once_then_alert_once() -> None:
    broker = {**IN_BOOKS, "OPT": -50}
    first, second, third = _run([([DC], broker)] * 3)
    assert first.findings == ()  # an entry in flight looks like this for one check
    assert _actions(second) == [(ORPHAN, "OPT")]
    assert third.findings == ()
    orphan = second.findings[0]
    assert (orphan.expected, orphan.broker, orphan.trade_tags) == (0, -50, ())
    assert "not adopted" in orphan.text()


def test_reconcile_entry_in_flight_orphan_then_recorded_no_alert() -> None:
    first, second = _run([([], IN_BOOKS), ([DC], IN_BOOKS)])
    assert first.findings == () and second.findings == ()
    assert second.resolved == ("FAR:MARGIN", "NEAR:MARGIN")


def test_reconcile_flat_trade_candidate_after_two_checks() -> None:
    flat = {"NEAR": 0, "FAR": 0}
    first, second, third = _run([([DC], flat)] * 3)
    assert first.flat_candidates == () and second.flat_candidates == ("DC-1",)
    assert third.flat_candidates == (), "a flat candidate is reported once"
    assert sorted(_actions(second)) == [(CONFIRMED, "FAR"), (CONFIRMED, "NEAR")]
    assert all(f.flat_trades == ("DC-1",) for f in second.findings)
    assert second.findings[0].details()["flat_at_broker"] == ["DC-1"]


def test_reconcile_shared_security_is_never_a_flat_candidate() -> None:
    # two trades on NEAR: flatness at the broker cannot be attributed to one of them
    other = _trade("DC-2", ("NEAR", Side.BUY, 75))
    results = _run([([DC, other], {"NEAR": 0, "FAR": 0})] * 2)
    assert results[1].flat_candidates == ()
    assert sorted(_actions(results[1])) == [(CONFIRMED, "FAR"), (CONFIRMED, "NEAR")]


def test_reconcile_paper_trades_are_not_expected_at_the_broker() -> None:
    paper = _trade("P-1", ("NEAR", Side.BUY, 75), ("FAR", Side.SELL, 75), mode="paper")
    results = _run([([paper], {})] * 3)
    assert all(r.findings == () and r.flat_candidates == () for r in results)


def test_reconcile_offsetting_trades_with_broker_position_is_mismatch() -> None:
    a = _trade("A", ("X", Side.BUY, 75))
    b = _trade("B", ("X", Side.SELL, 75))
    (result,) = _run([([a, b], {"X": 75})])
    assert _actions(result) == [(PENDING, "X")]
    assert result.findings[0].trade_tags == ("A", "B")


def test_reconcile_orphan_becomes_held_restarts_as_mismatch() -> None:
    trade = _trade("T", ("OPT", Side.SELL, 25))
    results = _run([([], {"OPT": -50}), ([], {"OPT": -50}), ([trade], {"OPT": -50})])
    assert _actions(results[1]) == [(ORPHAN, "OPT")]
    assert _actions(results[2]) == [(PENDING, "OPT")]


def test_reconcile_non_integer_broker_quantity_refused() -> None:
    with pytest.raises(TypeError, match="NEAR"):
        reconcile([DC], {"NEAR": "75"}, ReconState())  # type: ignore[dict-item]


def test_recon_every_cycles_knob_registered_with_default_four() -> None:
    k = knob("RECON_EVERY_CYCLES")
    assert k.default == 4 and k.coerce("1") == 1


def test_reconcile_per_security_and_product_over_every_trade() -> None:
    """Two strategies hold the same contract: the broker's net is compared with their sum. An
    INTRADAY position of a security the books hold as MARGIN is not explained by them, and is
    flagged (a MARGIN shortfall on the same security too), whichever side it is on."""
    ic = _trade("IC-1", ("NEAR", Side.SELL, 25))
    books = {("NEAR", "MARGIN"): 50, ("FAR", "MARGIN"): -75}
    (agree,) = _run([([DC, ic], books)])
    assert agree.findings == ()
    first, second = _run([([DC, ic], {("NEAR", "MARGIN"): 25, ("NEAR", "INTRADAY"): 25,
                                      ("FAR", "MARGIN"): -75})] * 2)
    assert [(f.action, f.security_id, f.product) for f in first.findings] == [
        (PENDING, "NEAR", "MARGIN")]
    assert [(f.action, f.security_id, f.product, f.broker) for f in second.findings] == [
        (ORPHAN, "NEAR", "INTRADAY", 25), (CONFIRMED, "NEAR", "MARGIN", 25)]
    assert "(INTRADAY)" in second.findings[0].text()
    assert second.findings[1].trade_tags == ("DC-1", "IC-1")
    # a trade whose orders were INTRADAY (from its intents) is booked under that product
    (by_product,) = _run([([ic], {("NEAR", "INTRADAY"): -25})])
    assert [f.action for f in by_product.findings] == [PENDING]
    (ok,) = [reconcile([ic], {("NEAR", "INTRADAY"): -25}, ReconState(),
                       products={"IC-1": "INTRADAY"})]
    assert ok.findings == ()
