"""Black-Scholes / Black-76 pricing and greeks."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from engine.market.pricing import (
    black76_greeks,
    black76_price,
    bs_greeks,
    bs_price,
    year_fraction,
)
from engine.timeutil import IST

STRIKES = np.arange(20000.0, 26001.0, 250.0)


def test_bs_price_put_call_parity_holds_to_machine_precision():
    s, t, r, q = 23000.0, 0.05, 0.065, 0.012
    c = bs_price(s, STRIKES, t, 0.15, True, r, q)
    p = bs_price(s, STRIKES, t, 0.15, False, r, q)
    parity = s * np.exp(-q * t) - STRIKES * np.exp(-r * t)
    np.testing.assert_allclose(c - p, parity, atol=1e-8)


def test_black76_price_matches_textbook_formula():
    from scipy.stats import norm
    f, k, t, v, r = 23100.0, 23500.0, 0.1, 0.18, 0.06
    d1 = (np.log(f / k) + 0.5 * v * v * t) / (v * np.sqrt(t))
    d2 = d1 - v * np.sqrt(t)
    ref = np.exp(-r * t) * (f * norm.cdf(d1) - k * norm.cdf(d2))
    assert black76_price(f, k, t, v, True, r) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("is_call", [True, False])
def test_bs_greeks_match_finite_differences(is_call):
    s, k, t, v, r, q = 23000.0, STRIKES, 0.08, 0.16, 0.065, 0.012
    g = bs_greeks(s, k, t, v, is_call, r, q)
    h = 0.5
    up, dn = bs_price(s + h, k, t, v, is_call, r, q), bs_price(s - h, k, t, v, is_call, r, q)
    np.testing.assert_allclose(g.delta, (up - dn) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(g.gamma, (up - 2 * g.price + dn) / h**2, atol=1e-6)
    dv = 1e-5
    vega = (bs_price(s, k, t, v + dv, is_call, r, q) - bs_price(s, k, t, v - dv, is_call, r, q))
    np.testing.assert_allclose(g.vega, vega / (2 * dv), rtol=1e-5, atol=1e-5)
    dt = 1e-6
    theta = -(bs_price(s, k, t + dt, v, is_call, r, q) - bs_price(s, k, t - dt, v, is_call, r, q))
    np.testing.assert_allclose(g.theta, theta / (2 * dt), rtol=1e-4, atol=1e-3)
    dr = 1e-6
    rho = bs_price(s, k, t, v, is_call, r + dr, q) - bs_price(s, k, t, v, is_call, r - dr, q)
    np.testing.assert_allclose(g.rho, rho / (2 * dr), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("is_call", [True, False])
def test_black76_greeks_match_finite_differences(is_call):
    f, k, t, v, r = 23100.0, STRIKES, 0.02, 0.14, 0.065
    g = black76_greeks(f, k, t, v, is_call, r)
    h = 0.5
    up, dn = black76_price(f + h, k, t, v, is_call, r), black76_price(f - h, k, t, v, is_call, r)
    np.testing.assert_allclose(g.delta, (up - dn) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(g.gamma, (up - 2 * g.price + dn) / h**2, atol=1e-6)
    dv = 1e-5
    vega = black76_price(f, k, t, v + dv, is_call, r) - black76_price(f, k, t, v - dv, is_call, r)
    np.testing.assert_allclose(g.vega, vega / (2 * dv), rtol=1e-5, atol=1e-5)
    dt = 1e-7
    th = black76_price(f, k, t + dt, v, is_call, r) - black76_price(f, k, t - dt, v, is_call, r)
    np.testing.assert_allclose(g.theta, -th / (2 * dt), rtol=1e-4, atol=1e-2)
    dr = 1e-6
    rho = black76_price(f, k, t, v, is_call, r + dr) - black76_price(f, k, t, v, is_call, r - dr)
    np.testing.assert_allclose(g.rho, rho / (2 * dr), rtol=1e-5, atol=1e-4)


def test_black76_price_at_zero_time_is_intrinsic():
    c = black76_price(23000.0, STRIKES, 0.0, 0.2, True, 0.065)
    np.testing.assert_allclose(c, np.maximum(23000.0 - STRIKES, 0.0))
    g = black76_greeks(23000.0, np.array([22000.0, 24000.0]), 0.0, 0.2, True)
    np.testing.assert_array_equal(g.delta, [1.0, 0.0])
    np.testing.assert_array_equal(g.gamma, [0.0, 0.0])


def test_black76_price_vectorizes_mixed_types_and_times():
    k = np.array([22000.0, 23000.0, 24000.0])
    calls = np.array([True, False, True])
    t = np.array([0.01, 0.1, 0.5])
    vec = black76_price(23000.0, k, t, 0.15, calls)
    one = [black76_price(23000.0, k[i], t[i], 0.15, calls[i]) for i in range(3)]
    np.testing.assert_allclose(vec, one, rtol=1e-14)


def test_year_fraction_counts_calendar_time_to_1530_ist():
    now = datetime(2025, 2, 3, 15, 30, tzinfo=IST)
    assert year_fraction(now, date(2025, 2, 6)) == pytest.approx(3 / 365)
    utc_now = (now - timedelta(hours=1)).astimezone(IST).astimezone(
        datetime.now().astimezone().tzinfo)
    assert year_fraction(utc_now, date(2025, 2, 6)) == pytest.approx((3 + 1 / 24) / 365)
    assert year_fraction(now, date(2025, 2, 3)) == 0.0


def test_year_fraction_naive_datetime_raises():
    with pytest.raises(ValueError, match="naive"):
        year_fraction(datetime(2025, 2, 3, 10, 0), date(2025, 2, 6))
