"""The option chain recorded with each IV sample (``iv_snapshots.payload["chain"]``; pure).

The dashboard's Chain page reads it; the scanner adds it to the surface it records
(:func:`with_chain`). For every expiry of the snapshot with time left (the surface's
expiries) it keeps:

* ``strikes``: the ``half_width`` listed strikes each side of the ATM strike (listed strike
  nearest spot), ascending, and per side (``ce`` / ``pe``) column arrays aligned with them:
  ``ltp``, ``bid``, ``ask`` (rupees per unit, None when not quoted), ``iv`` (annualized
  **percent**, the surface's: the feed's IV, else inverted from the price), ``delta``
  (Black-76 on the expiry's parity forward at the strike's own IV, as the strategies'
  ``OptionView.delta``), ``oi`` (units) and ``volume`` (contracts, the session's so far);
* ``expiry``, ``dte`` (calendar days), ``t`` (years), ``forward``, ``atm_strike``,
  ``atm_iv`` (percent, mean of CE and PE at ATM);
* ``stats`` over **every** listed strike of the expiry (not just the window):
  ``pcr_oi``, ``pcr_volume``, ``max_pain``, ``ce_oi``, ``pe_oi`` (totals), ``strikes``
  (count) — :mod:`engine.market.chain_stats`.

Size: columns, not row objects, so 31 strikes x 5 expiries is about 10 kB of JSON a sample.
Works the same on the simulated market (150 strikes, every expiry in reach) and on Dhan
(the chains of the first ``n_chains`` expiries, every strike Dhan lists).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from engine.market.chain_stats import max_pain, put_call_ratio
from engine.market.pricing import black76_greeks
from engine.market.snapshot import MarketSnapshot
from engine.market.surface import ExpiryIV, IvSurface

__all__ = ["CHAIN_HALF_WIDTH", "chain_payload", "with_chain"]

CHAIN_HALF_WIDTH = 15  # strikes each side of ATM kept per expiry


def _num(x: Any, places: int) -> float | None:
    x = float(x)
    return round(x, places) if math.isfinite(x) else None


def _col(arr: np.ndarray, sl: slice, places: int, scale: float = 1.0) -> list[float | None]:
    return [_num(v * scale, places) for v in arr[sl].tolist()]


def _delta(e: ExpiryIV, iv: np.ndarray, call: bool) -> np.ndarray:
    out = np.full(e.strikes.shape, np.nan)
    ok = np.isfinite(iv) & (iv > 0)
    if ok.any() and e.t > 0:
        out[ok] = black76_greeks(e.forward, e.strikes[ok], e.t, iv[ok], call, 0.0).delta
    return out


def _expiry(snap: MarketSnapshot, e: ExpiryIV, half_width: int) -> dict[str, Any]:
    chain = snap.chain(e.expiry)
    i0 = int(np.searchsorted(chain.strikes, e.atm_strike))
    sl = slice(max(0, i0 - half_width), min(chain.strikes.size, i0 + half_width + 1))

    def side(quotes, iv: np.ndarray, call: bool) -> dict[str, list]:
        return {"ltp": _col(quotes.ltp, sl, 2), "bid": _col(quotes.bid, sl, 2),
                "ask": _col(quotes.ask, sl, 2), "iv": _col(iv, sl, 2, 100.0),
                "delta": _col(_delta(e, iv, call), sl, 4),
                "oi": [int(v) for v in quotes.oi[sl].tolist()],
                "volume": [int(v) for v in quotes.volume[sl].tolist()]}

    ks = chain.strikes.tolist()
    ce_oi, pe_oi = chain.ce.oi.tolist(), chain.pe.oi.tolist()
    pcr_oi = put_call_ratio(ce_oi, pe_oi)
    pcr_vol = put_call_ratio(chain.ce.volume.tolist(), chain.pe.volume.tolist())
    atm_iv = e.atm_iv
    return {
        "expiry": e.expiry.isoformat(), "dte": e.dte, "t": round(e.t, 8),
        "forward": _num(e.forward, 2), "atm_strike": float(e.atm_strike),
        "atm_iv": None if atm_iv is None else _num(100.0 * atm_iv, 2),
        "strikes": [float(k) for k in ks[sl]],
        "ce": side(chain.ce, e.ce_iv, True), "pe": side(chain.pe, e.pe_iv, False),
        "stats": {"pcr_oi": None if pcr_oi is None else round(pcr_oi, 4),
                  "pcr_volume": None if pcr_vol is None else round(pcr_vol, 4),
                  "max_pain": max_pain(ks, ce_oi, pe_oi),
                  "ce_oi": int(sum(ce_oi)), "pe_oi": int(sum(pe_oi)), "strikes": len(ks)},
    }


def chain_payload(snap: MarketSnapshot, surface: IvSurface,
                  half_width: int = CHAIN_HALF_WIDTH) -> dict[str, Any]:
    """The ``payload["chain"]`` of ``surface``'s iv_snapshots row (see module docstring)."""
    if half_width < 1:
        raise ValueError(f"chain half_width must be >= 1, got {half_width}")
    return {"half_width": half_width, "spot": _num(snap.spot, 2), "lot_size": snap.lot_size,
            "strike_step": float(snap.strike_step), "iv_unit": "percent",
            "expiries": [_expiry(snap, e, half_width) for e in surface.expiries]}


def with_chain(surface: IvSurface, snap: MarketSnapshot,
               half_width: int = CHAIN_HALF_WIDTH) -> IvSurface:
    """``surface`` with ``payload["chain"]`` added (the scanner records this one)."""
    return replace(surface, payload={**surface.payload,
                                     "chain": chain_payload(snap, surface, half_width)})
