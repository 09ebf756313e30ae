"""Vectorized implied-volatility solver: round trips, edge cases, bound violations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.market.iv import IVStatus, implied_vol_black76, implied_vol_bs, iv_and_greeks
from engine.market.pricing import black76_greeks, black76_price, bs_price

F = 23000.0
R = 0.065


def _identifiable(vega: np.ndarray, price: np.ndarray) -> np.ndarray:
    """Vol is pinned to 1e-6 only where a 1e-6 vol move changes the price above fp noise."""
    return vega * 1e-6 > 1e-9 * price + 1e-12


def test_iv_round_trip_grid_strikes_expiries_vols_exact_to_1e_6():
    k, t, v, c = np.meshgrid(np.arange(18000.0, 28001.0, 250.0),
                             np.array([1 / 365 / 24, 1 / 365, 3 / 365, 7 / 365, 30 / 365, 1.0]),
                             np.array([0.05, 0.1, 0.15, 0.3, 0.6, 1.2]),
                             np.array([True, False]), indexing="ij")
    g = black76_greeks(F, k, t, v, c, R)
    res = implied_vol_black76(g.price, F, k, t, c, R)
    ident = _identifiable(g.vega, g.price) & (g.price > 0)
    assert ident.sum() > 0.5 * ident.size  # the rest: prices underflow (1h, 5000 pts OTM)
    assert np.all(res.ok[ident])
    assert np.max(np.abs(res.iv[ident] - v[ident])) < 1e-6


@settings(max_examples=300, deadline=None)
@given(k_ratio=st.floats(0.6, 1.6), t_days=st.floats(0.01, 800.0), vol=st.floats(0.02, 2.0),
       call=st.booleans(), r=st.floats(0.0, 0.12))
def test_iv_round_trip_hypothesis(k_ratio, t_days, vol, call, r):
    k, t = F * k_ratio, t_days / 365.0
    g = black76_greeks(F, k, t, vol, call, r)
    res = implied_vol_black76(g.price, F, k, t, call, r)
    if _identifiable(np.atleast_1d(g.vega), np.atleast_1d(g.price))[0] and g.price > 1e-250:
        assert res.status == IVStatus.OK
        assert abs(float(res.iv) - vol) < 1e-6
    else:  # not identifiable: either solved (price reproduced) or a clean reason code
        assert res.status in (IVStatus.OK, IVStatus.NO_TIME_VALUE, IVStatus.NONPOSITIVE_PRICE)


def test_iv_minutes_to_expiry_deep_itm_and_otm():
    t = 10 / (365 * 24 * 60)  # ten minutes
    k = np.array([22800.0, 22950.0, 23000.0, 23050.0, 23200.0])
    for call in (True, False):
        g = black76_greeks(F, k, t, 0.25, call, R)
        res = implied_vol_black76(g.price, F, k, t, call, R)
        ident = _identifiable(g.vega, g.price)
        assert np.all(np.abs(res.iv[ident] - 0.25) < 1e-6)


def test_iv_bound_violations_give_nan_and_reason_without_losing_chain():
    k = np.array([22000.0, 22000.0, 24000.0, 23000.0, 23000.0, 23000.0, 23000.0, -1.0])
    call = np.array([True, True, True, True, True, False, True, True])
    t = np.array([0.02, 0.02, 0.02, 0.02, 0.0, 0.02, 0.02, 0.02])
    df = np.exp(-R * 0.02)
    price = np.array([
        df * 900.0,  # below intrinsic (1000)
        df * 1000.0,  # exactly intrinsic: no time value
        df * 23000.0,  # call worth the whole forward
        200.0,  # fine
        200.0,  # expired
        0.0,  # zero price
        np.nan,  # missing
        50.0,  # bad strike
    ])
    res = implied_vol_black76(price, F, k, t, call, R)
    assert list(res.status) == [IVStatus.BELOW_INTRINSIC, IVStatus.NO_TIME_VALUE,
                                IVStatus.ABOVE_UPPER_BOUND, IVStatus.OK, IVStatus.EXPIRED,
                                IVStatus.NONPOSITIVE_PRICE, IVStatus.INVALID_INPUT,
                                IVStatus.INVALID_INPUT]
    assert np.isnan(res.iv[[0, 1, 2, 4, 5, 6, 7]]).all()
    assert 0.05 < res.iv[3] < 0.5
    assert res.reasons()[0] == "BELOW_INTRINSIC"


def test_iv_zero_bid_tick_price_far_otm_is_solved():
    res = implied_vol_black76(0.05, F, 25000.0, 2 / 365, True, R)
    assert res.status == IVStatus.OK
    assert abs(black76_price(F, 25000.0, 2 / 365, float(res.iv), True, R) - 0.05) < 1e-9


def test_implied_vol_bs_round_trip_on_spot_with_dividends():
    k = np.arange(21000.0, 25001.0, 500.0)
    p = bs_price(23000.0, k, 0.1, 0.17, False, 0.065, 0.012)
    res = implied_vol_bs(p, 23000.0, k, 0.1, False, 0.065, 0.012)
    np.testing.assert_allclose(res.iv, 0.17, atol=1e-8)


def test_iv_and_greeks_nan_greeks_where_iv_unsolved():
    res, g = iv_and_greeks(np.array([150.0, -1.0]), F, 23000.0, 0.01, True, R)
    assert res.ok.tolist() == [True, False]
    assert np.isfinite(g.delta[0]) and np.isnan(g.delta[1])
    assert abs(g.price[0] - 150.0) < 1e-8


def _bench_like_chain(n_strikes: int = 150):
    """Two weekly expiries (2 and 9 days), CE+PE, +-n/2 strikes of 50 points, smile + noise."""
    rng = np.random.default_rng(7)
    k = np.tile(F + 50.0 * (np.arange(n_strikes) - n_strikes // 2), 4)
    t = np.repeat(np.array([2.0, 9.0]) / 365.0, 2 * n_strikes)
    call = np.tile(np.r_[np.ones(n_strikes, bool), np.zeros(n_strikes, bool)], 2)
    zs = 3.0 * np.tanh(np.log(k / F) / (0.13 * np.sqrt(t)) / 3.0)
    vol = 0.13 * (1 - 0.12 * zs + 0.03 * zs * zs) + rng.uniform(0, 0.01, k.size)
    return k, t, call, vol


def test_iv_realistic_chain_solved_by_the_fast_path_to_1e_10():
    """Rational guess + two Householder steps: no element of a real-looking chain needs the
    safeguarded fallback (iterations == 2), and the vols are exact far beyond 1e-6."""
    k, t, call, vol = _bench_like_chain()
    g = black76_greeks(F, k, t, vol, call, R)
    res = implied_vol_black76(g.price, F, k, t, call, R)
    assert res.iterations == 2
    ident = _identifiable(g.vega, g.price) & (g.price > 0)
    assert ident.sum() > 300
    assert np.all(res.ok[ident])
    assert np.max(np.abs(res.iv[ident] - vol[ident])) < 1e-10


def test_normalized_solver_wide_sweep_fast_path_and_fallback_agree():
    """|ln F/K| up to 3, total vol 1e-3..4: the fast path is accepted everywhere and exact to
    1e-9 relative in s; the safeguarded fallback alone gives the same answers."""
    from engine.market import iv as ivmod
    from engine.market.pricing import normalized_otm_price

    rng = np.random.default_rng(11)
    a = np.abs(rng.uniform(-3.0, 3.0, 20000))
    s_true = np.exp(rng.uniform(np.log(1e-3), np.log(4.0), a.size))
    b = normalized_otm_price(a, s_true)
    keep = (b > 1e-250) & (b < np.exp(-0.5 * a) * (1 - 1e-12))
    a, s_true, b = a[keep], s_true[keep], b[keep]
    with np.errstate(all="ignore"):
        s, ok = ivmod._lbr_solve(a, b, np.log(b))
        s_fb, conv, _ = ivmod._solve_safeguarded(a, np.log(b))
    assert ok.all()
    assert np.max(np.abs(s / s_true - 1)) < 1e-9
    assert conv.all()
    assert np.max(np.abs(s_fb / s_true - 1)) < 1e-9


def test_fallback_path_alone_still_exact(monkeypatch):
    """Force every element through the safeguarded fallback: same exactness as the fast path."""
    from engine.market import iv as ivmod

    monkeypatch.setattr(ivmod, "_ACCEPT", -1.0)  # reject every fast-path result
    k, t, call, vol = _bench_like_chain(40)
    g = black76_greeks(F, k, t, vol, call, R)
    res = implied_vol_black76(g.price, F, k, t, call, R)
    assert res.iterations > 2
    ident = _identifiable(g.vega, g.price) & (g.price > 0)
    assert np.all(res.ok[ident])
    assert np.max(np.abs(res.iv[ident] - vol[ident])) < 1e-6


def test_iv_and_greeks_match_black76_greeks_at_the_solved_vol():
    """Greeks computed inside the solver equal pricing.black76_greeks at the returned vol."""
    k, t, call, vol = _bench_like_chain(60)
    r = np.where(call, 0.065, 0.07)  # per-element rates broadcast too
    price = black76_price(F, k, t, vol, call, r)
    res, g = iv_and_greeks(price, F, k, t, call, r)
    ref = black76_greeks(F, k, t, np.where(res.ok, res.iv, 0.2), call, r)
    ok = res.ok
    assert ok.sum() > 150
    for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
        mine, theirs = getattr(g, name), getattr(ref, name)
        np.testing.assert_allclose(mine[ok], theirs[ok], rtol=1e-9, atol=1e-12, err_msg=name)
        assert np.isnan(mine[~ok]).all(), name


def test_blocked_evaluation_matches_single_block_with_bad_strikes_and_2d_shape(monkeypatch):
    """Arrays longer than one block are processed block by block: same numbers, statuses and
    shapes as one block, bad strikes in several blocks included, greeks too."""
    from engine.market import iv as ivmod

    k, t, call, vol = _bench_like_chain(60)
    price = black76_price(F, k, t, vol, call, R)
    price[[3, 50, 51, 170]] = [np.nan, -1.0, 0.0, 1e9]
    k = k.copy()
    k[100] = -5.0
    one_iv, one_g = iv_and_greeks(price, F, k, t, call, R)
    monkeypatch.setattr(ivmod, "_BLOCK", 37)
    many_iv, many_g = iv_and_greeks(price, F, k, t, call, R)
    np.testing.assert_array_equal(one_iv.status, many_iv.status)
    np.testing.assert_allclose(one_iv.iv, many_iv.iv, rtol=1e-13)
    for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
        np.testing.assert_allclose(getattr(one_g, name), getattr(many_g, name), rtol=1e-13)
    assert one_iv.status[[3, 50, 51, 170, 100]].tolist() == [
        IVStatus.INVALID_INPUT, IVStatus.NONPOSITIVE_PRICE, IVStatus.NONPOSITIVE_PRICE,
        IVStatus.ABOVE_UPPER_BOUND, IVStatus.INVALID_INPUT]
    grid = implied_vol_black76(price.reshape(4, -1), F, k.reshape(4, -1), t.reshape(4, -1),
                               call.reshape(4, -1), R)
    assert grid.iv.shape == (4, 60) and grid.status.shape == (4, 60)
    np.testing.assert_array_equal(grid.status.ravel(), one_iv.status)


def _sweep(n: int, seed: int):
    """Options over every branch of the solver (deep wings, tiny and huge total vols)."""
    rng = np.random.default_rng(seed)
    f = F * np.exp(rng.normal(0.0, 0.01, n))
    k = f * np.exp(rng.uniform(-2.0, 2.0, n) * rng.uniform(0.0, 1.0, n) ** 2)
    t = np.exp(rng.uniform(np.log(1e-3), np.log(5.0), n))
    vol = np.exp(rng.uniform(np.log(0.01), np.log(4.0), n))
    call = rng.random(n) < 0.5
    r = rng.choice([0.0, 0.065, -0.01], n)
    return black76_price(f, k, t, vol, call, r), f, k, t, call, r


def _same(mine, theirs) -> bool:
    mine, theirs = np.asarray(mine), np.asarray(theirs)
    return mine.shape == theirs.shape and bool(
        np.all((mine == theirs) | (np.isnan(mine) & np.isnan(theirs))))


def test_small_inputs_solved_in_floats_bit_identical_to_the_array_path(monkeypatch):
    """Inputs of at most _SMALL elements are solved in Python floats: every iv, status and
    greek equals the array path's to the bit (all four branches of the guess, both extra
    objectives, scalars and length-2 arrays, an unsolvable element in a small call)."""
    from engine.market import iv as ivmod

    price, f, k, t, call, r = _sweep(400, 21)
    price[[6, 7]] = [0.0, np.nan]  # unsolvable: the call goes down the array path
    calls = [tuple(v[i:i + 2] for v in (price, f, k, t, call, r)) for i in range(0, 400, 2)]
    calls += [(float(price[i]), float(f[i]), float(k[i]), float(t[i]), bool(call[i]),
               float(r[i])) for i in range(0, 400, 7)]
    small = [iv_and_greeks(*c) for c in calls]
    assert ivmod._SMALL >= 2
    monkeypatch.setattr(ivmod, "_SMALL", -1)  # everything through the array path
    ref = [iv_and_greeks(*c) for c in calls]
    solved = 0
    for (res, g), (res_a, g_a) in zip(small, ref, strict=True):
        assert _same(res.iv, res_a.iv) and _same(res.status, res_a.status)
        assert res.iterations == res_a.iterations
        for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
            assert _same(getattr(g, name), getattr(g_a, name)), name
        solved += int(np.count_nonzero(res.ok))
    assert solved > 250  # most options are solvable
    assert small[3][0].status.tolist() == [IVStatus.NONPOSITIVE_PRICE, IVStatus.INVALID_INPUT]
    assert small[-1][0].iv.shape == ()  # scalars in, 0-d out


def test_the_sweep_reaches_every_branch_of_the_guess():
    """The sweep of the bit-identity test reaches the lowest, both middle and the highest
    branch, with ``beta > b_max / 2`` in the highest (so the float path's outer-branch code
    and both extra objectives are compared too)."""
    from engine.market import iv as ivmod

    price, f, k, t, call, r = _sweep(400, 21)
    with np.errstate(all="ignore"):
        _, _, _, _, a, _, beta, em, good = ivmod._normalized(price, f, k, t, r, call)
        a, beta, em = a[good], beta[good], em[good]
        ep = np.exp(0.5 * a)
        s_c = np.sqrt(2.0 * a)
        b_c = 0.5 * (em - ep * ivmod.erfc(np.sqrt(a)))
        low = beta < b_c
        s_o = s_c + np.where(low, -b_c, em - b_c) * ep * np.sqrt(2.0 * np.pi)
        b_o = ivmod.normalized_otm_price(a, s_o)
    outer = np.where(low, beta < b_o, beta > b_o)
    for branch in (outer & low, ~outer & low, ~outer & ~low, outer & ~low & (beta > 0.5 * em)):
        assert np.count_nonzero(branch) >= 5
