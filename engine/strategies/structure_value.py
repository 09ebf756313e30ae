"""What an option structure is worth at its planned exit: the model MDC scores variants with.

Pure numpy/scipy, no I/O. A structure is a list of :class:`LegSpec` (strike, CE/PE, expiry,
side, units, entry price). :func:`fit_surface` fits the market once per cycle and
:func:`value_structure` scores any number of structures on it.

The model (each score names it in ``Valuation.model``):

* **Clock.** Variance accrues in *trading* time (``market_view.trading_years``): an expiry's
  total variance ``w = iv²·t`` (``iv`` on its calendar basis) is spread over its trading
  years, so a weekend adds none and two expiries compare like for like.
* **Distribution of spot at the exit: the near expiry's own smile.** The near chain's OTM
  mids are fitted by a lognormal mixture (1 to 3 regimes, the fewest that fit):
  ``F_T = F·a_i·exp(√v_i·Z − v_i/2)`` with probability ``p_i``, ``Σ p_i a_i = 1`` — a set of
  lognormal worlds. In world ``i`` log spot is a Brownian motion on the trading clock that
  has spent the share ``θ = τ_exit/τ_near`` of its variance by the exit, and its expected
  terminal moves linearly from ``F`` to ``F·a_i`` (``b_i = 1 + θ(a_i − 1)``). At the exit
  ``x = ln(S_exit/S) ~ Σ p_i N(ln b_i − θv_i/2, θv_i)``: the skew and fat tails of the
  near smile, scaled back to the exit.
* **Near legs at the exit: the near smile rolled forward.** In world ``i`` a near leg is
  ``Black(F·e^x·a_i/b_i, K, (1−θ)v_i)`` — its vol, the rest of its variance; averaged over
  the worlds (each weighted by how likely it makes the move) that is the near smile rolled
  forward. ``E[near leg at exit]`` is then its model price now, whatever the strike: the
  near smile cannot create edge at any width. What the fit misses at a traded strike
  (market mid − model price) is carried as a constant on the leg, so the expectation equals
  the market mid exactly.
* **How far-expiry IV moves** (``iv_model``):

  - ``regime`` (default) — *sticky moneyness per world*: the far smile is fitted in the
    near's worlds (the same ``p_i``; each world its own far forward shift and total variance
    ``v_i^f``, fit residual carried like the near legs'); each world keeps its far vol per
    trading year to the exit, so in K/F around the new forward its far smile is unchanged.
    A surface whose two smiles come from one such process (any smile, no richness) scores
    zero; the edge is each world's term structure ``τ_exit·(σ²_near,i − σ²_far,i)``
    weighted by its probability and the legs' vega.
  - ``sticky_moneyness`` — today's far smile held fixed in K/F (SVI fit), each leg's own IV
    shifted along it as K/F moves. Biased towards narrow structures on a convex smile (a
    move of either sign lifts a held strike's IV): +2 to +4 % of the debit for an ATM
    calendar on a smile-only surface.
  - ``sticky_strike`` — each far leg keeps its own IV.

  The far legs are where a rich front pays: spot moves with the near's variance, the far
  legs are repriced at the far's.
* **Exit path** (optional :class:`ExitRule`): a profit target, a stop and a spot band
  checked ``checks_per_session`` times per session up to the planned exit, by backward
  induction in each world on its own marks (a stopped structure is worth its mark then).
  Each world's marks are martingales when it has no richness, so the exits cannot create
  edge either; with richness they cap or cut it as the rules would.
* **Edge** = PV(E[mid value at exit]) − mid debit (*before costs*); *after costs* also minus
  the round-trip charges and the round-trip spread (the whole bid-ask now: half paid on
  entry, half on exit). Percentages are of the debit (actual fills including charges). Each
  leg is discounted from its own expiry (Black-76 at ``rate``), the same as discounting the
  exit value back from the exit.

Numerics (what makes a cycle's scores take milliseconds):

* The fits are bounded least squares by Levenberg-Marquardt on analytic Jacobians (the
  mixture's price is a weighted sum of Black prices, so its derivatives in the weights'
  logits, the log multipliers and the log variances are closed-form) from the same starts
  as before; they reach the optima scipy's ``least_squares`` found, p within 1e-4.
* :func:`value_structures` scores many structures on one surface and exit at once: every
  distinct contract is priced once, and the exit paths are induced together.
* The exit path runs on each regime's own grid (± ``_PATH_SD`` of its SDs at the exit,
  ``_PATH_RES`` points per SD of one check-to-check step). A rule's hit set is resolved
  inside each grid cell (the level crossing interpolated), and in the cells it cuts the
  next expectation integrates the kernel over the hit part exactly. One grid shared by
  every regime (the rare wide regime sets its width) leaves the main regime a point or two
  per step SD: on the 2025-02-03 file, the test chains and simulated chains such a
  601-point grid was off the converged score by up to 1.6 % of the debit (median 0.02 %;
  probabilities by up to 0.14); this one by at most 0.06 % (median 0.001 %).

Known answers (tests/strategies/test_structure_value.py): a flat surface with no richness
(one flat IV per trading year in both expiries) scores every variant 0 before costs (within
0.03 % of the debit: quadrature and tick rounding); a rich front scores positive, less as
costs grow; on a smile-only surface the edge does not grow with width.

``distribution="flat_atm"`` is the naive model the issue warns about — spot lognormal at the
near ATM IV, the near legs repriced at that flat IV, the far legs at their own IV, entered
at market — kept only to show its bias: wide variants win by construction (their short
near legs sit on the smile's rich wings, which the flat lognormal says will expire cheap).

``Valuation.breakevens`` are where ``E[P&L | spot at the exit]`` crosses zero (the worlds
weighted by how likely each makes that move: a still spot points to the calm world, whose
lower vols mark the long far legs down); DC's own breakevens (today's smiles held) are what
its exit rule uses. Not modelled: IV shocks beyond the worlds, jumps inside a check
interval, exit-time spreads other than today's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
from scipy.ndimage import correlate1d
from scipy.optimize import lsq_linear, minimize
from scipy.special import logsumexp, ndtr

from engine.market.iv import implied_vol_black76
from engine.market.pricing import normalized_otm_price

__all__ = [
    "IV_MODELS",
    "ExitRule",
    "ExpiryQuotes",
    "LegSpec",
    "LognormalMixture",
    "Smile",
    "StructureToValue",
    "Surface",
    "Valuation",
    "fit_far_regimes",
    "fit_mixture",
    "fit_smile",
    "fit_surface",
    "quotes_from_view",
    "structure_problem",
    "value_structure",
    "value_structures",
]

Distribution = Literal["near_smile", "flat_atm"]
IvModel = Literal["regime", "sticky_moneyness", "sticky_strike"]
IV_MODELS: tuple[str, ...] = ("regime", "sticky_moneyness", "sticky_strike")

#: OTM quotes below this (rupees) are left out of the fits: their IV is mostly tick size
MIN_FIT_PRICE = 1.0
#: fits use strikes within this many ATM standard deviations of the forward
FIT_WIDTH_SD = 6.0
_GRID_POINTS = 1601
_GRID_SD = 9.0
#: exit path: each regime's own grid spans ± this many of its SDs at the exit ...
_PATH_SD = 7.0
#: ... with this many points per SD of one check-to-check step (at least _PATH_MIN_POINTS)
_PATH_RES = 3.0
_PATH_MIN_POINTS = 101
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / _SQRT_2PI


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True, kw_only=True)
class LegSpec:
    """One leg of a structure to value.

    Attributes:
        strike: index points. option_type: ``CE`` or ``PE``. expiry: the contract's expiry.
        side: ``BUY`` (long) or ``SELL`` (short). units: contracts (lots × lot size).
        entry_price: the touch it opens at, rupees per unit (a buy at the ask, a sell at
            the bid). mid: the mid now (default: ``entry_price``), for the edge before costs.
    """

    strike: float
    option_type: str
    expiry: date
    side: str
    units: int
    entry_price: float
    mid: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "strike", float(self.strike))
        object.__setattr__(self, "entry_price", float(self.entry_price))
        if self.mid is not None:
            object.__setattr__(self, "mid", float(self.mid))
        ot, side = str(self.option_type), str(self.side)
        object.__setattr__(self, "option_type", ot)
        object.__setattr__(self, "side", side)
        if ot not in ("CE", "PE"):
            raise ValueError(f"LegSpec.option_type must be CE or PE, got {self.option_type!r}")
        if side not in ("BUY", "SELL"):
            raise ValueError(f"LegSpec.side must be BUY or SELL, got {self.side!r}")
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units <= 0:
            raise ValueError(f"LegSpec.units must be a positive int, got {self.units!r}")
        if not (math.isfinite(self.strike) and self.strike > 0):
            raise ValueError(f"LegSpec.strike must be a positive number, got {self.strike!r}")
        for name in ("entry_price", "mid"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"LegSpec.{name} must be a finite price >= 0, got {v!r}")

    @property
    def sign(self) -> int:
        return 1 if self.side == "BUY" else -1

    @property
    def is_call(self) -> bool:
        return self.option_type == "CE"

    @property
    def mid_price(self) -> float:
        return self.entry_price if self.mid is None else float(self.mid)

    def label(self) -> str:
        return f"{self.expiry:%d %b} {self.strike:g} {self.option_type}"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ExpiryQuotes:
    """One expiry's chain as the fits need it (mids NaN where there is no two-sided quote).

    Attributes:
        forward: the expiry's parity forward. t: calendar years to expiry (the IV basis and
            the discounting). t_trading: trading years to expiry now.
    """

    expiry: date
    forward: float
    t: float
    t_trading: float
    strikes: np.ndarray
    call_mid: np.ndarray
    put_mid: np.ndarray

    def __post_init__(self) -> None:
        for name in ("strikes", "call_mid", "put_mid"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        k = self.strikes
        if k.ndim != 1 or self.call_mid.shape != k.shape or self.put_mid.shape != k.shape:
            raise ValueError(f"ExpiryQuotes {self.expiry}: strikes, call_mid and put_mid must be "
                             f"1-D arrays of one length (got {k.shape}, {self.call_mid.shape}, "
                             f"{self.put_mid.shape})")
        if k.size > 1 and np.any(np.diff(k) <= 0):
            raise ValueError(f"ExpiryQuotes {self.expiry}: strikes must be strictly ascending")
        if not (math.isfinite(self.forward) and self.forward > 0):
            raise ValueError(f"ExpiryQuotes {self.expiry}: forward must be positive, got {self.forward!r}")
        if not (self.t > 0 and self.t_trading > 0):
            raise ValueError(f"ExpiryQuotes {self.expiry}: t ({self.t!r}) and t_trading "
                             f"({self.t_trading!r}) must be positive")


def quotes_from_view(expiry_view: Any) -> ExpiryQuotes:
    """:class:`ExpiryQuotes` of a ``market_view.ExpiryView`` (mids of quoted options)."""
    e = expiry_view

    def mids(side: Mapping[Any, Any]) -> list[float]:
        out = []
        for k in e.strikes:
            o = side.get(k)
            m = o.mid if o is not None else None
            out.append(float(m) if m is not None else math.nan)
        return out

    return ExpiryQuotes(expiry=e.expiry, forward=float(e.forward), t=float(e.t),
                        t_trading=float(e.t_trading), strikes=np.array([float(k) for k in e.strikes]),
                        call_mid=np.array(mids(e.calls)), put_mid=np.array(mids(e.puts)))


# --------------------------------------------------------------------------- black
def _black(f: Any, k: Any, w: Any, is_call: Any) -> np.ndarray:
    """Undiscounted Black price with total variance ``w`` (σ²t): ``black76_price`` at t = 1,
    r = 0, without its argument handling (the same operations, the same numbers)."""
    f = np.asarray(f, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    intrinsic = np.maximum(np.where(np.asarray(is_call, dtype=bool), 1.0, -1.0) * (f - k), 0.0)
    s = np.sqrt(np.maximum(w, 0.0))
    live = s > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tv = normalized_otm_price(np.log(f / k), np.where(live, s, 1.0)) * np.sqrt(f * k)
    return intrinsic + np.where(live, np.maximum(tv, 0.0), 0.0)


def _black_lognormal(log_f: np.ndarray, k: float, w: np.ndarray, is_call: bool) -> np.ndarray:
    """Undiscounted Black price of one strike on the forwards ``exp(log_f)`` (any shape,
    broadcast against ``w`` > 0): the d1/d2 form, two normal CDFs per point (the valuation
    grids' hot loop)."""
    s = np.sqrt(w)
    y = log_f - math.log(k)
    d1 = y / s + 0.5 * s
    f = np.exp(log_f)
    if is_call:
        return f * ndtr(d1) - k * ndtr(d1 - s)
    return k * ndtr(s - d1) - f * ndtr(-d1)


def _black_greeks(g: np.ndarray, log_k: np.ndarray, k: np.ndarray, put: np.ndarray, v: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undiscounted Black price, d/d(forward) and d/d(total variance) of every strike (rows:
    ``log_k``, ``k``, ``put`` as (N, 1)) on every forward ``g`` with variance ``v`` (columns)."""
    s = np.sqrt(v)
    d1 = (np.log(g) - log_k + 0.5 * v) / s
    n1 = ndtr(d1)
    price = g * n1 - k * ndtr(d1 - s) - put * (g - k)
    dv = g * np.exp(-0.5 * d1 * d1) * (_INV_SQRT_2PI * 0.5 / s)
    return price, n1 - put, dv


def _black_vega(f: Any, k: Any, w: Any) -> np.ndarray:
    """Undiscounted d(price)/d(√w)."""
    s = np.sqrt(np.maximum(w, 1e-16))
    d1 = (np.log(np.asarray(f) / np.asarray(k)) + 0.5 * s * s) / s
    return np.asarray(f) * np.exp(-0.5 * d1 * d1) / _SQRT_2PI


@dataclass(frozen=True, slots=True, eq=False)
class _Points:
    """OTM points of one expiry used by the fits (undiscounted prices)."""

    strikes: np.ndarray
    k: np.ndarray        # ln(K/F)
    price: np.ndarray    # undiscounted OTM mid
    is_call: np.ndarray
    w: np.ndarray        # total variance (calendar iv² × t)
    scale: np.ndarray    # undiscounted price of one vol point, floored at one tick


def _otm_points(q: ExpiryQuotes, rate: float) -> _Points:
    f, df = q.forward, math.exp(-rate * q.t)
    call = q.strikes >= f
    mid = np.where(call, q.call_mid, q.put_mid)
    ok = np.isfinite(mid) & (mid >= MIN_FIT_PRICE)
    iv = np.full(q.strikes.shape, np.nan)
    if ok.any():
        iv[ok] = implied_vol_black76(mid[ok], f, q.strikes[ok], q.t, call[ok], rate).iv
    ok &= np.isfinite(iv) & (iv > 0)
    k = np.log(q.strikes / f)
    if ok.sum() >= 3:
        w_atm = float(np.interp(0.0, k[ok], iv[ok] ** 2 * q.t))
        ok &= np.abs(k) <= FIT_WIDTH_SD * math.sqrt(max(w_atm, 1e-12))
    w = iv[ok] ** 2 * q.t
    scale = np.maximum(_black_vega(f, q.strikes[ok], w) * 0.01 * math.sqrt(q.t), 0.05)
    return _Points(strikes=q.strikes[ok], k=k[ok], price=mid[ok] / df, is_call=call[ok], w=w,
                   scale=scale)


def _atm_w(q: ExpiryQuotes, rate: float) -> float:
    """The market's ATM total variance: the OTM quotes' σ²t interpolated at K = F."""
    p = _otm_points(q, rate)
    if p.k.size == 0:
        raise ValueError(f"expiry {q.expiry}: no usable OTM quote for an ATM IV")
    return float(np.interp(0.0, p.k, p.w))


def _rms_vol(w_model: np.ndarray, w_mkt: np.ndarray, t: float) -> float:
    iv_m = np.sqrt(np.maximum(w_model, 0.0) / t)
    iv_q = np.sqrt(w_mkt / t)
    return float(100.0 * np.sqrt(np.mean((iv_m - iv_q) ** 2)))


# --------------------------------------------------------------------------- smile (SVI)
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Smile:
    """A smooth smile of one expiry: total variance ``w(k)``, ``k = ln(K/F)``.

    ``kind`` is ``svi`` (raw SVI ``a + b(ρ(k−m) + √((k−m)² + s²))``, linear wings),
    ``interp`` (piecewise linear in k through the quotes, flat beyond: when SVI misses by a
    vol point or more) or ``flat`` (fewer than 5 quotes: the ATM level). ``rms_vol``: fit
    error over the quotes in vol points (calendar basis).
    """

    expiry: date
    forward: float
    t: float
    t_trading: float
    kind: str
    params: tuple[float, ...]
    knots_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    knots_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rms_vol: float | None = None
    points: int = 0

    def total_variance(self, k: Any) -> np.ndarray:
        k = np.asarray(k, dtype=np.float64)
        if self.kind == "svi":
            return np.maximum(_svi(self.params, k), 1e-12)
        if self.kind == "interp":
            return np.interp(k, self.knots_k, self.knots_w)
        return np.full(k.shape, self.params[0])

    def iv_trading(self, k: Any) -> np.ndarray:
        """IV per trading year at log-moneyness ``k``."""
        return np.sqrt(self.total_variance(k) / self.t_trading)

    @property
    def atm_iv_trading(self) -> float:
        return float(self.iv_trading(0.0))


def _svi(params: Sequence[float], k: np.ndarray) -> np.ndarray:
    a, b, rho, m, s = params
    return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + s * s))


def _svi_inner(k: np.ndarray, w: np.ndarray, wt: np.ndarray, m: float, s: float
               ) -> tuple[float, tuple[float, ...]]:
    """Best (a, b, ρ) for fixed (m, s): linear least squares with b ≥ 0, |ρ| ≤ 1
    (quasi-explicit SVI: w = a + u(z+y)/2 + v(z−y)/2, u, v ≥ 0)."""
    y = k - m
    z = np.sqrt(y * y + s * s)
    basis = np.column_stack([np.ones_like(k), 0.5 * (z + y), 0.5 * (z - y)]) * wt[:, None]
    sol = np.linalg.lstsq(basis, w * wt, rcond=None)[0]
    if sol[1] < 0 or sol[2] < 0:  # a wing slope of the wrong sign: the bounded problem
        sol = lsq_linear(basis, w * wt, bounds=([-np.inf, 0.0, 0.0], [np.inf, np.inf, np.inf])).x
    a, u, v = sol
    b = 0.5 * (u + v)
    rho = (u - v) / (u + v) if b > 0 else 0.0
    return float(np.sum((basis @ sol - w * wt) ** 2)), (float(a), float(b), float(rho), m, s)


def fit_smile(q: ExpiryQuotes, rate: float = 0.065) -> Smile:
    """Raw-SVI fit of ``q``'s OTM quotes (quasi-explicit: the linear part exact, (m, s)
    by Nelder-Mead), in vol-error weights, with fallbacks.

    Raises:
        ValueError: fewer than two usable OTM quotes (no smile at all).
    """
    p = _otm_points(q, rate)
    base = {"expiry": q.expiry, "forward": q.forward, "t": q.t, "t_trading": q.t_trading}
    if p.k.size < 2:
        raise ValueError(f"expiry {q.expiry}: {p.k.size} usable OTM quote(s) (mid >= "
                         f"{MIN_FIT_PRICE}, solvable IV): no smile to fit")
    w0 = float(np.interp(0.0, p.k, p.w))
    if p.k.size < 5:
        return Smile(**base, kind="flat", params=(w0,), points=int(p.k.size),
                     rms_vol=_rms_vol(np.full(p.w.shape, w0), p.w, q.t))
    wt = 1.0 / np.sqrt(p.w)                 # dw / (2σ√t): residuals ∝ vol error
    span = float(p.k.max() - p.k.min())

    def obj(x: np.ndarray) -> float:
        m, s = float(x[0]), math.exp(float(x[1]))
        return _svi_inner(p.k, p.w, wt, m, s)[0]

    best = None
    for m0, s0 in ((0.0, 0.1 * span), (0.2 * span, 0.05 * span), (-0.2 * span, 0.05 * span)):
        res = minimize(obj, np.array([m0, math.log(max(s0, 1e-4))]), method="Nelder-Mead",
                       options={"xatol": 1e-5, "fatol": 1e-12, "maxiter": 400})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    _, params = _svi_inner(p.k, p.w, wt, float(best.x[0]), math.exp(float(best.x[1])))
    grid = np.linspace(p.k.min() - span, p.k.max() + span, 201)
    rms = _rms_vol(np.maximum(_svi(params, p.k), 0.0), p.w, q.t)
    if np.all(_svi(params, grid) > 0) and rms < 1.0:
        return Smile(**base, kind="svi", params=params, points=int(p.k.size), rms_vol=round(rms, 4))
    return Smile(**base, kind="interp", params=(), knots_k=p.k.copy(), knots_w=p.w.copy(),
                 points=int(p.k.size), rms_vol=0.0)


# --------------------------------------------------------------------------- mixture
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LognormalMixture:
    """Terminal law of the near forward: ``F·a_i·exp(√v_i Z − v_i/2)`` with prob. ``p_i``.

    ``v_i`` is total log-variance to the near expiry; ``Σ p_i a_i = 1``. ``rms_vol`` is the
    fit error over the near OTM quotes in vol points (None for a constructed mixture).
    """

    p: np.ndarray
    a: np.ndarray
    v: np.ndarray
    rms_vol: float | None = None
    points: int = 0

    def __post_init__(self) -> None:
        for name in ("p", "a", "v"):
            object.__setattr__(self, name, np.atleast_1d(np.asarray(getattr(self, name), float)))
        if not (self.p.shape == self.a.shape == self.v.shape) or self.p.size == 0:
            raise ValueError("LognormalMixture: p, a and v must be non-empty and of one length")
        if np.any(self.p < 0) or abs(self.p.sum() - 1.0) > 1e-9:
            raise ValueError(f"LognormalMixture: weights must be >= 0 and sum to 1, got {self.p}")
        if np.any(self.a <= 0) or abs(float(self.p @ self.a) - 1.0) > 1e-9:
            raise ValueError(f"LognormalMixture: multipliers must be > 0 with Σ p·a = 1, got {self.a}")
        if np.any(self.v <= 0):
            raise ValueError(f"LognormalMixture: variances must be positive, got {self.v}")

    @classmethod
    def flat(cls, total_variance: float) -> LognormalMixture:
        """One lognormal (a flat smile)."""
        return cls(p=np.array([1.0]), a=np.array([1.0]), v=np.array([float(total_variance)]))

    @property
    def components(self) -> int:
        return int(self.p.size)

    def price(self, forward: float, strike: Any, is_call: Any) -> np.ndarray:
        """Undiscounted option prices."""
        return _mixture_price(self.p, self.a, self.v, forward, strike, is_call)

    def to_json(self) -> dict[str, Any]:
        return {"p": [round(float(x), 5) for x in self.p], "a": [round(float(x), 6) for x in self.a],
                "v": [float(f"{x:.6g}") for x in self.v], "rms_vol": self.rms_vol}


def _mixture_arrays(x: np.ndarray, n: int, v_atm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, a, v) of the fit parameters: softmax weights, multipliers normalized to Σ p·a = 1."""
    z = np.concatenate([[0.0], x[: n - 1]])
    e = np.exp(z - z.max())
    p = e / e.sum()
    m = np.exp(np.concatenate([[0.0], x[n - 1: 2 * n - 2]]))
    return p, m / float(p @ m), v_atm * np.exp(x[2 * n - 2:])


def _mixture_from(x: np.ndarray, n: int, v_atm: float) -> LognormalMixture:
    p, a, v = _mixture_arrays(x, n, v_atm)
    return LognormalMixture(p=p, a=a, v=v)


def _mixture_x(mix: LognormalMixture, v_atm: float) -> np.ndarray:
    """Inverse of :func:`_mixture_from` (a warm start)."""
    z = np.log(np.maximum(mix.p, 1e-12))
    c = np.log(mix.a)
    return np.concatenate([(z - z[0])[1:], (c - c[0])[1:], np.log(mix.v / v_atm)])


def _least_squares(fun_jac: Any, x0: np.ndarray, lo: Sequence[float], hi: Sequence[float], *,
                   max_iter: int, ftol: float = 1e-8, xtol: float = 1e-8, gtol: float = 1e-8
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ½|r(x)|² in the box [lo, hi]: Levenberg-Marquardt with Marquardt's diagonal
    scaling and Nielsen's damping update, an analytic Jacobian (``fun_jac(x) -> (r, J)``),
    the bounds by projection (a variable at a bound its gradient pushes against is held).
    Stops as scipy's ``least_squares`` does (ftol, xtol, gtol). Returns (x, r)."""
    lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    x = np.clip(np.asarray(x0, dtype=np.float64), lo_a, hi_a)
    r, jac = fun_jac(x)
    cost = 0.5 * float(r @ r)
    lam, nu = 1e-3, 2.0
    diag = slice(None, None, x.size + 1)
    for _ in range(max_iter):
        g = jac.T @ r
        held = ((x <= lo_a) & (g > 0)) | ((x >= hi_a) & (g < 0))
        any_held = bool(held.any())
        g_free = np.where(held, 0.0, g) if any_held else g
        if float(np.abs(g_free).max()) < gtol:
            break
        a = jac.T @ jac
        d = a.flat[diag]
        m = a.copy()
        m.flat[diag] += lam * np.maximum(d, 1e-12 * max(float(d.max()), 1e-300))
        if any_held:
            m[held, :] = 0.0
            m[:, held] = 0.0
            m[held, held] = 1.0
        try:
            step = np.linalg.solve(m, -g_free)
        except np.linalg.LinAlgError:
            lam, nu = lam * nu, nu * 2.0
            continue
        x_new = np.clip(x + step, lo_a, hi_a)
        st = x_new - x
        r_new, jac_new = fun_jac(x_new)
        cost_new = 0.5 * float(r_new @ r_new)
        predicted = -float(g @ st) - 0.5 * float(st @ (a @ st))
        rho = (cost - cost_new) / predicted if predicted > 0 else -1.0
        if rho > 0:
            gain = cost - cost_new
            x, r, jac, cost = x_new, r_new, jac_new, cost_new
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            if gain < ftol * cost or math.sqrt(float(st @ st)) < xtol * (xtol + math.sqrt(float(x @ x))):
                break
        else:
            lam, nu = lam * nu, nu * 2.0
            if lam > 1e16:
                break
    return x, r


class _MixtureFit:
    """Residuals (price errors in vol points) and their analytic Jacobian of a lognormal
    mixture on one expiry's OTM points; parameters as :func:`_mixture_arrays` (logits of the
    weights, log multipliers, log variance ratios) or, with ``weights`` fixed, without the
    logits (the far regimes)."""

    def __init__(self, pts: _Points, forward: float) -> None:
        self.f = forward
        self.k = pts.strikes[:, None]
        self.log_k = np.log(self.k)
        self.put = (~pts.is_call).astype(np.float64)[:, None]
        self.price = pts.price
        self.inv_scale = 1.0 / pts.scale

    def eval(self, p: np.ndarray, a: np.ndarray, v: np.ndarray, *, logits: bool
             ) -> tuple[np.ndarray, np.ndarray]:
        n = p.size
        b, dg, dv = _black_greeks(self.f * a, self.log_k, self.k, self.put, v)
        model = b @ p
        s = self.f * (dg @ (p * a))                       # F Σ p_i a_i ∂B_i/∂G
        pa = p[1:] * a[1:]
        cols = []
        if logits:   # ∂/∂z_j: p_j (B_j − M) − p_j (a_j − 1) S
            cols.append(p[1:] * (b[:, 1:] - model[:, None]) - (pa - p[1:]) * s[:, None])
        cols.append(self.f * pa * dg[:, 1:] - pa * s[:, None])   # ∂/∂ln m_j
        cols.append((p * v) * dv)                                # ∂/∂ln v_i
        jac = np.concatenate(cols, axis=1) if n > 1 else cols[-1]
        return (model - self.price) * self.inv_scale, jac * self.inv_scale[:, None]


def fit_mixture(q: ExpiryQuotes, rate: float = 0.065, *, max_components: int = 3) -> LognormalMixture:
    """The fewest-regime lognormal mixture (1 to ``max_components``) that fits ``q``'s smile.

    Residuals are price errors in vol points (floored at one tick); a regime is added only
    when it improves the RMS by more than 0.05 vol points.

    Raises:
        ValueError: fewer than two usable OTM quotes, or every fit failed.
    """
    if not 1 <= max_components <= 3:
        raise ValueError(f"max_components must be 1, 2 or 3, got {max_components}")
    p = _otm_points(q, rate)
    if p.k.size < 2:
        raise ValueError(f"expiry {q.expiry}: {p.k.size} usable OTM quote(s): cannot fit the "
                         "near smile's distribution")
    v_atm = float(np.interp(0.0, p.k, p.w))
    fit = _MixtureFit(p, q.forward)

    def solve(x0: np.ndarray, n: int) -> tuple[float, LognormalMixture] | None:
        lo = [-7.0] * (n - 1) + [-0.15] * (n - 1) + [math.log(0.02)] * n
        hi = [7.0] * (n - 1) + [0.15] * (n - 1) + [math.log(60.0)] * n

        def fun_jac(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return fit.eval(*_mixture_arrays(x, n, v_atm), logits=True)

        try:
            x, r = _least_squares(fun_jac, x0, lo, hi, max_iter=150 * len(x0))
        except (ValueError, np.linalg.LinAlgError):
            return None
        if not np.all(np.isfinite(r)):
            return None
        return float(np.sqrt(np.mean(r ** 2))), _mixture_from(x, n, v_atm)

    best = solve(np.array([0.0]), 1)
    if best is None:
        raise ValueError(f"expiry {q.expiry}: the near smile's distribution fit failed")
    cap = min(max_components, max(1, p.k.size // 3))
    if best[0] >= 0.05 and cap >= 2:
        two = [solve(np.array([-1.0, s * 0.01, math.log(0.7), math.log(2.0)]), 2) for s in (-1, 1)]
        two = [t for t in two if t is not None]
        if two:
            cand = min(two, key=lambda t: t[0])
            if cand[0] < best[0] - 0.05:
                best = cand
        if best[0] >= 0.05 and cap >= 3 and best[1].components == 2:
            x2 = _mixture_x(best[1], v_atm)
            # warm start: the two regimes found plus a rare, wide, lower one (the put wing)
            x3 = np.array([x2[0], -4.0, x2[1], -0.02, x2[2], x2[3], math.log(8.0)])
            cands = [solve(x3, 3), solve(np.array([-1.0, -2.5, -0.01, 0.01, math.log(0.7),
                                                   math.log(1.4), math.log(4.0)]), 3)]
            cands = [t for t in cands if t is not None]
            if cands:
                cand = min(cands, key=lambda t: t[0])
                if cand[0] < best[0] - 0.05:
                    best = cand
    rms, mix = best
    return LognormalMixture(p=mix.p, a=mix.a, v=mix.v, rms_vol=round(rms, 4), points=int(p.k.size))


def fit_far_regimes(q: ExpiryQuotes, mixture: LognormalMixture, near_t_trading: float,
                    rate: float = 0.065) -> tuple[np.ndarray, np.ndarray, float]:
    """The far expiry ``q``'s smile in the near's regimes: the weights ``p_i`` held, each
    regime its own far forward multiplier and total variance to ``q``'s expiry. Returns
    ``(a_far, v_far, rms in vol points)``; starts from "no richness" (each regime's vol per
    trading year as in the near, the near's multipliers).

    Raises:
        ValueError: fewer than two usable OTM quotes on ``q``.
    """
    p = _otm_points(q, rate)
    if p.k.size < 2:
        raise ValueError(f"expiry {q.expiry}: {p.k.size} usable OTM quote(s): cannot fit its smile")
    n = mixture.components
    base = mixture.v * (q.t_trading / near_t_trading)
    fit = _MixtureFit(p, q.forward)

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = mixture.a * np.exp(np.concatenate([[0.0], x[: n - 1]]))
        return e / float(mixture.p @ e), base * np.exp(x[n - 1:])

    def fun_jac(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, v = unpack(x)
        return fit.eval(mixture.p, a, v, logits=False)

    lo = [-0.3] * (n - 1) + [math.log(0.05)] * n
    hi = [0.3] * (n - 1) + [math.log(20.0)] * n
    x, r = _least_squares(fun_jac, np.zeros(2 * n - 1), lo, hi, max_iter=200 * (2 * n - 1))
    a, v = unpack(x)
    return a, v, round(float(np.sqrt(np.mean(r ** 2))), 4)


def _mixture_price(p: np.ndarray, a: np.ndarray, v: np.ndarray, forward: float, strike: Any,
                   is_call: Any) -> np.ndarray:
    k = np.asarray(strike, dtype=np.float64)[..., None]
    c = np.asarray(is_call, dtype=bool)[..., None]
    return np.sum(p * _black(forward * a, k, v, c), axis=-1)


# --------------------------------------------------------------------------- surface
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Surface:
    """The fitted market one cycle's scores share: the near distribution, each later
    expiry's regimes (``far_a``, ``far_v``: forward multipliers and total variances), and
    each expiry's SVI smile (fitted on first use: only the static IV models need it)."""

    near: ExpiryQuotes
    mixture: LognormalMixture
    far_a: Mapping[date, np.ndarray]
    far_v: Mapping[date, np.ndarray]
    far_rms: Mapping[date, float]
    quotes: Mapping[date, ExpiryQuotes]
    rate: float
    _smiles: dict[date, Smile] = field(default_factory=dict, repr=False)

    def smile(self, expiry: date) -> Smile:
        """The SVI smile of ``expiry`` (fitted once)."""
        if expiry not in self._smiles:
            self._smiles[expiry] = fit_smile(self.quotes[expiry], self.rate)
        return self._smiles[expiry]

    def richness(self, expiry: date) -> list[float]:
        """Per regime: near − far vol per trading year, vol points."""
        q = self.quotes[expiry]
        vn = np.sqrt(self.mixture.v / self.near.t_trading)
        vf = np.sqrt(self.far_v[expiry] / q.t_trading)
        return [round(100.0 * float(x), 3) for x in vn - vf]

    def to_json(self) -> dict[str, Any]:
        return {"near_expiry": self.near.expiry.isoformat(), "mixture": self.mixture.to_json(),
                "far": {d.isoformat(): {"regime_richness_vol_pts": self.richness(d),
                                        "a": [round(float(x), 6) for x in self.far_a[d]],
                                        "rms_vol": self.far_rms[d]} for d in self.far_v}}


def fit_surface(near: ExpiryQuotes, others: Iterable[ExpiryQuotes] = (), *,
                rate: float = 0.065, mixture: LognormalMixture | None = None) -> Surface:
    """Fit the near distribution (unless ``mixture`` is given) and each later expiry's
    regimes.

    Raises:
        ValueError: an expiry not after near, or too few quotes to fit one.
    """
    quotes = {near.expiry: near}
    for q in others:
        if q.expiry <= near.expiry:
            raise ValueError(f"expiry {q.expiry} is not after the near expiry {near.expiry}")
        quotes[q.expiry] = q
    mix = mixture if mixture is not None else fit_mixture(near, rate)
    far_a, far_v, far_rms = {}, {}, {}
    for d, q in quotes.items():
        if d != near.expiry:
            far_a[d], far_v[d], far_rms[d] = fit_far_regimes(q, mix, near.t_trading, rate)
    return Surface(near=near, mixture=mix, far_a=far_a, far_v=far_v, far_rms=far_rms,
                   quotes=quotes, rate=rate)


# --------------------------------------------------------------------------- valuation
@dataclass(frozen=True, slots=True, kw_only=True)
class ExitRule:
    """Early exits on the way to the planned exit, in the structure's *mid* value (PV,
    rupees): close when it reaches ``target_value`` or falls to ``stop_value``, or when spot
    leaves ``spot_band``; checked ``checks_per_session`` times per trading session."""

    target_value: float | None = None
    stop_value: float | None = None
    spot_band: tuple[float | None, float | None] = (None, None)
    checks_per_session: int = 6

    def __post_init__(self) -> None:
        if self.checks_per_session < 1:
            raise ValueError(f"checks_per_session must be >= 1, got {self.checks_per_session}")
        if (self.target_value is not None and self.stop_value is not None
                and self.target_value <= self.stop_value):
            raise ValueError(f"target_value {self.target_value} must be above stop_value {self.stop_value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Valuation:
    """A structure's score at its planned exit (rupees; PV at ``rate``)."""

    model: str
    expected_exit_value: float   # PV of E[mid value when closed] (longs +, shorts −)
    terminal_value: float        # the same, held to the planned exit whatever happens
    mid_debit: float             # Σ side × mid × units now
    debit: float                 # what the % are of: actual fills including charges
    charges: float
    spread: float
    edge_before_costs: float
    edge_after_costs: float
    edge_before_pct: float | None
    edge_after_pct: float | None
    prob_profit: float           # P(value at the planned exit > mid debit + costs)
    prob_target: float           # P(the target fires first) (0 without an ExitRule)
    prob_stop: float             # P(the stop or the spot band fires first)
    breakevens: tuple[float | None, float | None]  # spot at the planned exit
    leg_edges: tuple[float, ...]  # per leg, held to the planned exit: PV(E) − mid, signed

    def to_json(self) -> dict[str, Any]:
        def r2(x: float | None) -> float | None:
            return None if x is None else round(float(x), 2)

        return {"model": self.model, "expected_exit_value": r2(self.expected_exit_value),
                "terminal_value": r2(self.terminal_value), "mid_debit": r2(self.mid_debit),
                "debit": r2(self.debit), "charges": r2(self.charges), "spread": r2(self.spread),
                "edge_before": r2(self.edge_before_costs), "edge_after": r2(self.edge_after_costs),
                "edge_before_pct": r2(self.edge_before_pct), "edge_after_pct": r2(self.edge_after_pct),
                "prob_profit": round(self.prob_profit, 4), "prob_target": round(self.prob_target, 4),
                "prob_stop": round(self.prob_stop, 4),
                "breakevens": [r2(b) for b in self.breakevens],
                "leg_edges": [r2(x) for x in self.leg_edges]}


@dataclass(frozen=True, slots=True, eq=False)
class _Model:
    """What one valuation evaluates: the regimes, each leg's calibration."""

    mix: LognormalMixture
    legs: tuple[LegSpec, ...]
    surface: Surface
    distribution: str
    iv_model: str
    offsets: tuple[float, ...]    # market mid − model price now, undiscounted, per leg
    own_iv: tuple[float, ...]     # far legs: own IV per trading year (static IV models)


def _regimes(mix: LognormalMixture, theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b, mean, var) of x = ln(F_θ/F) per regime at near-time share ``theta``."""
    b = 1.0 + theta * (mix.a - 1.0)
    var = theta * mix.v
    return b, np.log(b) - 0.5 * var, var


def _log_joint(mix: LognormalMixture, theta: float, x: np.ndarray) -> np.ndarray:
    """log(p_i · φ_i(x)) at share ``theta`` (n, grid)."""
    _b, mean, var = _regimes(mix, theta)
    return (-0.5 * (x[None, :] - mean[:, None]) ** 2 / var[:, None]
            - 0.5 * np.log(2 * math.pi * var[:, None]) + np.log(mix.p)[:, None])


def _posterior(mix: LognormalMixture, theta: float, x: np.ndarray) -> np.ndarray:
    """π_i(x): the weight of regime i given x at share ``theta`` (n, grid)."""
    if theta <= 1e-12:
        return np.broadcast_to(mix.p[:, None], (mix.components, x.size))
    lj = _log_joint(mix, theta, x)
    return np.exp(lj - logsumexp(lj, axis=0)[None, :])


def _leg_marks(m: _Model, theta: Any, x: np.ndarray) -> list[np.ndarray]:
    """Per leg: its PV mid value (side × units, with its calibration offset) per regime at
    near-time share ``theta``: in regime i every near leg is Black-76 at the regime's own vol
    over the time left, and (``regime``) every far leg at the regime's far vol per trading
    year. ``x``: one grid for every regime (G,) -> (n, G) each, or regime i's own grid on row
    i (n, G). ``theta`` may be an array (k, 1, 1) of checks when no leg is under a static IV
    model -> (k, n, G)."""
    s = m.surface
    near = s.near
    mix = m.mix
    x2 = x if x.ndim == 2 else x[None, :]
    a = mix.a[:, None]
    b = 1.0 + theta * (a - 1.0)                            # regime i's E[F_θ]/F
    log_drift = np.log(a / b) + x2                         # ln(E[F_T | x]/F) in regime i
    tau = theta * near.t_trading
    flat = m.distribution == "flat_atm"
    fe = None
    out = []
    for leg, offset, own in zip(m.legs, m.offsets, m.own_iv, strict=True):
        q = s.quotes[leg.expiry]
        df = math.exp(-s.rate * q.t)
        if leg.expiry == near.expiry:
            val = _black_lognormal(math.log(near.forward) + log_drift, leg.strike,
                                   (1.0 - theta) * mix.v[:, None], leg.is_call)
        elif m.iv_model == "regime" and not flat:
            rest = s.far_v[leg.expiry][:, None] * (1.0 - tau / q.t_trading)
            log_far = math.log(q.forward) + np.log(s.far_a[leg.expiry][:, None] / b) + x2
            val = _black_lognormal(log_far, leg.strike, rest, leg.is_call)
        else:  # the static models: one far smile whatever the regime, on the market forward
            if np.ndim(theta) != 0:
                raise ValueError("a static IV model is valued one check at a time")
            if fe is None:    # E[F_T]/F given x, over the regimes
                flat_x = x2.reshape(-1)
                drift = np.exp(np.log(mix.a / b[:, 0])[:, None] + flat_x[None, :])
                fe = np.sum(_posterior(mix, theta, flat_x) * drift, axis=0).reshape(x2.shape)
            f_exit = q.forward * fe
            if flat or m.iv_model == "sticky_strike":
                iv_tt = np.full(f_exit.shape, own)
            else:
                sm = s.smile(leg.expiry)
                k0 = math.log(leg.strike / q.forward)
                iv_tt = own + sm.iv_trading(np.log(leg.strike / f_exit)) - float(sm.iv_trading(k0))
            val = np.broadcast_to(_black(f_exit, leg.strike, np.maximum(iv_tt, 1e-4) ** 2
                                         * (q.t_trading - tau), leg.is_call),
                                  (mix.components, x2.shape[-1]))
        out.append(leg.sign * leg.units * df * (val + offset))
    return out


def _marks(m: _Model, theta: Any, x: np.ndarray) -> np.ndarray:
    """PV mid value of the structure per regime (the sum of :func:`_leg_marks`)."""
    legs = _leg_marks(m, theta, x)
    total = legs[0].copy()
    for v in legs[1:]:
        total += v
    return total


def _calibrate(legs: Sequence[LegSpec], surface: Surface, mix: LognormalMixture, distribution: str,
               iv_model: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per leg: the market mid − model price now (near legs, and far legs under
    ``regime``; undiscounted), and the far leg's own IV per trading year (static models)."""
    offsets, own = [], []
    near = surface.near
    for leg in legs:
        q = surface.quotes[leg.expiry]
        mid_u = leg.mid_price / math.exp(-surface.rate * q.t)
        offset, iv_tt = 0.0, math.nan
        if leg.expiry == near.expiry:
            if distribution == "near_smile":
                offset = mid_u - float(mix.price(near.forward, leg.strike, leg.is_call))
        elif iv_model == "regime" and distribution == "near_smile":
            offset = mid_u - float(_mixture_price(mix.p, surface.far_a[leg.expiry],
                                                  surface.far_v[leg.expiry], q.forward, leg.strike,
                                                  leg.is_call))
        else:
            k0 = math.log(leg.strike / q.forward)
            iv = implied_vol_black76(leg.mid_price, q.forward, leg.strike, q.t, leg.is_call,
                                     surface.rate).iv
            iv_cal = (float(iv) if np.isfinite(iv)
                      else math.sqrt(float(surface.smile(leg.expiry).total_variance(k0)) / q.t))
            iv_tt = iv_cal * math.sqrt(q.t / q.t_trading)
        offsets.append(offset)
        own.append(iv_tt)
    return tuple(offsets), tuple(own)


@dataclass(frozen=True, slots=True, kw_only=True)
class StructureToValue:
    """One structure for :func:`value_structures` (the arguments of :func:`value_structure`
    that differ between structures)."""

    legs: Sequence[LegSpec]
    charges: float = 0.0
    spread: float = 0.0
    debit: float | None = None
    exits: ExitRule | None = None


def structure_problem(legs: Sequence[LegSpec], surface: Surface, tau_exit: float) -> str | None:
    """Why ``legs`` cannot be valued on ``surface`` at ``tau_exit`` (None: it can)."""
    if not legs:
        return "value_structure needs at least one leg"
    near = surface.near
    if not (0.0 <= tau_exit < near.t_trading):
        return (f"planned exit {tau_exit * 252:.3f} sessions away must be before the near "
                f"expiry {near.expiry} ({near.t_trading * 252:.3f} sessions away)")
    for leg in legs:
        q = surface.quotes.get(leg.expiry)
        if q is None:
            return (f"leg {leg.label()}: expiry not in the surface (have "
                    f"{', '.join(str(d) for d in surface.quotes)})")
        if leg.expiry != near.expiry and q.t_trading <= tau_exit:
            return f"leg {leg.label()} expires before the planned exit"
    return None


def value_structure(
    legs: Sequence[LegSpec], surface: Surface, *, tau_exit: float,
    charges: float = 0.0, spread: float = 0.0, debit: float | None = None,
    spot: float | None = None, distribution: Distribution = "near_smile",
    iv_model: IvModel = "regime", exits: ExitRule | None = None,
) -> Valuation:
    """Score ``legs`` at the planned exit, ``tau_exit`` trading years from now.

    Args:
        legs: the structure; near legs are those on ``surface.near``'s expiry, every other
            leg must be on an expiry of ``surface`` that is still alive at the exit.
        surface: from :func:`fit_surface`.
        tau_exit: trading years from now to the planned exit (< the near expiry's).
        charges / spread: round-trip charges and round-trip spread of the structure (rupees).
        debit: the denominator of the percentages (actual fills including charges);
            default: the debit at the entry prices plus half the charges.
        spot: spot now, to express the breakevens in spot; default: the near forward.
        distribution: ``near_smile`` (the model above) or ``flat_atm`` (the naive bias demo).
        iv_model: ``regime``, ``sticky_moneyness`` or ``sticky_strike`` (the far legs).
        exits: early exits on the way (default: held to the planned exit).

    Raises:
        ValueError: no legs, a leg on an expiry the surface does not have or that dies
            before the exit, an exit not before the near expiry, a bad model name.
    """
    one = StructureToValue(legs=legs, charges=charges, spread=spread, debit=debit, exits=exits)
    return value_structures([one], surface, tau_exit=tau_exit, spot=spot,
                            distribution=distribution, iv_model=iv_model)[0]


def value_structures(
    structures: Sequence[StructureToValue], surface: Surface, *, tau_exit: float,
    spot: float | None = None, distribution: Distribution = "near_smile",
    iv_model: IvModel = "regime",
) -> list[Valuation]:
    """:func:`value_structure` of every structure, in order, on one surface and exit: each
    contract is priced once for all of them and their exit paths are induced together
    (MDC's variants share most legs and every grid).

    Raises:
        ValueError: as :func:`value_structure`, for the first structure that cannot be valued.
    """
    if distribution not in ("near_smile", "flat_atm"):
        raise ValueError(f"distribution must be near_smile or flat_atm, got {distribution!r}")
    if iv_model not in IV_MODELS:
        raise ValueError(f"iv_model must be one of {', '.join(IV_MODELS)}, got {iv_model!r}")
    for st in structures:
        problem = structure_problem(st.legs, surface, tau_exit)
        if problem is not None:
            raise ValueError(problem)
    if not structures:
        return []
    near = surface.near
    theta = tau_exit / near.t_trading
    mix = LognormalMixture.flat(_atm_w(near, surface.rate)) if distribution == "flat_atm" else surface.mixture
    x, wts = _exit_grid(mix, theta)
    # every distinct contract once, long one unit; a structure is a signed sum of them
    index: dict[tuple[date, float, bool, float], int] = {}
    for st in structures:
        for leg in st.legs:
            index.setdefault((leg.expiry, leg.strike, leg.is_call, leg.mid_price), len(index))
    contracts = tuple(LegSpec(strike=k, option_type="CE" if c else "PE", expiry=e, side="BUY",
                              units=1, entry_price=mid, mid=mid) for e, k, c, mid in index)
    offsets, own = _calibrate(contracts, surface, mix, distribution, iv_model)
    model = _Model(mix=mix, legs=contracts, surface=surface, distribution=distribution,
                   iv_model=iv_model, offsets=offsets, own_iv=own)
    weights = np.zeros((len(structures), len(contracts)))   # structure × contract: side × units
    for s_i, st in enumerate(structures):
        for leg in st.legs:
            weights[s_i, index[(leg.expiry, leg.strike, leg.is_call, leg.mid_price)]] += leg.sign * leg.units
    unit = np.stack(_leg_marks(model, theta, x))                       # (contracts, n, grid)
    unit_exp = np.einsum("n,cng->c", mix.p, wts[None, :, :] * unit)   # E[PV] of one unit each
    values_all = np.einsum("sc,cng->sng", weights, unit)
    s0 = float(spot) if spot is not None else near.forward
    paths: dict[int, tuple[float, float, float]] = {}
    if theta > 1e-12:
        by_checks: dict[int, list[int]] = {}
        for s_i, st in enumerate(structures):
            if st.exits is not None:
                by_checks.setdefault(st.exits.checks_per_session, []).append(s_i)
        for members in by_checks.values():
            for s_i, res in zip(members, _with_exits(model, weights[members], theta,
                                                     [structures[i].exits for i in members], s0),
                                strict=True):
                paths[s_i] = res
    posterior = _posterior(mix, theta, x)
    _b, mean_x, var_x = _regimes(mix, theta)
    central = np.abs(x - float(mix.p @ mean_x)) <= 6.0 * math.sqrt(max(float(mix.p @ var_x), 1e-16))
    out = []
    for s_i, st in enumerate(structures):
        legs, charges, spread = st.legs, float(st.charges), float(st.spread)
        values = values_all[s_i]
        terminal = float(mix.p @ np.sum(wts * values, axis=1))
        leg_edges = tuple(leg.sign * leg.units * (
            float(unit_exp[index[(leg.expiry, leg.strike, leg.is_call, leg.mid_price)]]) - leg.mid_price)
            for leg in legs)
        expected, p_target, p_stop = paths.get(s_i, (terminal, 0.0, 0.0))
        mid_debit = sum(leg.sign * leg.units * leg.mid_price for leg in legs)
        entry_debit = sum(leg.sign * leg.units * leg.entry_price for leg in legs)
        denom = float(st.debit) if st.debit is not None else entry_debit + 0.5 * charges
        costs = charges + spread
        before = expected - mid_debit
        after = before - costs

        def pct(e: float, denom: float = denom) -> float | None:
            return 100.0 * e / denom if denom > 0 else None

        threshold = mid_debit + costs
        given_x = np.sum(posterior * values, axis=0)                   # E[value | spot at exit]
        if distribution == "near_smile":
            name = (f"near_smile: {mix.components}-regime lognormal mixture of the near smile, far IV "
                    f"{iv_model.replace('_', ' ')}, trading-time variance"
                    + (", target/stop path" if st.exits is not None else ""))
        else:
            name = ("flat_atm: lognormal at the near ATM IV, near legs at that flat IV, far legs at "
                    "their own IV (the biased naive score)")
        out.append(Valuation(
            model=name, expected_exit_value=expected, terminal_value=terminal, mid_debit=mid_debit,
            debit=denom, charges=charges, spread=spread, edge_before_costs=before,
            edge_after_costs=after, edge_before_pct=pct(before), edge_after_pct=pct(after),
            prob_profit=float(mix.p @ np.sum(wts * (values > threshold), axis=1)),
            prob_target=p_target, prob_stop=p_stop,
            breakevens=_breakevens(s0 * np.exp(x[central]), given_x[central] - threshold),
            leg_edges=leg_edges))
    return out


def _exit_grid(mix: LognormalMixture, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """The x grid at the exit and each regime's probability weights on it (n, grid)."""
    _b, mean, var = _regimes(mix, theta)
    if theta <= 1e-12:
        return np.zeros(1), np.ones((mix.components, 1))
    sd = np.sqrt(var)
    x = np.linspace(float(np.min(mean - _GRID_SD * sd)), float(np.max(mean + _GRID_SD * sd)),
                    _GRID_POINTS)
    w = np.exp(-0.5 * (x[None, :] - mean[:, None]) ** 2 / var[:, None])
    return x, w / w.sum(axis=1, keepdims=True)


@dataclass(frozen=True, slots=True)
class _Jumps:
    """The cells a check's rules cut: a hit on part of the cell, the rest continued. Index
    (structure, regime, point); the hit part [lo, hi]; its share of the cell; per state row
    the jump, (value once hit) − (continuation), at the point."""

    s: np.ndarray
    r: np.ndarray
    j: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    share: np.ndarray
    amp: np.ndarray      # (cells, rows)

    @staticmethod
    def concat(parts: Sequence[_Jumps]) -> _Jumps:
        return _Jumps(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Jumps.__slots__))


def _step(state: np.ndarray, h: np.ndarray, mu: np.ndarray, var: np.ndarray, x: np.ndarray,
          jumps: _Jumps | None) -> np.ndarray:
    """E[state(x + Δ)] on each regime's uniform grid (``state``: (structures, regimes, rows,
    P); regime i's grid ``x[i]``, spacing ``h[i]``, Δ ~ N(mu[i], var[i]) truncated at 8 SD),
    edges held flat. The sum over the grid treats every cell as one value; in the cells a
    rule cuts (``jumps``) the hit part's kernel mass is integrated exactly instead."""
    sd = np.sqrt(var)
    half = int(np.max(np.ceil((np.abs(mu) + 8.0 * sd) / h)))
    offs = np.arange(-half, half + 1)
    g = np.exp(-0.5 * (offs[None, :] * h[:, None] - mu[:, None]) ** 2 / var[:, None])
    g /= g.sum(axis=1, keepdims=True)
    out = np.empty_like(state)
    for i in range(state.shape[1]):
        out[:, i] = correlate1d(state[:, i], g[i], axis=-1, mode="nearest")
    if jumps is not None and jumps.s.size:
        target = jumps.j[:, None] - offs[None, :]         # the points each cut cell reaches
        inside = (target >= 0) & (target < x.shape[1])
        target = np.clip(target, 0, x.shape[1] - 1)
        xt = x[jumps.r[:, None], target] + mu[jumps.r][:, None]
        sdr = sd[jumps.r][:, None]
        mass = ndtr((jumps.hi[:, None] - xt) / sdr) - ndtr((jumps.lo[:, None] - xt) / sdr)
        corr = np.where(inside, mass - jumps.share[:, None] * g[jumps.r], 0.0)
        _n_s, n_r, n_rows, n_p = state.shape
        flat = (((jumps.s * n_r + jumps.r)[:, None, None] * n_rows + np.arange(n_rows)[None, :, None])
                * n_p + target[:, None, :])
        out += np.bincount(flat.ravel(), weights=(jumps.amp[:, :, None] * corr[:, None, :]).ravel(),
                           minlength=state.size).reshape(state.shape)
    return out


def _cell_share(level: np.ndarray, x: np.ndarray, h: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per grid point, the share of its cell (± half a spacing) where ``level`` (sampled on
    the grid ``x`` (regimes, P), spacing ``h``; linear across the cell at its central slope)
    is > 0, and that part of the cell [lo, hi] (NaN where the cell is not cut): a rule's
    hit set resolved inside the cells."""
    d = np.empty_like(level)
    d[..., 1:-1] = 0.5 * (level[..., 2:] - level[..., :-2])
    d[..., 0] = level[..., 1] - level[..., 0]
    d[..., -1] = level[..., -1] - level[..., -2]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share = np.clip(0.5 + level / np.abs(d), 0.0, 1.0)
        share = np.where(d != 0, share, (level > 0).astype(np.float64))
        cut = (share > 0) & (share < 1)
        half = 0.5 * h[:, None]
        edge = x - level / d * h[:, None]                 # where the linear level crosses 0
        lo = np.where(cut, np.where(d > 0, edge, x - half), np.nan)
        hi = np.where(cut, np.where(d > 0, x + half, edge), np.nan)
    return share, lo, hi


def _union(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hit share of either of ``parts`` (the larger; a cell two rules cut takes the one
    that cuts more of it), with that part's sub-interval."""
    share, lo, hi = parts[0]
    for s2, lo2, hi2 in parts[1:]:
        more = s2 > share
        share, lo, hi = np.where(more, s2, share), np.where(more, lo2, lo), np.where(more, hi2, hi)
    return share, lo, hi


def _jumps(share: np.ndarray, lo: np.ndarray, hi: np.ndarray, amp: np.ndarray) -> _Jumps:
    """The cut cells of one hit set; ``amp`` (structures, regimes, rows, P): the jump."""
    s, r, j = np.nonzero((share > 0) & (share < 1))
    return _Jumps(s=s, r=r, j=j, lo=lo[s, r, j], hi=hi[s, r, j], share=share[s, r, j],
                  amp=amp[s, r, :, j])


#: a threshold no mark reaches (a rule without a target, stop or band side)
_NEVER = 1e300


def _with_exits(m: _Model, weights: np.ndarray, theta_exit: float, rules: Sequence[ExitRule],
                spot: float) -> list[tuple[float, float, float]]:
    """Backward induction for each structure (``weights``: structure × contract of ``m``,
    ``rules``: one each, with one ``checks_per_session``) in every regime at once, each
    regime on its own marks and its own grid (± ``_PATH_SD`` of its SDs at the exit,
    ``_PATH_RES`` points per SD of one check-to-check step; the cells a rule cuts
    integrated exactly): per structure (PV of E[value when closed], P(target first),
    P(stop or band first))."""
    mix = m.mix
    sessions = theta_exit * m.surface.near.t_trading * 252.0
    n = max(1, math.ceil(sessions * rules[0].checks_per_session))
    thetas = np.linspace(0.0, theta_exit, n + 1)
    b = 1.0 + thetas[:, None] * (mix.a - 1.0)                        # (n + 1, regimes)
    mean = np.log(b) - 0.5 * thetas[:, None] * mix.v
    sd = np.sqrt(theta_exit * mix.v)
    points = max(_PATH_MIN_POINTS, math.ceil(2.0 * _PATH_SD * math.sqrt(n) * _PATH_RES) + 1)
    lo_x = mean[1:].min(axis=0) - _PATH_SD * sd
    hi_x = mean[1:].max(axis=0) + _PATH_SD * sd
    x = lo_x[:, None] + (hi_x - lo_x)[:, None] * np.linspace(0.0, 1.0, points)[None, :]
    h = (hi_x - lo_x) / (points - 1)

    def per_structure(values: list[float | None], default: float) -> np.ndarray:
        return np.array([default if v is None else float(v) for v in values])[:, None, None]

    band_lo = per_structure([None if r.spot_band[0] is None else math.log(r.spot_band[0] / spot)
                             for r in rules], -_NEVER)
    band_hi = per_structure([None if r.spot_band[1] is None else math.log(r.spot_band[1] / spot)
                             for r in rules], _NEVER)
    stop_v = per_structure([r.stop_value for r in rules], -_NEVER)
    target_v = per_structure([r.target_value for r in rules], _NEVER)
    band = [_cell_share(band_lo - x[None], x, h), _cell_share(x[None] - band_hi, x, h)]
    if all(c.expiry == m.surface.near.expiry for c in m.legs) or (
            m.iv_model == "regime" and m.distribution != "flat_atm"):
        unit = np.stack(_leg_marks(m, thetas[1:, None, None], x))       # (contracts, n, regimes, P)
    else:
        unit = np.stack([np.stack(_leg_marks(m, float(t), x)) for t in thetas[1:]], axis=1)
    marks = np.einsum("sc,ckrp->skrp", weights, unit)                  # (structures, n, regimes, P)
    zeros = np.zeros(marks[:, 0].shape)
    state = np.stack([marks[:, n - 1], zeros, zeros], axis=2)          # (structures, regimes, 3, P)
    jumps: _Jumps | None = None
    for k in range(n - 1, 0, -1):
        d = float(thetas[k + 1] - thetas[k])
        state = _step(state, h, np.log(b[k + 1] / b[k]) - 0.5 * d * mix.v, d * mix.v, x, jumps)
        mk = marks[:, k - 1]
        stop, s_lo, s_hi = _union([*band, _cell_share(stop_v - mk, x, h)])
        tgt, t_lo, t_hi = _cell_share(mk - target_v, x, h)
        # a cell wholly at the target but cut by the stop: the target has the rest of it
        rest = (tgt >= 1.0) & (stop > 0.0) & (stop < 1.0)
        if rest.any():
            half = 0.5 * h[None, :, None]
            stop_left = np.abs(s_lo - (x[None] - half)) <= 1e-12 * np.maximum(half, 1.0)
            t_lo = np.where(rest, np.where(stop_left, s_hi, x[None] - half), t_lo)
            t_hi = np.where(rest, np.where(stop_left, x[None] + half, s_lo), t_hi)
        tgt = np.minimum(tgt, 1.0 - stop)
        one, nil = np.ones(mk.shape), np.zeros(mk.shape)
        amp_s = np.stack([mk, nil, one], axis=2) - state             # once stopped − continued
        amp_t = np.stack([mk, one, nil], axis=2) - state
        jumps = _Jumps.concat([_jumps(stop, s_lo, s_hi, amp_s), _jumps(tgt, t_lo, t_hi, amp_t)])
        state = state + stop[:, :, None, :] * amp_s + tgt[:, :, None, :] * amp_t
    var1 = thetas[1] * mix.v
    dens = np.exp(-0.5 * (x - mean[1][:, None]) ** 2 / var1[:, None])
    dens /= dens.sum(axis=1, keepdims=True)
    res = np.einsum("srkp,rp->srk", state, dens)                      # (structures, regimes, 3)
    if jumps is not None and jumps.s.size:
        m1, sd1 = mean[1][jumps.r], np.sqrt(var1[jumps.r])
        mass = ndtr((jumps.hi - m1) / sd1) - ndtr((jumps.lo - m1) / sd1)
        corr = mass - jumps.share * dens[jumps.r, jumps.j]
        flat = (jumps.s * res.shape[1] + jumps.r)[:, None] * res.shape[2] + np.arange(res.shape[2])
        res += np.bincount(flat.ravel(), weights=(jumps.amp * corr[:, None]).ravel(),
                           minlength=res.size).reshape(res.shape)
    total = np.einsum("r,srk->sk", mix.p, res)
    return [(float(v), float(pt), float(ps)) for v, pt, ps in total]


def _breakevens(spot_exit: np.ndarray, pnl: np.ndarray) -> tuple[float | None, float | None]:
    """The lowest and highest spot at the exit where the P&L crosses zero (the outer
    breakevens: a wide double calendar can dip between its strikes); None where it does not."""
    pos = np.flatnonzero(pnl > 0)
    if pnl.size < 2 or pos.size == 0:
        return None, None

    def cross(j0: int, j1: int) -> float:
        y0, y1 = pnl[j0], pnl[j1]
        return float(spot_exit[j0] + (spot_exit[j1] - spot_exit[j0]) * y0 / (y0 - y1))

    first, last = int(pos[0]), int(pos[-1])
    lower = cross(first, first - 1) if first > 0 else None
    upper = cross(last, last + 1) if last < pnl.size - 1 else None
    return lower, upper
