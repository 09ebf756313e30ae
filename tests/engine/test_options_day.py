"""An options day end to end on the simulated market: the double calendar opens (four legs),
is marked every cycle, and exits on its own rule; the battle log explains every cycle."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

import pykka
import pytest

from engine.messages.tap import MessageTap
from engine.strategies.registry import names
from engine.timeutil import IST
from tests.engine.harness import Harness

START = datetime(2025, 2, 4, 14, 30, tzinfo=IST)  # Tue; the 06-Feb weekly expires on Thu
END = START.replace(day=5, hour=15, minute=5)
NEAR, FAR = date(2025, 2, 6), date(2025, 2, 13)
#: entry filters opened wide so the structure opens on this seed's afternoon (each filter
#: has its own tests); the exit rules keep their defaults
WIDE_OPEN = {"DC_MIN_IV_EDGE": "-10", "DC_MIN_NEAR_DTE": "2", "DC_MAX_REALIZED_RANGE_PCT": "0.2",
             "DC_BREAKEVEN_BUFFER_SD": "0", "DC_MAX_SPREAD_OF_TARGET": "5", "DC_NEAR_IV_MIN": "0"}
DC_EXITS = ("profit target", "stop loss", "breakeven", "max hold", "planned exit")


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def test_double_calendar_opens_is_marked_and_exits_on_its_rule(db_url: str) -> None:
    tap = MessageTap()
    h = Harness(db_url, start=START, strategies=("DC",), settings=WIDE_OPEN, tap=tap).start()
    try:
        h.run_until(END.hour, END.minute, END)
        closed = h.query("SELECT * FROM closed_trades ORDER BY closed_at")
        assert closed, "the double calendar neither opened nor closed"
        first = closed[0]
        tag = first["tag"]
        assert first["strategy"] == "DC" and tag.startswith("DC-20250204-")
        assert any(x in first["exit_reason"] for x in DC_EXITS), first["exit_reason"]

        execs = h.query("SELECT * FROM executions WHERE tag = %s ORDER BY id", tag)
        opens = [e for e in execs if e["action"] == "OPEN"]
        legs = first["payload"]["legs"]
        shape = sorted((x["side"], date.fromisoformat(x["expiry"]), x["option_type"]) for x in legs)
        assert shape == [("BUY", FAR, "CE"), ("BUY", FAR, "PE"),
                         ("SELL", NEAR, "CE"), ("SELL", NEAR, "PE")]
        assert len({x["quantity"] for x in legs}) == 1, "every leg the same units"
        for option_type in ("CE", "PE"):  # a calendar: the same strike in both expiries
            assert len({x["strike"] for x in legs if x["option_type"] == option_type}) == 1
        assert sorted(e["security_id"] for e in opens) == sorted(x["security_id"] for x in legs)
        closes = [e for e in execs if e["action"] == "CLOSE"]
        assert sorted(e["security_id"] for e in closes) == sorted(e["security_id"] for e in opens)
        cash = sum(((1 if e["side"] == "SELL" else -1) * e["price"] * e["quantity"]
                    for e in execs), Decimal(0))
        charges = sum((e["charges"] for e in execs), Decimal(0))
        assert first["realized_pnl"] == (cash - charges).quantize(Decimal("0.01"))

        marks = [e for e in tap.entries()
                 if e.type.endswith("MarkedToMarket") and e.fields["tag"] == tag]
        held_minutes = (first["closed_at"] - first["opened_at"]).total_seconds() / 60
        assert len(marks) >= 2 and len(marks) >= min(held_minutes, 60) * 0.9, (
            "marked every monitor cycle while open")

        rows = h.query("SELECT created_at, selected_strategy, eligibility, rejections, payload"
                       " FROM strategy_battle_log ORDER BY id")
        by_day = defaultdict(int)
        for r in rows:
            by_day[r["created_at"].astimezone(IST).date()] += 1
        # one row per scan cycle: 14:30..15:29, then 09:15..15:05
        assert by_day == {START.date(): 60, END.date(): 351}, "one row per scan cycle"
        for r in rows:  # every strategy is either selected or says why not
            for name in names():
                assert r["selected_strategy"] == name or r["rejections"].get(name), (r, name)
        entry = [r for r in rows if tag in r["payload"].get("entry_tags", [])]
        assert len(entry) == 1 and entry[0]["selected_strategy"] == "DC"
        metrics = entry[0]["payload"]["metrics"]["DC"]
        assert Decimal(metrics["debit"]) > 0 and len(metrics["legs"]) == 4
    finally:
        h.stop()


def test_a_high_event_tomorrow_blocks_the_double_calendar_and_the_battle_log_says_so(
        db_url: str) -> None:
    from datetime import time

    from engine.events.model import MarketEvent
    from engine.events.store import upsert_events
    from engine.store.tx import transaction

    rbi = MarketEvent(date=date(2025, 2, 5), time=time(10, 0), kind="RBI_MPC",
                      title="RBI MPC decision", impact="HIGH", country="IN", source="test",
                      source_url="https://rbi.org.in/")
    h = Harness(db_url, start=START, strategies=("DC",), settings=WIDE_OPEN)
    with transaction(h.pool) as conn:
        upsert_events(conn, [rbi])
    h.start()
    try:
        h.run_until(15, 0)
        assert h.query("SELECT count(*) AS n FROM executions")[0]["n"] == 0, "no entry"
        rows = h.query("SELECT rejections FROM strategy_battle_log ORDER BY id")
        assert len(rows) == 31  # 14:30 .. 15:00
        for r in rows:
            assert any(x.startswith("blocked: RBI MPC decision 2025-02-05 10:00 IST (HIGH)")
                       for x in r["rejections"]["DC"]), r["rejections"]["DC"]
    finally:
        h.stop()
