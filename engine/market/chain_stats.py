"""Option-chain statistics a trader reads off a chain (pure): PCR, max pain, OI change.

Definitions:

* **PCR (OI)** = total PE open interest / total CE open interest over the strikes given
  (the engine passes every listed strike of one expiry); **PCR (volume)** the same on the
  day's volume. None when the CE total is 0 (no ratio).
* **Max pain** = the listed strike ``K*`` at which the option holders' total intrinsic value
  at expiry is smallest, i.e. the strike minimising
  ``sum_k CE_OI[k] * max(0, K* - k) + PE_OI[k] * max(0, k - K*)`` (units of OI x index
  points). A tie goes to the lower strike. None when there is no OI at all.
* **OI change** = OI now − OI of the same contract at the reference sample (the engine uses
  the previous session's last recorded chain); None where either side is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["max_pain", "oi_change", "pain_at", "put_call_ratio"]


def _ints(values: Sequence[object], name: str) -> np.ndarray:
    x = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(x) | (x < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {values[i]!r} is not a non-negative number")
    return x


def put_call_ratio(ce: Sequence[object], pe: Sequence[object]) -> float | None:
    """Sum of ``pe`` over sum of ``ce`` (OI or volume); None when the CE sum is 0."""
    c, p = float(_ints(ce, "ce").sum()), float(_ints(pe, "pe").sum())
    return None if c <= 0 else p / c


def pain_at(settle: float, strikes: Sequence[float], ce_oi: Sequence[object],
            pe_oi: Sequence[object]) -> float:
    """Total intrinsic value the holders get if the expiry settles at ``settle``."""
    ce, pe = _ints(ce_oi, "ce_oi"), _ints(pe_oi, "pe_oi")
    k = np.asarray(strikes, dtype=np.float64)
    return float(ce @ np.maximum(0.0, settle - k) + pe @ np.maximum(0.0, k - settle))


def max_pain(strikes: Sequence[float], ce_oi: Sequence[object],
             pe_oi: Sequence[object]) -> float | None:
    """The listed strike with the least holders' payout at expiry (see module docstring).

    Raises:
        ValueError: the three sequences differ in length, or an OI is negative / not finite.
    """
    if not (len(strikes) == len(ce_oi) == len(pe_oi)):
        raise ValueError(f"max_pain: {len(strikes)} strikes but {len(ce_oi)} CE and "
                         f"{len(pe_oi)} PE OI values")
    ce, pe = _ints(ce_oi, "ce_oi"), _ints(pe_oi, "pe_oi")
    if not len(strikes) or ce.sum() + pe.sum() <= 0:
        return None
    k = np.asarray(strikes, dtype=np.float64)
    order = np.argsort(k, kind="stable")
    k, ce, pe = k[order], ce[order], pe[order]
    settle = k[:, None]  # each listed strike as the settlement, against every strike
    pain = np.maximum(0.0, settle - k[None, :]) @ ce + np.maximum(0.0, k[None, :] - settle) @ pe
    return float(k[int(np.argmin(pain))])  # argmin: the first (lowest) strike on a tie


def oi_change(now: Sequence[object], before: Sequence[object | None]) -> list[int | None]:
    """Element-wise ``now - before`` (None where ``before`` or ``now`` is unknown)."""
    if len(now) != len(before):
        raise ValueError(f"oi_change: {len(now)} current but {len(before)} previous values")
    return [None if a is None or b is None else int(a) - int(b)  # type: ignore[call-overload]
            for a, b in zip(now, before, strict=True)]
