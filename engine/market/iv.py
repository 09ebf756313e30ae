"""Implied volatility of a whole option chain at once (vectorized Black-76 / Black-Scholes).

Method
------
1. **Reduce to one normalized problem.** Undiscount the price (``p = price / df``), split it
   into intrinsic ``max(w(F-K), 0)`` and time value ``tv``. By put-call parity on the forward
   the time value *is* the price of the out-of-the-money option at the same strike, so every
   element becomes "find ``s = sigma*sqrt(t)`` with ``b(s) = beta = tv / sqrt(F K)``", where
   ``b(s) = e^{-a/2} N(-a/s + s/2) - e^{a/2} N(-a/s - s/2)`` and ``a = |ln(F/K)|``.
   ``b`` rises strictly from 0 to ``b_max = e^{-a/2}`` so a solution exists iff
   ``0 < beta < b_max``; anything else gets NaN and a reason code (checked once, up front;
   only the solvable elements are handed to the solver).
2. **Initial guess: Jäckel, "Let's be rational" (Wilmott 2015), vectorized.** From the
   inflection point ``s_c = sqrt(2a)`` and its tangent, the points ``s_l < s_c < s_u`` split
   ``(0, b_max)`` into four branches. In the two middle ones ``s(beta)`` is a shape-preserving
   rational cubic (Delbourgo-Gregory) through the branch points with the exact slopes
   ``1/b'``; in the outer ones the same interpolation is applied to the transformed price
   ``f_l(s) = 2pi/sqrt(27) a N(-a/(sqrt(3)s))^3`` (lower) or ``f_u(s) = N(-s/2)`` (upper),
   fitted to value, slope and curvature at the branch point, and inverted in closed form.
   Only the branch point on the element's side of ``s_c`` is priced, and an outer branch's
   map is only evaluated when some element lies in it.
3. **Two Householder(3) steps** (fourth order, from ``b'``, ``b''/b' = a^2/s^3 - s/4`` and
   ``b'''/b'``, which cost no extra transcendental) on Jäckel's branch objectives:
   ``1/ln b - 1/ln beta`` in the lowest branch, ``ln((b_max-beta)/(b_max-b))`` in the highest
   when ``beta > b_max/2``, ``b - beta`` elsewhere. All elements iterate in lock-step on
   whole arrays (no per-iteration masking or compaction). After the first step the error is
   below ~1e-6 relative (typically 1e-12), after the second at the evaluation noise floor
   (< 2e-11 relative over ``|ln F/K| <= 3``, ``s`` in ``[1e-3, 4]``). An element is accepted
   when its second step is below ``1e-5 s``: for a fourth-order step that bounds the
   remaining error far below 1e-12, and it rejects anything that has not converged.
4. **Fallback** (not needed by any element in the tests or benchmarks; kept for inputs
   outside the swept range): rejected elements are re-solved by a bracketed, safeguarded
   Newton in log-price space (Newton on ``ln b`` above ``s_c``, in ``y = 1/s^2`` below it;
   bisection whenever a step leaves the bracket; stop when a Newton step is below
   ``1e-7 s`` or any step below ``1e-11 s``; < 30 iterations in the worst cases seen).
5. **Convert back**: ``sigma = s / sqrt(t)``. :func:`iv_and_greeks` (Black-76) evaluates the
   price and greeks at the returned vol from the same normalized quantities
   (``F phi(d1) = sqrt(FK) b'(s)``), without a second pass through the pricing module.

Performance notes: the normalization, the solver and the greeks are written once, against a
small set of elementwise operations (``X``: :data:`_ARRAY_OPS` on numpy arrays,
:data:`_FLOAT_OPS` on Python floats). Inputs of at most ``_SMALL`` elements are solved one
element at a time in Python floats: a whole-array pass costs ~1 us of numpy dispatch per
operation whatever the length, which dominated small calls. The transcendentals are the same
numpy / scipy ufuncs called on a float (identical results to the array evaluation) and the
arithmetic is IEEE either way, so both paths give bit-identical answers; an element needing
anything else (an unsolvable input, a division by zero, a rejected fast path) sends the
whole call down the array path. Arrays: validity is checked once up front (a cheap combined
test; the per-reason classification runs only when some element fails it) and only
solvable elements reach the solver. Long inputs are processed in blocks of ``_BLOCK``
elements so every temporary stays small: cache resident and recycled by the allocator
(whole-array temporaries of 100k elements cost more in fresh-page faults than in
arithmetic). One ``np.errstate`` per call (on the entry point). ``IVResult.iterations`` is 2
unless the fallback ran (then 2 + its iterations).

Normal CDFs are ``0.5 erfc(-x/sqrt 2)`` (scipy's ``erfc``: same accuracy as ``ndtr``, half
the cost). No element can raise: bad inputs become NaN with an :class:`IVStatus` code, so one
broken quote never loses the rest of the chain.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erfc, ndtr, ndtri

from engine.market.pricing import Greeks, bs_greeks, normalized_otm_price

__all__ = ["IVResult", "IVStatus", "implied_vol_black76", "implied_vol_bs", "iv_and_greeks"]

F64 = NDArray[np.float64]
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2PI = 2.5066282746310002
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT3 = 0.5773502691896258
_TWO_PI = 6.283185307179586
_TWO_PI_OVER_SQRT27 = 1.2091995761561452
_SQRT3_OVER_CBRT_2PI = 0.9386434874273836
_SQRT_PI_OVER_2 = 1.2533141373155001
_RC_MIN = -0.9999999850988388  # -(1 - sqrt(eps)): rational cubic control parameter bounds
_RC_MAX = 4.056481920730334e31  # 2 / eps^2 (above: linear interpolation)
_ACCEPT = 1e-5  # accept the fast path when its second Householder step is below this * s
_BLOCK = 3072  # elements per block (see _implied_vol)
_SMALL = 10  # at most this many elements: solved in Python floats (see _implied_vol_small)
_MAX_ITER = 60
_TOL = 1e-11


class IVStatus(IntEnum):
    """Reason code per element of an implied-vol solve (0 = solved)."""

    OK = 0
    BELOW_INTRINSIC = 1  # price < discounted intrinsic value
    ABOVE_UPPER_BOUND = 2  # price >= df*F (call) or df*K (put): no finite vol
    NO_TIME_VALUE = 3  # price equals intrinsic (within rounding): vol undefined (0)
    EXPIRED = 4  # t <= 0
    NONPOSITIVE_PRICE = 5  # price <= 0
    INVALID_INPUT = 6  # NaN/inf inputs, F <= 0 or K <= 0
    NOT_CONVERGED = 7  # did not converge within the iteration cap (never seen in tests)


_OK = int(IVStatus.OK)
_NOT_CONVERGED = int(IVStatus.NOT_CONVERGED)


class IVResult:
    """Implied vols (NaN where no solution) and a per-element :class:`IVStatus` code."""

    __slots__ = ("iterations", "iv", "status")

    def __init__(self, iv: F64, status: NDArray[np.int8], iterations: int) -> None:
        self.iv = iv
        self.status = status
        self.iterations = iterations

    @property
    def ok(self) -> NDArray[np.bool_]:
        """Mask of solved elements."""
        return self.status == IVStatus.OK

    def reasons(self) -> list[str]:
        """Status names per element (for logs / debugging, not hot paths)."""
        return [IVStatus(int(c)).name for c in np.ravel(self.status)]


class _ArrayOps:
    """Elementwise operations on numpy arrays (the whole-array path)."""

    where = staticmethod(np.where)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    cbrt = staticmethod(np.cbrt)
    erfc = staticmethod(erfc)
    ndtri = staticmethod(ndtri)
    abs = staticmethod(np.abs)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    fmax = staticmethod(np.fmax)

    @staticmethod
    def any(mask) -> bool:
        return np.count_nonzero(mask) > 0  # 7x cheaper than ndarray.any() on short arrays


def _float_ufunc(ufunc):
    """``ufunc`` on a Python float, as a Python float (the same bits as on an array)."""
    return lambda v: float(ufunc(v))


class _FloatOps:
    """The same operations on Python floats (one element at a time, for tiny inputs).

    numpy's semantics on ordinary values: ``maximum``/``minimum`` propagate NaN, ``fmax``
    ignores it. IEEE special cases that numpy passes through but Python raises on (division
    by zero, ``sqrt`` of a negative) raise here; the caller then uses the array path.
    """

    exp = staticmethod(_float_ufunc(np.exp))
    log = staticmethod(_float_ufunc(np.log))
    sqrt = staticmethod(math.sqrt)  # correctly rounded, like np.sqrt
    cbrt = staticmethod(_float_ufunc(np.cbrt))
    erfc = staticmethod(_float_ufunc(erfc))
    ndtri = staticmethod(_float_ufunc(ndtri))
    abs = staticmethod(abs)

    @staticmethod
    def where(cond, yes, no):
        return yes if cond else no

    @staticmethod
    def maximum(u, v):
        return u if u >= v or u != u else v

    @staticmethod
    def minimum(u, v):
        return u if u <= v or u != u else v

    @staticmethod
    def fmax(u, v):
        return v if u != u or v > u else u

    @staticmethod
    def any(flag) -> bool:
        return flag


_ARRAY_OPS = _ArrayOps()
_FLOAT_OPS = _FloatOps()


def _min_rc_param(dl, dr, slope, prefer, X=_ARRAY_OPS):
    """Smallest Delbourgo-Gregory control parameter keeping the interpolant's shape.

    Jäckel's ``minimum_rational_cubic_control_parameter`` specialised to the monotonic data
    every branch here has (``s(beta)`` and ``f_l`` increase, ``f_u`` decreases): the
    monotonicity bound ``(d_l + d_r) / slope`` and, where the data are convex or concave, the
    convexity bound (otherwise: linear interpolation when ``prefer``, else no bound).
    """
    drl = dr - dl
    shaped = (dl <= slope) == (slope <= dr)  # convex or concave
    r2 = X.where(shaped, X.maximum(X.abs(drl / (dr - slope)), X.abs(drl / (slope - dl))),
                 X.where(prefer, math.inf, _RC_MIN))
    return X.fmax(X.fmax((dr + dl) / slope, r2), _RC_MIN)


def _lbr_solve(a, beta, lnbeta, em=None, X=_ARRAY_OPS):
    """Rational guess + two Householder(3) steps for ``b(s) = beta``; returns (s, accepted).

    ``em`` is ``exp(-a/2)`` when the caller has it. Arrays or floats, per ``X``.
    """
    where, exp, sqrt, erfc_ = X.where, X.exp, X.sqrt, X.erfc
    if em is None:
        em = exp(-0.5 * a)  # b_max
    ep = exp(0.5 * a)
    # --- branch points: inflection s_c and the tangent's crossings of 0 (s_l) / b_max (s_u)
    s_c = sqrt(2.0 * a)
    b_c = 0.5 * (em - ep * erfc_(sqrt(a)))
    inv_vc = _SQRT_2PI * ep  # 1 / b'(s_c)
    low = beta < b_c
    s_o = s_c + where(low, -b_c, em - b_c) * inv_vc  # s_l below s_c, s_u above
    h = a / s_o
    hs = 0.5 * s_o
    b_o = 0.5 * (em * erfc_((h - hs) * _INV_SQRT2) - ep * erfc_((h + hs) * _INV_SQRT2))
    h2 = h * h
    s2 = s_o * s_o
    inv_vo = _SQRT_2PI * exp(0.5 * (h2 + hs * hs))  # 1 / b'(s_o)
    outer = where(low, beta < b_o, beta > b_o)  # lowest or highest branch
    is_ll = outer & low
    is_uu = outer ^ is_ll  # outer and not low
    any_ll, any_uu = X.any(is_ll), X.any(is_uu)
    # --- one Delbourgo-Gregory rational cubic per element, parameters by branch:
    #   low-mid [b_l, b_c]   s:   (s_l, s_c), slopes (1/v_l, 1/v_c), curvature 0 at b_c
    #   up-mid  [b_c, b_u]   s:   (s_c, s_u), slopes (1/v_c, 1/v_u), curvature 0 at b_c
    #   lowest  [0, b_l]     f_l: (0, f_l), slopes (1, fp_l), curvature fit at b_l
    #   highest [b_u, b_max] f_u: (f_u, 0), slopes (fp_u, -1/2), curvature fit at b_u
    # (the outer branches' maps are only evaluated when some element needs them)
    xl = where(low, b_o, b_c)
    xr = where(low, b_c, b_o)
    yl = where(low, s_o, s_c)
    yr = where(low, s_c, s_o)
    dl = where(low, inv_vo, inv_vc)
    dr = where(low, inv_vc, inv_vo)
    sd = 0.0
    if any_ll:  # f_l(s) = 2pi/sqrt27 a N(-z)^3, z = a/(sqrt3 s), with df/db and d2f/db2 at s_l
        z = h * _INV_SQRT3
        y = z * z
        cdf = 0.5 * erfc_(z * _INV_SQRT2)
        e_l = exp(y + 0.125 * s2)
        fp_l = _TWO_PI * y * cdf * cdf * e_l
        fpp_l = (_TWO_PI * e_l * e_l * (y / s_o) * cdf
                 * (2.0 * z + cdf * _SQRT_2PI * exp(0.5 * y) * (0.25 * s2 - 2.0 * y - 2.0)))
        xl = where(is_ll, 0.0, xl)
        xr = where(is_ll, b_o, xr)
        yl = where(is_ll, 0.0, yl)
        yr = where(is_ll, _TWO_PI_OVER_SQRT27 * a * cdf * cdf * cdf, yr)
        dl = where(is_ll, 1.0, dl)
        dr = where(is_ll, fp_l, dr)
        sd = where(is_ll, fpp_l, sd)
    if any_uu:  # f_u(s) = N(-s/2), with df/db and d2f/db2 at s_u
        e_u = exp(0.5 * h2)
        xl = where(is_uu, b_o, xl)
        xr = where(is_uu, em, xr)
        yl = where(is_uu, 0.5 * erfc_(hs * _INV_SQRT2), yl)
        yr = where(is_uu, 0.0, yr)
        dl = where(is_uu, -0.5 * e_u, dl)
        dr = where(is_uu, -0.5, dr)
        sd = where(is_uu, _SQRT_PI_OVER_2 * e_u * e_u * exp(0.125 * s2) * h2 / s_o, sd)
    hx = xr - xl
    slope = (yr - yl) / hx
    r = (0.5 * hx * sd + (dr - dl)) / where(low, dr - slope, slope - dl)
    r = X.minimum(X.fmax(r, _min_rc_param(dl, dr, slope, outer, X)), _RC_MAX)
    t = (beta - xl) / hx
    omt = 1.0 - t
    tomt = t * omt
    s = (yr * t * t * t + (r * yr - hx * dr) * t * tomt + (r * yl + hx * dl) * tomt * omt
         + yl * omt * omt * omt) / (1.0 + (r - 3.0) * tomt)
    # invert the maps: f_l -> s = a / (sqrt3 |N^-1(c (f/a)^(1/3))|), f_u -> s = -2 N^-1(f)
    if any_ll:
        s = where(is_ll, a * _INV_SQRT3 / X.abs(X.ndtri(_SQRT3_OVER_CBRT_2PI * X.cbrt(s / a))),
                  s)
    if any_uu:
        s = where(is_uu, -2.0 * X.ndtri(s), s)
    # --- objectives: 1/ln b (lowest), ln(b_max - b) (highest, beta > b_max/2), b elsewhere
    is_log = is_ll
    is_up = is_uu & (beta > 0.5 * em)
    any_log, any_up = any_ll, X.any(is_up)
    d_star = em - beta
    ds = s
    for _ in range(2):
        h = a / s
        hs = 0.5 * s
        b = 0.5 * (em * erfc_((h - hs) * _INV_SQRT2) - ep * erfc_((h + hs) * _INV_SQRT2))
        bp = _INV_SQRT_2PI * exp(-0.5 * (h * h + hs * hs))
        hos = h / s
        halley = h * hos - 0.25 * s  # b''/b'
        hh3 = halley * halley - 3.0 * hos * hos - 0.25  # b'''/b'
        newton = (beta - b) / bp
        if any_log:  # g = 1/ln b - 1/ln beta: add the transform's terms to g''/g', g'''/g'
            lnb = X.log(b)
            c = 1.0 / lnb
            gl = bp / b
            newton = where(is_log, (lnbeta - lnb) * lnb / (lnbeta * gl), newton)
            u = where(is_log, -gl * (1.0 + 2.0 * c), 0.0)
            v = where(is_log, 2.0 * gl * gl * (1.0 + 3.0 * c * (1.0 + c)), 0.0)
            hh3 = hh3 + v + 3.0 * u * halley
            halley = halley + u
        if any_up:  # g = ln((b_max - beta) / (b_max - b))
            d = em - b
            gu = bp / d
            newton = where(is_up, X.log(d / d_star) / gu, newton)
            u = where(is_up, gu, 0.0)
            hh3 = hh3 + u * (2.0 * u + 3.0 * halley)
            halley = halley + u
        ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))
        ds = X.maximum(ds, -0.5 * s)
        s = s + ds
    ok = (X.abs(ds) <= _ACCEPT * s) & (s > 0.0) & (s < math.inf)
    return s, ok


def _solve_safeguarded(a: F64, lnb: F64) -> tuple[F64, F64, int]:
    """Fallback: bracketed Newton for b(s) = exp(lnb), elementwise; (s, converged, iters)."""
    n = a.shape[0]
    s_c = np.sqrt(2.0 * a)
    b_c = normalized_otm_price(a, np.where(s_c > 0.0, s_c, 1.0))
    with np.errstate(divide="ignore"):
        lnb_c = np.where(s_c > 0.0, np.log(b_c), -np.inf)
    lower = lnb < lnb_c
    # upper branch guess: ATM inversion of the scaled price (exact at a = 0)
    u = np.minimum(np.exp(lnb + 0.5 * a), 1.0 - 1e-16)
    s_up = np.maximum(2.0 * ndtri(0.5 * (1.0 + u)), s_c)
    # lower branch: start at the inflection point; Newton in y = 1/s^2 (where ln b is
    # convex, decreasing and nearly linear) then converges monotonically from there.
    s = np.where(lower, s_c, s_up)
    lo = np.where(lower, 0.0, s_c)
    hi = np.where(lower, s_c, np.inf)
    conv = np.zeros(n, dtype=bool)
    out = s.copy()
    idx = np.arange(n)
    e_m, e_p = np.exp(-0.5 * a), np.exp(0.5 * a)
    aa, tl, ss, ll, hh, low = a, lnb, s, lo, hi, lower
    it = 0
    for it in range(1, _MAX_ITER + 1):  # noqa: B007
        h = -aa / ss
        half = 0.5 * ss
        b = e_m * ndtr(h + half) - e_p * ndtr(h - half)
        dbds = e_m * np.exp(-0.5 * (h + half) ** 2) * _INV_SQRT_2PI
        with np.errstate(divide="ignore", invalid="ignore"):
            fval = np.log(b) - tl
            dlnb = dbds / b  # d ln b / ds
            s_newton = ss - fval / dlnb
            y_new = 1.0 / (ss * ss) + fval / (0.5 * ss**3 * dlnb)
            s_ynewton = 1.0 / np.sqrt(y_new)
        ll = np.where(fval < 0.0, ss, ll)
        hh = np.where(fval > 0.0, ss, hh)
        new = np.where(low, s_ynewton, s_newton)
        bad = ~np.isfinite(new) | (new <= ll) | (new >= hh)
        bis = np.where(np.isfinite(hh), 0.5 * (ll + hh), 2.0 * ss)
        new = np.where(bad, bis, new)
        hit = np.abs(fval) <= 1e-14  # already on the root: keep the current point
        # Newton converges quadratically: a Newton step below 1e-7 leaves an error ~1e-14
        dstep = np.abs(new - ss)
        done = hit | (dstep <= _TOL * ss) | (~bad & (dstep <= 1e-7 * ss))
        ss = np.where(hit, ss, new)
        if done.any():
            out[idx[done]] = ss[done]
            conv[idx[done]] = True
            keep = ~done
            if not keep.any():
                break
            idx, aa, tl, ss, ll, hh = idx[keep], aa[keep], tl[keep], ss[keep], ll[keep], hh[keep]
            low, e_m, e_p = low[keep], e_m[keep], e_p[keep]
    else:
        out[idx] = ss
    return out, conv, it



def _flat_inputs(price, f, k, t, is_call, r):
    """The inputs as arrays: (shape, n, arrays), each array 1-D of length ``n`` or 0-d.

    The usual call (1-D arrays of one length and scalars) takes a short path that keeps the
    scalars 0-d (no copies, no ``np.broadcast_arrays`` set-up); anything else is broadcast
    and flattened.
    """
    arrs = [np.asarray(v, dtype=np.float64) for v in (price, f, k, t, r)]
    arrs.append(np.asarray(is_call, dtype=bool))
    n = 0  # 0: all 0-d so far
    for a in arrs:
        if a.ndim == 1:
            if n == 0:
                n = a.shape[0]
            elif a.shape[0] != n:
                n = -1
                break
            if n == 0:  # a 1-D array of length 0
                n = -1
                break
        elif a.ndim != 0:
            n = -1
            break
    if n > 0:
        return (n,), n, arrs
    arrs = np.broadcast_arrays(*arrs)
    shape = arrs[0].shape
    return shape, arrs[0].size, [v.ravel() for v in arrs]


def _normalized(p, fa, ka, ta, ra, call, X=_ARRAY_OPS):
    """(und, intrinsic, tv, x, a, fk, beta, em, good) per element; ``good``: solvable.

    ``und`` the undiscounted price, ``x = ln(F/K)``, ``a = |x|``, ``fk = sqrt(FK)``,
    ``beta = tv / fk``, ``em = exp(-a/2) = b_max``.
    """
    und = p * X.exp(ra * ta)
    fmk = fa - ka
    intrinsic = X.maximum(X.where(call, fmk, -fmk), 0.0)
    tv = und - intrinsic
    x = X.log(fa / ka)
    a = X.abs(x)
    fk = X.sqrt(fa * ka)
    beta = tv / fk
    em = X.exp(-0.5 * a)
    good = (tv > 1e-14 * und) & (beta < em) & (ta > 0.0) & (p > 0.0)
    return und, intrinsic, tv, x, a, fk, beta, em, good


def _classify(p, fa, ka, ta, ra, und, tv, beta, em, call) -> NDArray[np.int8]:
    """Per-element status codes (only called when some element is not solvable).

    Codes are assigned from the lowest priority up, so the first applicable reason in the
    order INVALID_INPUT, EXPIRED, NONPOSITIVE_PRICE, BELOW_INTRINSIC, NO_TIME_VALUE,
    ABOVE_UPPER_BOUND wins.
    """
    where = np.where
    eps = 1e-14 * und
    upper = where(call, fa, ka)
    st = where((und >= upper) | ~(beta < em), np.int8(IVStatus.ABOVE_UPPER_BOUND), np.int8(0))
    st = where(tv <= eps, np.int8(IVStatus.NO_TIME_VALUE), st)
    st = where(tv < -eps, np.int8(IVStatus.BELOW_INTRINSIC), st)
    st = where(p <= 0.0, np.int8(IVStatus.NONPOSITIVE_PRICE), st)
    st = where(ta <= 0.0, np.int8(IVStatus.EXPIRED), st)
    valid = (np.isfinite(p) & np.isfinite(ta) & np.isfinite(ra) & (fa > 0.0) & (ka > 0.0)
             & (fa < np.inf) & (ka < np.inf))
    return where(valid, st, np.int8(IVStatus.INVALID_INPUT))


def _solve(a: F64, beta: F64, lnbeta: F64, em: F64) -> tuple[F64, NDArray[np.bool_], int]:
    """Fast path for everything, safeguarded fallback for the (rare) rejected elements."""
    s, ok = _lbr_solve(a, beta, lnbeta, em)
    iters = 2
    if np.count_nonzero(ok) != ok.size:
        bad = np.flatnonzero(~ok)
        s_fb, conv, it = _solve_safeguarded(a[bad], lnbeta[bad])
        s[bad] = s_fb
        ok[bad] = conv
        iters += it
    return s, ok, iters


def _kernel(p, fa, ka, ta, ra, call, greeks: bool):
    """IV (and Black-76 greeks) of one block of 1-D inputs: (iv, status, iters, greeks)."""
    n = p.size
    und, intrinsic, tv, x, a, fk, beta, em, good = _normalized(p, fa, ka, ta, ra, call)
    if np.count_nonzero(good) == n:
        status = np.zeros(n, dtype=np.int8)
        todo = None
    else:
        status = _classify(p, fa, ka, ta, ra, und, tv, beta, em, call)
        todo = np.flatnonzero(status == _OK)
        if todo.size == 0:
            iv = np.full(n, np.nan)
            return iv, status, 0, ([iv] * 6 if greeks else None)
        a, beta, em = a[todo], beta[todo], em[todo]
    s, ok, iters = _solve(a, beta, np.log(beta), em)
    t_s = ta if todo is None else ta[todo]
    sqrt_t = np.sqrt(t_s)
    sig = s / sqrt_t
    ok &= sig < np.inf  # also False for NaN
    all_ok = np.count_nonzero(ok) == ok.size
    if not all_ok:
        sig = np.where(ok, sig, np.nan)
        status[~ok if todo is None else todo[~ok]] = _NOT_CONVERGED
    if todo is None:
        iv = sig
    else:
        iv = np.full(n, np.nan)
        iv[todo] = sig
    vals = None
    if greeks:
        if todo is not None:
            ra, call, x, fk, intrinsic, fa = (v[todo] for v in (ra, call, x, fk, intrinsic, fa))
        vals = _greeks_normalized(s, a, x, fa, fk, intrinsic, t_s, sqrt_t, ra, call)
        if not all_ok:
            vals = [np.where(ok, v, np.nan) for v in vals]
        if todo is not None:
            full = []
            for v in vals:
                out = np.full(n, np.nan)
                out[todo] = v
                full.append(out)
            vals = full
    return iv, status, iters, vals


def _implied_vol_small(cols, greeks: bool):
    """Every element in Python floats: (ivs, greeks per element or None), or None when some
    element needs the array path (unsolvable, IEEE special case, fast path rejected)."""
    ivs, vals = [], []
    X = _FLOAT_OPS
    try:
        for p, fa, ka, ta, ra, call in zip(*cols, strict=True):
            _, intrinsic, _, x, a, fk, beta, em, good = _normalized(p, fa, ka, ta, ra, call, X)
            if not good:
                return None
            s, ok = _lbr_solve(a, beta, X.log(beta), em, X)
            sqrt_t = math.sqrt(ta)
            sig = s / sqrt_t
            if not (ok and sig < math.inf):
                return None
            ivs.append(sig)
            if greeks:
                vals.append(_greeks_normalized(s, a, x, fa, fk, intrinsic, ta, sqrt_t, ra, call,
                                               X))
    except (ArithmeticError, ValueError):
        return None
    return ivs, vals


@np.errstate(all="ignore")
def _implied_vol(price, f, k, t, is_call, r, greeks: bool):
    """Flatten; tiny inputs in floats (:func:`_implied_vol_small`), else :func:`_kernel` on
    blocks of ``_BLOCK`` elements.

    Blocking keeps every temporary small (cache resident, recycled by the allocator instead
    of fresh pages from the OS: on 100k-element arrays page faults cost more than the math).
    """
    shape, n, arrs = _flat_inputs(price, f, k, t, is_call, r)
    if n <= _SMALL:
        cols = [v.tolist() if v.ndim else [v.item()] * n for v in arrs]
        small = _implied_vol_small(cols, greeks)
        if small is not None:
            ivs, per = small
            res = IVResult(np.array(ivs, dtype=np.float64).reshape(shape),
                           np.zeros(shape, dtype=np.int8), 2)
            if not greeks:
                return res, None
            cols = np.array(per, dtype=np.float64).reshape(n, 6).T.copy()
            return res, [c.reshape(shape) for c in cols]
    p, fa, ka, ta, ra, call = (v if v.ndim else np.full(n, v, dtype=v.dtype) for v in arrs)
    if n <= _BLOCK:  # one block: no block set-up
        iv, status, iters, vals = _kernel(p, fa, ka, ta, ra, call, greeks)
    else:
        iv = np.empty(n)
        status = np.empty(n, dtype=np.int8)
        vals = [np.empty(n) for _ in range(6)] if greeks else None
        iters = 0
        for i in range(0, n, _BLOCK):
            j = min(i + _BLOCK, n)
            biv, bst, bit, bvals = _kernel(p[i:j], fa[i:j], ka[i:j], ta[i:j], ra[i:j],
                                           call[i:j], greeks)
            iv[i:j] = biv
            status[i:j] = bst
            iters = max(iters, bit)
            if greeks:
                for out, v in zip(vals, bvals, strict=True):
                    out[i:j] = v
    res = IVResult(iv.reshape(shape), status.reshape(shape), iters)
    return res, (None if vals is None else [v.reshape(shape) for v in vals])


def _greeks_normalized(s, a, x, fa, fk, intrinsic, ta, sqrt_t, ra, call, X=_ARRAY_OPS):
    """Black-76 price and greeks at total vol ``s`` (same conventions as black76_greeks)."""
    h = a / s
    hs = 0.5 * s
    n1 = 0.5 * X.erfc((h - hs) * _INV_SQRT2)  # N(-a/s + s/2)
    n2 = 0.5 * X.erfc((h + hs) * _INV_SQRT2)  # N(-a/s - s/2)
    em = X.exp(-0.5 * a)
    tvn = em * n1 - n2 / em
    df = X.exp(-ra * ta)
    price = df * (intrinsic + fk * X.maximum(tvn, 0.0))
    phi_f = fk * _INV_SQRT_2PI * X.exp(-0.5 * (h * h + hs * hs))  # F phi(d1) = K phi(d2)
    neg = x <= 0.0
    e = X.where(neg, n1, n2)  # N(d1) for an OTM call (x <= 0) / N(-d1) for an OTM put
    m = X.where(neg == call, e, 1.0 - e)
    delta = X.where(call, df * m, -df * m)
    dphi = df * phi_f
    gamma = dphi / (fa * fa * s)
    vega = dphi * sqrt_t
    theta = ra * price - dphi * s / (2.0 * ta)
    rho = -ta * price
    return [price, delta, gamma, vega, theta, rho]


def implied_vol_black76(
    price: ArrayLike, f: ArrayLike, k: ArrayLike, t: ArrayLike, is_call: ArrayLike,
    r: ArrayLike = 0.0,
) -> IVResult:
    """Black-76 implied volatility for every element (options on a future/forward ``f``).

    Args:
        price: option premia (discounted at ``r``).
        f: forward / futures price for each option's expiry.
        k: strikes.
        t: years to expiry (see :func:`engine.market.pricing.year_fraction`).
        is_call: True for CE, False for PE.
        r: continuously compounded discount rate.

    Returns:
        IVResult with ``iv`` (decimal fraction, NaN where unsolvable) and ``status`` codes.
    """
    return _implied_vol(price, f, k, t, is_call, r, greeks=False)[0]


def implied_vol_bs(
    price: ArrayLike, spot: ArrayLike, k: ArrayLike, t: ArrayLike, is_call: ArrayLike,
    r: ArrayLike = 0.0, q: ArrayLike = 0.0,
) -> IVResult:
    """Black-Scholes implied vol on the index (forward ``spot*e^{(r-q)t}``, discount ``r``)."""
    sp, ta, ra, qa = (np.asarray(v, dtype=np.float64) for v in (spot, t, r, q))
    fwd = sp * np.exp((ra - qa) * np.maximum(ta, 0.0))
    return implied_vol_black76(price, fwd, k, ta, is_call, ra)


def iv_and_greeks(
    price: ArrayLike, f: ArrayLike, k: ArrayLike, t: ArrayLike, is_call: ArrayLike,
    r: ArrayLike = 0.0, *, spot_model: bool = False, q: ArrayLike = 0.0,
):
    """Implied vol plus greeks at that vol (NaN greeks where the vol is NaN).

    With ``spot_model=True`` ``f`` is the index spot and Black-Scholes greeks are returned;
    otherwise ``f`` is the forward and Black-76 greeks are returned (computed here from the
    solver's normalized quantities; identical conventions to
    :func:`engine.market.pricing.black76_greeks`).

    Returns:
        (IVResult, Greeks)
    """
    if spot_model:
        res = implied_vol_bs(price, f, k, t, is_call, r, q)
        g = bs_greeks(f, k, t, res.iv, is_call, r, q)
        bad = ~res.ok
        if bad.any():
            g = Greeks(*(np.where(bad, np.nan, v) for v in
                         (g.price, g.delta, g.gamma, g.vega, g.theta, g.rho)))
        return res, g
    res, vals = _implied_vol(price, f, k, t, is_call, r, greeks=True)
    return res, Greeks(*vals)
