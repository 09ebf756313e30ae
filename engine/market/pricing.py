"""European option pricing for NIFTY: Black-Scholes on the index and Black-76 on futures.

Everything is vectorized with numpy: strikes, option types, times, vols, forwards may be
scalars or arrays and broadcast against each other, so a whole chain is priced in one call.

Conventions (all functions):
    * ``is_call``: bool array (True = CE, False = PE).
    * ``t``: time to expiry in years (calendar time, 365-day year; see :func:`year_fraction`).
    * ``sigma``: annualized volatility as a decimal fraction (0.13 = 13 %).
    * ``r`` continuously compounded risk-free rate, ``q`` continuous dividend yield.
    * Greeks: ``delta`` per 1 point of the underlying (spot for Black-Scholes, the future for
      Black-76), ``gamma`` per point², ``vega`` per 1.00 of vol (divide by 100 for one vol
      point), ``theta`` per year of calendar time passing (divide by 365 for one day; it is the
      change in value as time passes, i.e. ``-dV/dT``), ``rho`` per 1.00 of rate.
    * At ``t <= 0`` or ``sigma <= 0`` the price is the (discounted) intrinsic value and the
      greeks are the limits (delta a step, the rest zero).

Prices are computed as intrinsic + out-of-the-money time value (put-call parity on the
forward), which keeps the time value of deep in-the-money options accurate to the last bit;
the implied-vol solver in :mod:`engine.market.iv` relies on the same decomposition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from engine.timeutil import IST, MARKET_CLOSE

__all__ = [
    "Greeks",
    "black76_greeks",
    "black76_price",
    "bs_greeks",
    "bs_price",
    "normalized_otm_price",
    "year_fraction",
]

SECONDS_PER_YEAR = 365.0 * 86400.0
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Greeks:
    """Price and greeks of a set of options (arrays of the broadcast shape)."""

    price: F64
    delta: F64
    gamma: F64
    vega: F64
    theta: F64
    rho: F64


def year_fraction(now: datetime, expiry: date) -> float:
    """Years (365-day calendar time) from ``now`` to 15:30 IST on ``expiry``; 0 once past.

    Args:
        now: an aware datetime (any zone; converted to IST).
        expiry: the expiry trading day.

    Raises:
        ValueError: if ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError(f"year_fraction needs an aware datetime, got naive {now!r}")
    if not isinstance(expiry, date) or isinstance(expiry, datetime):
        raise ValueError(f"expiry must be a datetime.date, got {expiry!r}")
    close = datetime.combine(expiry, MARKET_CLOSE, tzinfo=IST)
    return max(0.0, (close - now).total_seconds() / SECONDS_PER_YEAR)


def _pdf(x: F64) -> F64:
    return np.exp(-0.5 * x * x) * _INV_SQRT_2PI


def normalized_otm_price(x: F64, s: F64) -> F64:
    """Undiscounted OTM option price divided by sqrt(F*K), as a function of x and total vol.

    ``x = ln(F/K)``; ``s = sigma*sqrt(t) > 0``. The OTM option is the call when ``x <= 0``
    and the put when ``x > 0``; with ``a = |x|`` its normalized price is
    ``b = e^{-a/2} N(-a/s + s/2) - e^{a/2} N(-a/s - s/2)``, increasing in ``s`` from 0
    towards ``e^{-a/2}``.
    """
    ax = np.abs(x)
    h = -ax / s
    half = 0.5 * s
    return np.exp(-0.5 * ax) * ndtr(h + half) - np.exp(0.5 * ax) * ndtr(h - half)


def _as_arrays(*args: ArrayLike) -> list[F64]:
    return [np.asarray(a, dtype=np.float64) for a in args]


def black76_price(
    f: ArrayLike, k: ArrayLike, t: ArrayLike, sigma: ArrayLike, is_call: ArrayLike,
    r: ArrayLike = 0.0,
) -> F64:
    """Black-76 price of European options on a future/forward ``f``, discounted at ``r``."""
    fa, ka, ta, sa, ra = _as_arrays(f, k, t, sigma, r)
    call = np.asarray(is_call, dtype=bool)
    w = np.where(call, 1.0, -1.0)
    intrinsic = np.maximum(w * (fa - ka), 0.0)
    s = sa * np.sqrt(np.maximum(ta, 0.0))
    live = s > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(fa / ka)
        tv = normalized_otm_price(x, np.where(live, s, 1.0)) * np.sqrt(fa * ka)
    tv = np.where(live, np.maximum(tv, 0.0), 0.0)
    return np.exp(-ra * np.maximum(ta, 0.0)) * (intrinsic + tv)


def bs_price(
    spot: ArrayLike, k: ArrayLike, t: ArrayLike, sigma: ArrayLike, is_call: ArrayLike,
    r: ArrayLike = 0.0, q: ArrayLike = 0.0,
) -> F64:
    """Black-Scholes(-Merton) price on the index with rate ``r`` and dividend yield ``q``."""
    sa, ta, ra, qa = _as_arrays(spot, t, r, q)
    fwd = sa * np.exp((ra - qa) * np.maximum(ta, 0.0))
    return black76_price(fwd, k, ta, sigma, is_call, ra)


def _core(fa: F64, ka: F64, ta: F64, sa: F64, call: NDArray[np.bool_]):
    """Shared d1/d2 machinery; returns (w, d1, d2, sqrt_t, live) with dead entries finite."""
    w = np.where(call, 1.0, -1.0)
    tt = np.maximum(ta, 0.0)
    sqrt_t = np.sqrt(tt)
    s = sa * sqrt_t
    live = s > 0.0
    s_safe = np.where(live, s, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(fa / ka) / s_safe + 0.5 * s_safe
    d2 = d1 - s_safe
    return w, d1, d2, sqrt_t, live, tt


def black76_greeks(
    f: ArrayLike, k: ArrayLike, t: ArrayLike, sigma: ArrayLike, is_call: ArrayLike,
    r: ArrayLike = 0.0,
) -> Greeks:
    """Black-76 price and greeks; delta/gamma are with respect to the future ``f``.

    ``rho`` holds the future fixed (only discounting moves): ``rho = -t * price``.
    """
    fa, ka, ta, sa, ra = _as_arrays(f, k, t, sigma, r)
    call = np.asarray(is_call, dtype=bool)
    w, d1, _d2, sqrt_t, live, tt = _core(fa, ka, ta, sa, call)
    df = np.exp(-ra * tt)
    price = black76_price(fa, ka, tt, sa, call, ra)
    nd1 = ndtr(w * d1)
    pdf1 = _pdf(d1)
    dead_delta = np.where(w * (fa - ka) > 0.0, w, 0.0)
    delta = np.where(live, w * df * nd1, df * dead_delta)
    s_safe = np.where(live, sa * sqrt_t, 1.0)
    gamma = np.where(live, df * pdf1 / (fa * s_safe), 0.0)
    vega = np.where(live, df * fa * pdf1 * sqrt_t, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = -df * fa * pdf1 * sa / (2.0 * np.where(live, sqrt_t, 1.0))
    theta = np.where(live, decay, 0.0) + ra * price
    rho = -tt * price
    return Greeks(price, delta, gamma, vega, theta, rho)


def bs_greeks(
    spot: ArrayLike, k: ArrayLike, t: ArrayLike, sigma: ArrayLike, is_call: ArrayLike,
    r: ArrayLike = 0.0, q: ArrayLike = 0.0,
) -> Greeks:
    """Black-Scholes price and greeks on the index (delta/gamma per point of spot)."""
    sp, ka, ta, sa, ra, qa = _as_arrays(spot, k, t, sigma, r, q)
    call = np.asarray(is_call, dtype=bool)
    tt = np.maximum(ta, 0.0)
    fa = sp * np.exp((ra - qa) * tt)
    w, d1, d2, sqrt_t, live, tt = _core(fa, ka, tt, sa, call)
    dq = np.exp(-qa * tt)
    dr = np.exp(-ra * tt)
    price = black76_price(fa, ka, tt, sa, call, ra)
    pdf1 = _pdf(d1)
    nd1 = ndtr(w * d1)
    nd2 = ndtr(w * d2)
    itm = w * (fa - ka) > 0.0
    delta = np.where(live, w * dq * nd1, np.where(itm, w * dq, 0.0))
    s_safe = np.where(live, sa * sqrt_t, 1.0)
    gamma = np.where(live, dq * pdf1 / (sp * s_safe), 0.0)
    vega = np.where(live, sp * dq * pdf1 * sqrt_t, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = -sp * dq * pdf1 * sa / (2.0 * np.where(live, sqrt_t, 1.0))
    carry = -w * ra * ka * dr * nd2 + w * qa * sp * dq * nd1
    dead_carry = np.where(itm, -w * ra * ka * dr + w * qa * sp * dq, 0.0)
    theta = np.where(live, decay + carry, dead_carry)
    rho = np.where(live, w * ka * tt * dr * nd2, np.where(itm, w * ka * tt * dr, 0.0))
    return Greeks(price, delta, gamma, vega, theta, rho)
