"""Intraday realized volatility of one session from sampled spot prices (pure).

``session_realized_vol``: the sum of squared log returns between consecutive samples of one
session, annualized over the trading minutes the samples span:
``sqrt(sum r_i^2 * (252 * 375) / span_minutes)``. It measures the session's own moves (no
overnight gap: that is the close-to-close estimator's job,
:func:`engine.strategies.iron_condor.close_to_close_vol`), so it answers "how much is the
index moving today" against the near ATM IV the options price.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise

__all__ = ["TRADING_MINUTES_PER_YEAR", "session_realized_vol"]

TRADING_MINUTES_PER_YEAR = 252 * 375
MIN_SAMPLES = 3


def session_realized_vol(times: Sequence[datetime], spots: Sequence[float]) -> float | None:
    """Annualized intraday realized vol (fraction) of one session's samples, oldest first.

    Returns None with fewer than ``MIN_SAMPLES`` samples or a span under a minute.

    Raises:
        ValueError: lengths differ, times go backwards, or a spot is not a positive number.
    """
    if len(times) != len(spots):
        raise ValueError(f"session_realized_vol: {len(times)} times but {len(spots)} spots")
    if len(spots) < MIN_SAMPLES:
        return None
    px = []
    for i, s in enumerate(spots):
        x = float(s)
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"spot #{i} {s!r} is not a positive finite number")
        px.append(x)
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise ValueError(f"sample #{i} at {times[i]} is before sample #{i - 1} at {times[i - 1]}")
    span = (times[-1] - times[0]).total_seconds() / 60.0
    if span < 1.0:
        return None
    rv = sum(math.log(b / a) ** 2 for a, b in pairwise(px))
    return math.sqrt(rv * TRADING_MINUTES_PER_YEAR / span)
