"""order_intents: the record of what was asked of the broker (real PostgreSQL)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace

import psycopg
import pytest

from engine.bus.commands import CommandError, CommandRow
from engine.bus.dispatch import Dispatcher
from engine.execution.intents import IntentStore, blocking_intent, leg_from_json, leg_to_json
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.timeutil import IST

DAY = date(2025, 2, 3)


def _new(store: IntentStore, cid: str, *, tag: str = "IC-1", purpose: str = "entry",
         leg_index: int = 0, **kw):
    args = dict(trade_date=DAY, tag=tag, purpose=purpose, leg_index=leg_index, attempt=0,
                security_id="42528", side="SELL", quantity=75, product="MARGIN",
                segment="NSE_FNO", order_type="LIMIT", price=Decimal("101.05"),
                correlation_id=cid)
    args.update(kw)
    return store.create(**args)


def test_intent_written_new_then_follows_the_order_and_settles(pool) -> None:
    store = IntentStore(pool)
    leg = Leg(security_id="42528", side=Side.SELL, quantity=75, kind=InstrumentKind.OPT,
              option_type=OptionType.CE, expiry=date(2025, 2, 6), strike=Decimal("23500"))
    row = _new(store, "IC-1-0", payload={"leg": leg_to_json(leg)})
    assert (row.state, row.filled_qty, row.settled_at, row.order_id) == ("new", 0, None, None)
    assert row.leg == leg and leg_from_json(leg_to_json(leg)) == leg
    with pool.connection() as conn:  # an order not yet booked blocks new entries
        assert blocking_intent(conn)["correlation_id"] == "IC-1-0"
    row = store.update(row.id, order_id="52000000001", state="PART_TRADED", filled_qty=25)
    row = store.update(row.id, state="TRADED", filled_qty=75, avg_price=Decimal("101.00"))
    assert row.terminal and store.pending_groups() == [("IC-1", "entry")]
    assert store.settle("IC-1", "entry", "booked (test)") == 1
    assert store.pending_groups() == [] and store.get(row.id).resolution == "booked (test)"
    with pool.connection() as conn:
        assert blocking_intent(conn) is None
    with pytest.raises(ValueError, match="state"):
        store.update(row.id, state="FILLED")
    with pytest.raises(ValueError, match="cannot update"):
        store.update(row.id, quantity=1)


def test_intents_unresolved_first_groups_and_unique_short_correlation_ids(pool) -> None:
    store = IntentStore(pool)
    a = _new(store, "IC-1-0")
    _new(store, "IC-1-U0", purpose="flatten", side="BUY")
    b = _new(store, "IC-1-X-1", purpose="exit", leg_index=1)
    store.update(b.id, state="unresolved", reason="every lookup failed")
    with pool.connection() as conn:  # the unresolved one is named first
        assert blocking_intent(conn)["correlation_id"] == "IC-1-X-1"
    assert store.pending_groups() == [("IC-1", "entry"), ("IC-1", "exit")]
    assert [r.correlation_id for r in store.group("IC-1", "entry")] == ["IC-1-0", "IC-1-U0"]
    assert store.has_open("IC-1", "exit") and not store.has_open("IC-2", "entry")
    assert store.correlation_ids("IC-1-X") == {"IC-1-X-1"}
    assert store.correlation_ids("IC_1") == set(), "LIKE wildcards are escaped"
    with pytest.raises(psycopg.errors.UniqueViolation):
        _new(store, "IC-1-0")  # one intent per correlation id, ever
    with pytest.raises(psycopg.errors.CheckViolation):
        _new(store, "X" * 26)  # Dhan refuses more than 25 characters
    with pytest.raises(psycopg.errors.CheckViolation):
        _new(store, "IC-1-9", quantity=0)
    assert store.by_correlation_id("IC-1-0").id == a.id


def _dispatcher(pool) -> Dispatcher:
    """A dispatcher whose checks run against the real table (nothing is sent)."""
    return Dispatcher(SimpleNamespace(pool=pool))  # type: ignore[arg-type]


def _command(**payload) -> CommandRow:
    return CommandRow(id=1, kind="resolve_order", payload=payload, requested_by="ravi",
                      created_at=datetime.now(IST), claimed_by="test")


def test_resolve_order_command_checks_the_intent_and_the_decision(pool) -> None:
    store = IntentStore(pool)
    row = _new(store, "IC-1-0")
    store.update(row.id, state="unresolved")
    done = _new(store, "IC-1-1", leg_index=1)
    store.update(done.id, state="TRADED", filled_qty=75, avg_price=Decimal("99"))
    d = _dispatcher(pool)
    cases = [
        (dict(correlation_id="IC-1-0", action="filled", price="101.5"), "confirm"),
        (dict(correlation_id="IC-1-0", action="guess", confirm=True), "action"),
        (dict(correlation_id="NOPE", action="not_filled", confirm=True), "no order intent"),
        (dict(correlation_id="IC-1-1", action="not_filled", confirm=True), "not unresolved"),
        (dict(correlation_id="IC-1-0", action="filled", confirm=True), "price"),
        (dict(correlation_id="IC-1-0", action="filled", price="x", confirm=True), "price"),
        (dict(correlation_id="IC-1-0", action="filled", price="1", quantity=150,
              confirm=True), "75 units"),
        (dict(correlation_id="IC-1-0", action="flatten", confirm=True), "quantity"),
    ]
    for payload, words in cases:
        with pytest.raises(CommandError, match=words):
            d.dispatch(_command(**payload))


def test_used_ids_of_a_tag_too_long_for_the_plain_form_are_found(pool) -> None:
    """A tag whose correlation ids fall back to the digest form (CAL_ARB-yyyymmdd-HHMMSS-X-1
    is 26 characters) still has every used id found, so a new attempt never reuses one."""
    from engine.broker.dhan.correlation import make_correlation_id

    store = IntentStore(pool)
    base = "CAL_ARB-20250203-101500-X"
    first = make_correlation_id(base, "1", 0)
    assert not first.startswith(base)  # the digest form
    store.create(trade_date=date(2025, 2, 3), tag="CAL_ARB-20250203-101500", purpose="exit",
                 leg_index=1, attempt=0, security_id="35001", side="BUY", quantity=75,
                 product="MARGIN", segment="NSE_FNO", order_type="LIMIT", price=Decimal("1"),
                 correlation_id=first)
    assert first in store.correlation_ids(base)
    assert make_correlation_id(base, "1", 1) not in store.correlation_ids(base)
