"""Kill random actors mid-cycle 50 times in one simulated session, then check the books.

Crashes are injected with the `Crash` fault message while a tick's work is in flight, so
messages queued behind it are lost exactly as they would be when a real bug kills an actor.
Invariants afterwards: no duplicate position, no lost close, open_trades equals the
executor's positions, and each closed trade's P&L equals its fills minus charges.

Two strategies trade: the two-leg futures spread and the four-leg iron condor (with entry
rules loosened and a 15-minute hold, so condors open and close all session long), so a
crash lands between the legs of a four-leg entry or exit as often as of a two-leg one.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pykka
import pytest

from engine.messages.commands import Crash, GetStatus
from tests.conftest import eventually
from tests.engine.harness import Harness

ROLES = ("scanner", "risk", "executor", "monitor", "notifier")
#: crashes injected, the chance of one after each tick (the fifty land in about the first hour
#: and a half of trading), and the calm period after them in which the monitor retries what a
#: crash swallowed (the session used to run on to 15:29: four more hours of ordinary trading
#: after the last crash, six times the test's time, for no check that the calm half hour and
#: the other engine tests do not make)
CRASHES, CRASH_CHANCE, CALM = 50, 0.06, timedelta(minutes=30)
#: iron condors all session: any vol, a short hold, two at once, no loss-streak pause
CONDORS_ALL_DAY = {"IC_MIN_IV_RV_RATIO": "0.5", "IC_MAX_HOLD_MINUTES": "15", "IC_SLOTS": "2",
                   "IC_MIN_CREDIT_PCT": "0.05", "IC_MAX_SPREAD_OF_TARGET": "5",
                   "IC_ENTRY_START": "09:30", "RISK_MAX_LOSS_STREAK": "100"}


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


@pytest.mark.slow
def test_fifty_random_crashes_keep_books_consistent(db_url: str) -> None:
    rng = random.Random(20250203)
    h = Harness(db_url, restart_policy={"backoff": (0.01, 0.05), "max_restarts": 1000,
                                        "period_s": 60.0},
                strategies=("CAL_ARB", "IC"), settings=CONDORS_ALL_DAY).start()
    directory, scheduler = h.engine.directory, h.engine.scheduler
    original = scheduler._dispatch
    crashes: list[str] = []

    def dispatch_then_maybe_crash(planned):
        sent = original(planned)
        if len(crashes) < CRASHES and rng.random() < CRASH_CHANCE:
            role = rng.choice(ROLES)
            ref = directory.get(role)
            if ref is not None:
                ref.tell(Crash(reason="chaos"))
                crashes.append(role)
                eventually(lambda: (r := directory.get(role)) is not None and r is not ref
                           and r.is_alive(), timeout=10)
        return sent

    scheduler._dispatch = dispatch_then_maybe_crash
    try:
        day = h.engine.clock.now()
        while len(crashes) < CRASHES and h.engine.clock.now() < day.replace(hour=15, minute=0):
            now = h.engine.clock.now() + timedelta(minutes=5)
            h.run_until(now.hour, now.minute)
        scheduler._dispatch = original
        calm = min(h.engine.clock.now() + CALM, day.replace(hour=15, minute=29))
        h.run_until(calm.hour, calm.minute)  # monitor retries any close a crash swallowed
        assert len(crashes) == CRASHES, f"only {len(crashes)} crashes injected"
        assert h.escalations == []

        opens = h.query("SELECT tag, security_id, count(*) AS n FROM executions"
                        " WHERE action = 'OPEN' GROUP BY tag, security_id")
        assert all(r["n"] == 1 for r in opens), "a leg was filled twice on open"
        closes = h.query("SELECT tag, security_id, count(*) AS n FROM executions"
                         " WHERE action = 'CLOSE' GROUP BY tag, security_id")
        assert all(r["n"] == 1 for r in closes), "a leg was closed twice"

        open_db = sorted(r["tag"] for r in h.query("SELECT tag FROM open_trades"))
        executor_open = directory.get("executor").ask(GetStatus(), timeout=10)["open"]
        assert open_db == executor_open
        closed = {r["tag"]: r for r in h.query("SELECT * FROM closed_trades")}
        opened_tags = {r["tag"] for r in opens}
        assert opened_tags == set(closed) | set(open_db), "a trade vanished"
        assert not set(closed) & set(open_db)

        fills = defaultdict(lambda: Decimal(0))
        charges = defaultdict(lambda: Decimal(0))
        for e in h.query("SELECT * FROM executions"):
            sign = 1 if e["side"] == "SELL" else -1
            fills[e["tag"]] += sign * e["price"] * e["quantity"]
            charges[e["tag"]] += e["charges"]
        for tag, row in closed.items():
            expected = (fills[tag] - charges[tag]).quantize(Decimal("0.01"))
            assert row["realized_pnl"] == expected, tag
        assert len(closed) > 0
        legs = defaultdict(set)
        for r in opens:
            legs[r["tag"]].add(r["security_id"])
        four_leg = [t for t in closed if len(legs[t]) == 4]
        assert len(four_leg) >= 5, f"only {len(four_leg)} four-leg trades closed: {sorted(closed)}"
        assert any(len(legs[t]) == 2 for t in opened_tags), "no two-leg trade"
    finally:
        scheduler._dispatch = original
        h.stop()
