"""Benchmark: vectorized IV (and IV + greeks) vs scipy brentq per option.

Run: ``.venv/bin/python bench/bench_iv.py``. Prints options/s and the ratio against
``scipy.optimize.brentq`` on one option at a time (measured on a sample in the same run and
extrapolated per option). Single process, single thread (numpy ufuncs here do not thread).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.market.iv import implied_vol_black76, iv_and_greeks
from engine.market.pricing import black76_greeks, black76_price

R = 0.065


def make_chain(n_expiries: int, n_strikes: int, rng: np.random.Generator):
    f = 23000.0
    k = np.tile(f + 50.0 * (np.arange(n_strikes) - n_strikes // 2), 2 * n_expiries)
    t = np.repeat(np.array([2, 9, 23, 51][:n_expiries]) / 365.0, 2 * n_strikes)
    call = np.tile(np.r_[np.ones(n_strikes, bool), np.zeros(n_strikes, bool)], n_expiries)
    zs = 3.0 * np.tanh(np.log(k / f) / (0.13 * np.sqrt(t)) / 3.0)
    vol = 0.13 * (1 - 0.12 * zs + 0.03 * zs * zs) + rng.uniform(0, 0.01, k.size)
    price = black76_price(f, k, t, vol, call, R)
    return (price, np.full(k.size, f), k, t, call), vol


def make_random(n: int, rng: np.random.Generator):
    f = 23000.0
    k = f * np.exp(rng.uniform(-0.12, 0.12, n))
    t = rng.uniform(0.5, 60.0, n) / 365.0
    call = rng.random(n) < 0.5
    vol = rng.uniform(0.08, 0.45, n)
    return (black76_price(f, k, t, vol, call, R), np.full(n, f), k, t, call), vol


def _black76_scalar(f: float, k: float, t: float, s: float, call: bool) -> float:
    """Plain-math scalar Black-76 (the fastest fair per-option objective for brentq)."""
    sd = s * math.sqrt(t)
    d1 = math.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    n1, n2 = 0.5 * math.erfc(-d1 / math.sqrt(2)), 0.5 * math.erfc(-d2 / math.sqrt(2))
    c = f * n1 - k * n2
    return math.exp(-R * t) * (c if call else c - (f - k))


def brentq_rate(price, f, k, t, call, sample: int) -> tuple[float, float]:
    """(options/s, solved fraction) of brentq on a scalar math Black-76, one option at a time."""
    idx = np.arange(min(sample, price.size))
    solved = 0
    start = time.perf_counter()
    for i in idx:
        p, ff, kk, tt, cc = float(price[i]), float(f[i]), float(k[i]), float(t[i]), bool(call[i])
        try:
            brentq(lambda s, p=p, ff=ff, kk=kk, tt=tt, cc=cc: _black76_scalar(ff, kk, tt, s, cc)
                   - p, 1e-4, 5.0, xtol=1e-10)
            solved += 1
        except ValueError:
            pass
    return idx.size / (time.perf_counter() - start), solved / idx.size


def best_rate(fn, n: int, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def max_vol_error(args, vol) -> float:
    """Max |IV - true vol| over the options whose vol is identifiable from the price."""
    f, k, t, call = args[1:]
    g = black76_greeks(f, k, t, vol, call, R)
    ident = (g.vega * 1e-6 > 1e-9 * g.price + 1e-12) & (g.price > 0)
    res = implied_vol_black76(*args, R)
    return float(np.max(np.abs(res.iv[ident] - vol[ident])))


def main() -> None:
    rng = np.random.default_rng(42)
    cases = {
        "chain 2 exp x 150 strikes (600)": (make_chain(2, 150, rng), 200),
        "random 100 000 options": (make_random(100_000, rng), 10),
    }
    print(f"{'case':34s} {'method':18s} {'options/s':>14s} {'vs brentq':>10s}")
    for name, ((args, vol), repeat) in cases.items():
        n = args[0].size
        base = max(brentq_rate(*args, sample=2000)[0] for _ in range(3))  # best of 3, like ours
        iv_rate = best_rate(lambda a=args: implied_vol_black76(*a, R), n, repeat)
        g_rate = best_rate(lambda a=args: iv_and_greeks(*a, R), n, repeat)
        res = implied_vol_black76(*args, R)
        solved = (f"{100 * res.ok.mean():.1f}% solved, {res.iterations} iterations max, "
                  f"max |iv - vol| {max_vol_error(args, vol):.1e}")
        print(f"{name:34s} {'brentq per option':18s} {base:14,.0f} {1.0:10.1f}")
        print(f"{name:34s} {'vectorized IV':18s} {iv_rate:14,.0f} {iv_rate / base:10.1f}")
        print(f"{name:34s} {'IV + greeks':18s} {g_rate:14,.0f} {g_rate / base:10.1f}")
        print(f"{'':34s} ({solved})")


if __name__ == "__main__":
    main()
