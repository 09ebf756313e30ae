"""IV surface summary of a snapshot (the ``iv_snapshots`` sample).

Definitions (all IVs annualized *decimal fractions* here; the store writes percent):

* Forward per expiry: put-call parity on the (up to) 3 strikes nearest spot where both legs
  have a price: ``F = K + (C - P) e^{rT}``, median; fallback ``spot e^{rT}``. All IVs are
  Black-76 on that forward (nse-data.md section 8: closes can sit below spot-intrinsic).
* Per-leg IV: the source IV when present (``iv_source="source"``), else inverted from LTP
  (mid when LTP is missing) and marked ``"estimated"``.
* ``near``/``mid``/``far``: the first, second and last chain with time left; ``far`` is the
  last chain (the monthly in the simulator, the far leg of calendar spreads).
* ATM strike: listed strike nearest spot. ``atm_call_iv``/``atm_put_iv``: near expiry;
  ``near_atm_iv``/``far_atm_iv``: mean of the CE and PE IV at the ATM strike.
* ``skew`` (near expiry): 25-delta put IV minus 25-delta call IV, each interpolated
  linearly in Black-76 forward delta over the OTM side (puts below F, calls above). Positive
  = puts richer (the normal NIFTY state). None when 25-delta is not bracketed.
* Straddles: CE + PE price at the ATM strike (index points).
* ``realized_range``: session high minus low of spot in index points (from the given
  high/low, or max-min of a price history); None when neither is given.
* DTE: calendar days from the snapshot date to the expiry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np

from engine.market.iv import implied_vol_black76
from engine.market.pricing import black76_greeks, year_fraction
from engine.market.snapshot import MarketSnapshot, OptionChain
from engine.timeutil import to_ist

__all__ = ["ExpiryIV", "IvSurface", "analyze_expiries", "analyze_expiry", "compute_surface", "live_chains"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ExpiryIV:
    """Per-expiry IV analysis (arrays aligned with ``strikes``)."""

    expiry: date
    dte: int
    t: float
    forward: float
    atm_strike: float
    strikes: np.ndarray
    ce_price: np.ndarray
    pe_price: np.ndarray
    ce_iv: np.ndarray
    pe_iv: np.ndarray
    ce_source: np.ndarray  # bool: True = IV came from the feed
    pe_source: np.ndarray

    def _at_atm(self, arr: np.ndarray) -> float | None:
        i = int(np.searchsorted(self.strikes, self.atm_strike))
        return _opt(arr[i])

    @property
    def atm_call_iv(self) -> float | None:
        """CE IV at the ATM strike."""
        return self._at_atm(self.ce_iv)

    @property
    def atm_put_iv(self) -> float | None:
        """PE IV at the ATM strike."""
        return self._at_atm(self.pe_iv)

    @property
    def atm_iv(self) -> float | None:
        """Mean of CE and PE IV at ATM (the one available if only one is)."""
        vals = [v for v in (self.atm_call_iv, self.atm_put_iv) if v is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def straddle(self) -> float | None:
        """CE + PE price at the ATM strike."""
        c, p = self._at_atm(self.ce_price), self._at_atm(self.pe_price)
        return None if c is None or p is None else c + p


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class IvSurface:
    """One iv_snapshots sample (fields mirror the table; IVs as fractions)."""

    created_at: datetime
    trade_date: date
    spot: float
    near_expiry: date | None
    far_expiry: date | None
    near_dte: int | None
    far_dte: int | None
    near_atm_iv: float | None
    far_atm_iv: float | None
    atm_call_iv: float | None
    atm_put_iv: float | None
    skew: float | None
    near_straddle: float | None
    far_straddle: float | None
    realized_range: float | None
    payload: dict[str, Any] = field(default_factory=dict)
    expiries: tuple[ExpiryIV, ...] = ()


def _opt(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pct(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(100.0 * x, 4)


def _prices(side) -> np.ndarray:
    ltp = side.ltp
    return np.where(np.isfinite(ltp) & (ltp > 0), ltp, side.mid)


def _forward(chain: OptionChain, spot: float, t: float, r: float,
             ce: np.ndarray, pe: np.ndarray) -> float:
    ok = np.flatnonzero(np.isfinite(ce) & np.isfinite(pe) & (ce > 0) & (pe > 0))
    if ok.size == 0:
        return spot * math.exp(r * t)
    near = ok[np.argsort(np.abs(chain.strikes[ok] - spot), kind="stable")[:3]]
    fwd = chain.strikes[near] + (ce[near] - pe[near]) * math.exp(r * t)
    return float(np.median(fwd))


def analyze_expiry(snap: MarketSnapshot, chain: OptionChain, r: float) -> ExpiryIV:
    """Forward, per-leg IVs (source or estimated) and prices for one chain."""
    return analyze_expiries(snap, (chain,), r)[0]


def live_chains(snap: MarketSnapshot) -> tuple[OptionChain, ...]:
    """The chains of ``snap`` with time left and at least one strike (surface and view)."""
    return tuple(c for c in snap.chains if year_fraction(snap.time, c.expiry) > 0 and c.strikes.size)


def analyze_expiries(snap: MarketSnapshot, chains: Sequence[OptionChain], r: float
                     ) -> tuple[ExpiryIV, ...]:
    """:func:`analyze_expiry` of every chain in ``chains``, with one IV solve for all of them.

    The solver is elementwise, so each expiry's IVs are the same as a solve of its own chain.
    """
    if not chains:
        return ()
    today = to_ist(snap.time).date()
    parts = []
    for chain in chains:
        t = year_fraction(snap.time, chain.expiry)
        ce, pe = _prices(chain.ce), _prices(chain.pe)
        parts.append((chain, t, ce, pe, _forward(chain, snap.spot, t, r, ce, pe)))
    sizes = [c.strikes.size for c, *_ in parts]
    total = 2 * sum(sizes)
    price, fwd, strike, years = (np.empty(total) for _ in range(4))
    call = np.zeros(total, bool)
    i = 0
    for (chain, t, ce, pe, f), n in zip(parts, sizes, strict=True):
        j = i + 2 * n
        price[i:i + n], price[i + n:j] = ce, pe
        strike[i:i + n], strike[i + n:j] = chain.strikes, chain.strikes
        fwd[i:j], years[i:j] = f, t
        call[i:i + n] = True
        i = j
    est = implied_vol_black76(price, fwd, strike, years, call, r).iv
    out = []
    i = 0
    for (chain, t, ce, pe, f), n in zip(parts, sizes, strict=True):
        src_ce = np.isfinite(chain.ce.iv) & (chain.ce.iv > 0)
        src_pe = np.isfinite(chain.pe.iv) & (chain.pe.iv > 0)
        out.append(ExpiryIV(
            expiry=chain.expiry, dte=(chain.expiry - today).days, t=t,
            forward=f, atm_strike=snap.atm_strike(chain.expiry), strikes=chain.strikes,
            ce_price=ce, pe_price=pe,
            ce_iv=np.where(src_ce, chain.ce.iv, est[i:i + n]),
            pe_iv=np.where(src_pe, chain.pe.iv, est[i + n:i + 2 * n]),
            ce_source=src_ce, pe_source=src_pe,
        ))
        i += 2 * n
    return tuple(out)


def _iv_at_delta(e: ExpiryIV, target: float, r: float) -> float | None:
    """IV at forward delta ``target`` (+0.25 call side, -0.25 put side), linear in delta."""
    call = target > 0
    side = e.strikes > e.forward if call else e.strikes < e.forward
    iv = e.ce_iv if call else e.pe_iv
    m = side & np.isfinite(iv)
    if m.sum() < 2:
        return None
    g = black76_greeks(e.forward, e.strikes[m], e.t, iv[m], call, 0.0)
    d, v = g.delta, iv[m]
    order = np.argsort(d)
    d, v = d[order], v[order]
    if not d[0] <= target <= d[-1]:
        return None
    return float(np.interp(target, d, v))


def _smile_rows(e: ExpiryIV, half_width: int) -> list[dict[str, Any]]:
    i0 = int(np.searchsorted(e.strikes, e.atm_strike))
    rows = []
    for i in range(max(0, i0 - half_width), min(e.strikes.size, i0 + half_width + 1)):
        rows.append({
            "strike": float(e.strikes[i]),
            "ce_ltp": _opt(e.ce_price[i]), "pe_ltp": _opt(e.pe_price[i]),
            "ce_iv": _pct(_opt(e.ce_iv[i])), "pe_iv": _pct(_opt(e.pe_iv[i])),
            "ce_iv_source": "source" if e.ce_source[i] else "estimated",
            "pe_iv_source": "source" if e.pe_source[i] else "estimated",
        })
    return rows


def compute_surface(
    snap: MarketSnapshot, *, r: float = 0.065, spot_high: float | None = None,
    spot_low: float | None = None, spot_history: Sequence[float] | None = None,
    smile_half_width: int = 10, far_smile_half_width: int = 20,
    expiries: Sequence[ExpiryIV] | None = None,
) -> IvSurface:
    """Summarize ``snap`` into one iv_snapshots sample.

    Args:
        snap: the market snapshot.
        r: discount rate for parity forwards and Black-76.
        spot_high / spot_low: the session's spot range so far (both or neither).
        spot_history: alternatively, spot prices of the session.
        smile_half_width / far_smile_half_width: strikes each side of ATM in the payload.
        expiries: :func:`analyze_expiries` of :func:`live_chains` at ``r``, when the caller
            has it already (the scanner shares it with the market view); computed otherwise.
    """
    if (spot_high is None) != (spot_low is None):
        raise ValueError("give both spot_high and spot_low, or neither")
    exps = tuple(expiries) if expiries is not None else analyze_expiries(snap, live_chains(snap), r)
    near = exps[0] if exps else None
    far = exps[-1] if exps else None
    mid = exps[1] if len(exps) >= 3 else None
    skew = None
    if near is not None:
        p25, c25 = _iv_at_delta(near, -0.25, r), _iv_at_delta(near, 0.25, r)
        skew = None if p25 is None or c25 is None else p25 - c25
    if spot_high is not None:
        rng: float | None = float(spot_high) - float(spot_low)  # type: ignore[arg-type]
    elif spot_history:
        rng = float(max(spot_history) - min(spot_history))
    else:
        rng = None

    def term(e: ExpiryIV | None) -> dict[str, Any] | None:
        if e is None:
            return None
        return {"expiry": e.expiry.isoformat(), "dte": e.dte, "atm_iv": _pct(e.atm_iv),
                "forward": round(e.forward, 2), "atm_strike": e.atm_strike}

    payload: dict[str, Any] = {
        "iv_unit": "percent",
        "term_structure": {"near": term(near), "mid": term(mid), "far": term(far)},
        "smile": {"expiry": near.expiry.isoformat(), "rows": _smile_rows(near, smile_half_width)}
        if near else None,
        "far_smile": {"expiry": far.expiry.isoformat(), "forward": round(far.forward, 2),
                      "rows": _smile_rows(far, far_smile_half_width)} if far else None,
        "skew_definition": "iv(put, delta -0.25) - iv(call, delta +0.25), near expiry",
    }
    return IvSurface(
        created_at=snap.time, trade_date=to_ist(snap.time).date(), spot=snap.spot,
        near_expiry=near.expiry if near else None, far_expiry=far.expiry if far else None,
        near_dte=near.dte if near else None, far_dte=far.dte if far else None,
        near_atm_iv=near.atm_iv if near else None, far_atm_iv=far.atm_iv if far else None,
        atm_call_iv=near.atm_call_iv if near else None,
        atm_put_iv=near.atm_put_iv if near else None, skew=skew,
        near_straddle=near.straddle if near else None,
        far_straddle=far.straddle if far else None, realized_range=rng,
        payload=payload, expiries=exps,
    )
