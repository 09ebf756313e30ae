"""The order-rate governor against the real simulator: one budget for entries and exits,
exits first, the rate measured from the simulator's own request log."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from engine.broker.dhan.errors import RateLimitError
from engine.broker.dhan.governor import ENTRY, EXIT, OrderGovernor
from tests.broker.conftest import atm_option, order, wait_for

RATE = 5


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class _Recording(OrderGovernor):
    """The governor, noting which thread got each slot (thread name = correlation id)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.granted_to: list[str] = []

    def acquire(self, *args, **kwargs) -> float:
        waited = super().acquire(*args, **kwargs)
        self.granted_to.append(threading.current_thread().name)
        return waited


def test_governor_burst_of_exits_and_entries_exits_first_rate_never_exceeded(sim, make_client):
    frozen: list[float] = [time.monotonic()]  # time stands still until every caller queued
    governor = _Recording(RATE, clock=lambda: frozen[0] if frozen else time.monotonic())
    client = make_client(sim, governor=governor)
    sid, lot = atm_option(sim)
    for _ in range(RATE):  # the second's budget is used up: every caller below queues
        governor.acquire("NSE_FNO", rank=ENTRY)
    governor.granted_to.clear()
    errors: list[Exception] = []

    def send(exit_: bool) -> None:
        cid = threading.current_thread().name
        try:
            client.place_order(order(sid, lot, cid, order_type="LIMIT", price=Decimal("1"),
                                     transaction_type="SELL" if exit_ else "BUY"),
                               priority=exit_)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = []
    for n, (cid, exit_) in enumerate([(f"E{i}", False) for i in range(6)]
                                     + [(f"X{i}", True) for i in range(6)]):
        threads.append(threading.Thread(target=send, args=(exit_,), name=cid))
        threads[-1].start()  # six entries queue first, one after the other, then six exits
        wait_for(lambda n=n + 1: governor.stats().waiting == n)
    frozen.clear()
    for t in threads:
        t.join(30)

    assert errors == []
    assert governor.granted_to == [f"X{i}" for i in range(6)] + [f"E{i}" for i in range(6)], \
        "every exit before any entry; each rank in arrival order"
    log = sim.sim.requests("POST", "/v2/orders")
    assert len(log) == 12 and all(r["status"] == 200 for r in log)
    times = [r["t"] for r in log]
    assert _max_in_window(times, 1.0) <= RATE, "the simulator saw more than the budget"
    assert max(times) - min(times) >= 1.9, "12 orders at 5/s span two seconds or more"
    by_arrival = [o.body["correlationId"] for o in sorted(
        sim.sim.exchange.orders.values(), key=lambda o: int(o.order_id))]
    assert {c[0] for c in by_arrival[:RATE]} == {"X"}, f"the first second is exits: {by_arrival}"
    assert {c[0] for c in by_arrival[-2:]} == {"E"}, "the last second is entries"


def test_governor_entry_that_cannot_get_a_slot_is_not_sent(sim, make_client):
    governor = OrderGovernor(1, window_s=5.0)
    client = make_client(sim, governor=governor)
    governor.acquire("NSE_FNO", rank=EXIT)
    with pytest.raises(RateLimitError, match="order not sent"):
        governor.acquire("NSE_FNO", rank=ENTRY, max_wait=0.3)
    assert governor.stats().waiting == 0, "a caller that gave up leaves the queue"
    assert sim.sim.requests("POST", "/v2/orders") == []
    assert client.governor is governor


def test_governor_follows_the_setting_and_refuses_a_zero_rate():
    governor = OrderGovernor(8)
    governor.follow(lambda: 3)
    governor.acquire("NSE_FNO")
    assert governor.rate == 3
    governor.follow(lambda: 0)  # a bad value keeps the last good budget
    governor.acquire("NSE_FNO")
    assert governor.rate == 3
    with pytest.raises(ValueError, match="at least 1"):
        OrderGovernor(0)
