"""The event guard in the end-of-day backtest: the same market events, the same pure guard,
the same blocks as the live scanner (Budget 2025-02-01, RBI MPC 2025-02-07)."""

from __future__ import annotations

from datetime import date, timedelta

from engine.backtest import eod_replay
from engine.backtest.sim_replay import default_params
from engine.events.guard import event_blocks
from engine.events.seed import load_seed
from engine.events.store import upsert_events
from engine.market.calendar import NseCalendar
from engine.settings import knob
from engine.store.tx import transaction
from tests.backtest.eod_fixtures import bhav_db, bhav_pool, bhav_template
from tests.backtest.test_eod_replay import HAND

__all__ = ["bhav_db", "bhav_pool", "bhav_template"]  # fixtures used by this module

FEB3, FEB28 = date(2025, 2, 3), date(2025, 2, 28)
# entries on any near DTE, the guard's defaults (a HIGH event: blocked the session before)
OPEN = {**HAND, "DC_MIN_NEAR_DTE": "1", "DC_MAX_NEAR_DTE": "10"}


def _blocked(result) -> dict[str, str]:
    return {d["date"]: r for d in result.metrics["decisions"] for r in d["reasons"]
            if r.startswith("blocked:")}


def test_feb_2025_backtest_is_blocked_on_the_days_live_would_be(bhav_pool) -> None:
    with transaction(bhav_pool) as conn:
        upsert_events(conn, load_seed())
    guarded = eod_replay.run("DC", FEB3, FEB28, OPEN, pool=bhav_pool)
    free = eod_replay.run("DC", FEB3, FEB28, OPEN, pool=bhav_pool, events=())
    blocked = _blocked(guarded)
    assert not _blocked(free), "no events, no block"
    assert any("RBI MPC" in r and "2025-02-07" in r for r in blocked.values()), blocked
    # live asks the same pure guard at the same instant with the same events
    cal = NseCalendar()
    events = eod_replay.load_events(bhav_pool, FEB3, FEB28)
    params = default_params() | {k: knob(k).coerce(v) for k, v in OPEN.items()}
    params["_calendar"] = cal
    for d in (FEB3 + timedelta(n) for n in range(26)):
        if not cal.is_trading_day(d):
            continue
        now = eod_replay.decision_time("DC", d, params)
        near = next(e for e in cal.listed_nifty_expiries(d) if e > d)  # DTE >= 1
        live = event_blocks("DC", events, now, near, cal, params)
        assert (d.isoformat() in blocked) == bool(live), (d, live, blocked.get(d.isoformat()))
    entered = {e for x in free.metrics["decisions"] for e in x["entries"]}
    assert entered - {e for x in guarded.metrics["decisions"] for e in x["entries"]}, (
        "the guard kept the backtest out of trades it would otherwise have taken")
