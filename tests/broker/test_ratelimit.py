"""Client-side rate limits: fake-clock unit tests plus real bursts against the simulator."""

from __future__ import annotations

import itertools
import threading
from decimal import Decimal

import pytest

from engine.broker.dhan.errors import RateLimitError
from engine.broker.dhan.ratelimit import (
    DHAN_LIMITS,
    EndpointClass,
    RateLimiter,
    limiter_for,
    reset_registry,
)
from tests.broker.conftest import atm_option, order


class FakeTime:
    """A clock whose sleep advances it (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _max_in_window(times: list[float], span: float) -> int:
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u < t + span) for i, t in enumerate(times)), default=0)


def test_ratelimit_orders_fake_clock_never_exceeds_any_window():
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep)
    for _ in range(600):
        limiter.acquire(EndpointClass.ORDER, max_wait=3600)
    times = limiter.history(EndpointClass.ORDER)
    assert _max_in_window(times, 1.0) <= 10
    assert _max_in_window(times, 60.0) <= 250
    assert ft.now - 1000.0 >= 120  # 600 orders need > 2 minutes at 250/min


def test_ratelimit_option_chain_unique_request_spaced_3s_fake_clock():
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep)
    stamps: dict[str, list[float]] = {"A": [], "B": []}
    waits = []
    for key in ["A", "A", "B", "A", "B"]:
        waits.append(limiter.acquire(EndpointClass.DATA, key=("oc", key)))
        stamps[key].append(ft.now)
    for times in stamps.values():
        assert all(b - a >= 3.0 for a, b in itertools.pairwise(times))
    assert waits[0] == 0 and waits[1] >= 3.0
    assert waits[2] == 0  # a different request is not held back


def test_ratelimit_option_chain_interval_carries_the_jitter_margin():
    # The limiter stamps a request before it is sent; if the first one took longer to reach
    # Dhan than the second, exactly 3.0 s here is under 3 s there (CI saw 2.9998 s and a 805).
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep)
    limiter.acquire(EndpointClass.DATA, key=("oc", "A"))
    waited = limiter.acquire(EndpointClass.DATA, key=("oc", "A"))
    assert waited == pytest.approx(DHAN_LIMITS.unique_interval + DHAN_LIMITS.margin)


def test_ratelimit_max_wait_exceeded_raises():
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep)
    limiter.acquire(EndpointClass.QUOTE)
    with pytest.raises(RateLimitError, match="max_wait"):
        limiter.acquire(EndpointClass.QUOTE, max_wait=0.5)


def test_ratelimit_registry_shares_one_limiter_per_client_id():
    reset_registry()
    assert limiter_for("1000000001") is limiter_for("1000000001")
    assert limiter_for("1000000001") is not limiter_for("1000000002")
    assert limiter_for("1000000001").limits is DHAN_LIMITS
    reset_registry()


def test_ratelimit_burst_of_50_orders_from_threads_within_server_limits(sim, make_client):
    shared = RateLimiter()
    clients = [make_client(sim, limiter=shared) for _ in range(5)]
    token = sim.sim.issue_token()
    for c in clients:  # all five users share one token and one limiter
        c.transport._token_provider = lambda: token
    sid, lot = atm_option(sim)
    errors: list[Exception] = []

    def burst(c, n):
        for i in range(10):
            try:
                c.place_order(order(sid, lot, f"burst-{n}-{i}", order_type="LIMIT",
                                    price=Decimal("1")))
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=burst, args=(c, n)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    served = sim.sim.accepted_times(EndpointClass.ORDER)
    assert len(served) == 50
    assert _max_in_window(served, 1.0) <= 10
    assert all(r["status"] == 200 for r in sim.sim.requests("POST", "/v2/orders"))


def test_ratelimit_option_chain_second_identical_request_waits_3s(sim, client):
    expiry = client.expiry_list()[0]
    client.option_chain(expiry)
    client.option_chain(expiry)  # the limiter holds this one back ~3 s (one real wait)
    stamps = [r["t"] for r in sim.sim.requests("POST", "/v2/optionchain")]
    assert len(stamps) == 2 and stamps[1] - stamps[0] >= 3.0
    assert all(r["status"] == 200 for r in sim.sim.requests("POST", "/v2/optionchain"))


def test_ratelimit_simulator_refuses_unthrottled_option_chain_with_805(sim, make_client):
    from engine.broker.dhan.ratelimit import RateLimits

    loose = RateLimiter(RateLimits(unique_interval=0.0))
    client = make_client(sim, limiter=loose, get_retries=0)
    expiry = client.expiry_list()[0]
    client.option_chain(expiry)
    with pytest.raises(RateLimitError) as info:
        client.option_chain(expiry)
    assert info.value.code == "805" and info.value.status == 429


def test_ratelimit_priority_calls_keep_a_reserved_share_of_the_budget():
    """Order lookups, cancels and exits are priority calls: routine calls of the same class
    (positions/funds polls, entries) can never take the whole second's budget from them."""
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep)
    routine = DHAN_LIMITS.limit_for(EndpointClass.NON_TRADING, DHAN_LIMITS.windows[
        EndpointClass.NON_TRADING][0], priority=False)
    assert routine == 15  # of 20/s, a quarter is kept for priority calls
    for _ in range(routine):
        assert limiter.acquire(EndpointClass.NON_TRADING) == 0
    with pytest.raises(RateLimitError):  # a routine call now waits for the next second ...
        limiter.acquire(EndpointClass.NON_TRADING, max_wait=0.5)
    for _ in range(20 - routine):  # ... while an order lookup still goes at once
        assert limiter.acquire(EndpointClass.NON_TRADING, priority=True, max_wait=0.0) == 0
    with pytest.raises(RateLimitError):  # and the server's own limit is never exceeded
        limiter.acquire(EndpointClass.NON_TRADING, priority=True, max_wait=0.5)
    assert _max_in_window(limiter.history(EndpointClass.NON_TRADING), 1.0) <= 20
    orders = DHAN_LIMITS.windows[EndpointClass.ORDER][0]
    assert DHAN_LIMITS.limit_for(EndpointClass.ORDER, orders, priority=False) == 7
    assert DHAN_LIMITS.limit_for(EndpointClass.ORDER, orders, priority=True) == 10
