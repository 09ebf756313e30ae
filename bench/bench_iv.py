"""Benchmark: vectorized IV (and IV + greeks) vs scipy brentq per option and the peers.

Run: ``.venv/bin/python bench/bench_iv.py``. Prints options/s and the ratio against
``scipy.optimize.brentq`` on one option at a time (measured on a sample in the same run and
extrapolated per option), then against the peer libraries that are installed (the optional
``bench`` extra: ``pip install -e '.[bench]'``): QuantLib's ``blackFormulaImpliedStdDev``
and Jäckel's Let's Be Rational (``lets_be_rational``) one option at a time, and
``py_vollib_vectorized`` on the whole array; a peer that is missing or fails to run is
named with the reason. Cases: one real NIFTY chain (the nearest expiry of the 3 Feb 2025
bhavcopy under ``NSE_DATA``, default /work/shared/data; a simulated 280-option chain
without it), one option, a 600-option synthetic chain and 100 000 random options. Single
process, single thread (numpy ufuncs here do not thread).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
import warnings
import zipfile
from datetime import date, datetime
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from summary import record  # bench/summary.py

from engine.market.iv import implied_vol_black76, iv_and_greeks
from engine.market.pricing import black76_greeks, black76_price, year_fraction
from engine.timeutil import IST

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


def real_chain(rng: np.random.Generator):
    """The nearest expiry's NIFTY chain of the 3 Feb 2025 bhavcopy (close prices, the
    future's underlying price as F); a simulated 280-option chain when the file is absent.
    Returns (args, true vols or None, label)."""
    path = Path(os.environ.get("NSE_DATA", "/work/shared/data")) / \
        "BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip"
    if not path.exists():
        args, vol = make_chain(1, 140, rng)
        return args, vol, "simulated chain (280 options)"
    rows = []
    with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            if row["TckrSymb"] == "NIFTY" and row["FinInstrmTp"] == "IDO":
                rows.append(row)
    expiry = min(date.fromisoformat(r["XpryDt"]) for r in rows)
    rows = [r for r in rows if date.fromisoformat(r["XpryDt"]) == expiry and float(r["ClsPric"]) > 0]
    at = datetime(2025, 2, 3, 15, 30, tzinfo=IST)
    price = np.array([float(r["ClsPric"]) for r in rows])
    k = np.array([float(r["StrkPric"]) for r in rows])
    f = np.array([float(r["UndrlygPric"]) for r in rows])
    call = np.array([r["OptnTp"] == "CE" for r in rows])
    t = np.full(k.size, year_fraction(at, expiry))
    return (price, f, k, t, call), None, f"real chain {expiry} ({k.size} options)"


def _peer_loop(solve_one, args, sample: int) -> float:
    """options/s of ``solve_one(price, f, k, t, call)`` one option at a time (a sample)."""
    price, f, k, t, call = args
    idx = range(min(sample, price.size))
    items = [(float(price[i]), float(f[i]), float(k[i]), float(t[i]), bool(call[i])) for i in idx]
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for it in items:
            try:
                solve_one(*it)
            except Exception:  # noqa: S112 - a peer's refusal of one option is its answer
                continue
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def peers(args, n_repeat: int) -> dict[str, float | str]:
    """options/s of each installed peer on ``args`` (or why it could not be measured)."""
    out: dict[str, float | str] = {}
    warnings.filterwarnings("ignore", module="py_vollib_vectorized")
    try:
        import QuantLib as ql

        def ql_one(p, f, k, t, c):
            df = math.exp(-R * t)
            return ql.blackFormulaImpliedStdDev(ql.Option.Call if c else ql.Option.Put,
                                                k, f, p, df) / math.sqrt(t)
        out["QuantLib (per option)"] = _peer_loop(ql_one, args, 3000)
    except ImportError as exc:
        out["QuantLib (per option)"] = f"not installed ({exc.name})"
    try:
        import lets_be_rational as lbr

        # 1.1.x wraps py_lets_be_rational (pure Python; numba only when it builds)
        kind = "pure Python" if "py_lets_be_rational" in sys.modules else "C"

        def lbr_one(p, f, k, t, c):
            return lbr.implied_volatility_from_a_transformed_rational_guess(
                p * math.exp(R * t), f, k, t, 1 if c else -1)
        out[f"lets_be_rational ({kind}, per option)"] = _peer_loop(lbr_one, args, 300)
    except ImportError as exc:
        out["lets_be_rational (per option)"] = f"not installed ({exc.name})"
    try:
        import py_vollib_vectorized as pvv
        price, f, k, t, call = args
        flag = np.where(call, "c", "p")

        def pvv_all():
            return pvv.vectorized_implied_volatility_black(price, f, k, R, t, flag,
                                                           return_as="numpy")
        pvv_all()  # compile
        out["py_vollib_vectorized"] = best_rate(pvv_all, price.size, n_repeat)
    except ImportError as exc:
        out["py_vollib_vectorized"] = f"not installed ({exc.name})"
    except Exception as exc:  # e.g. its numba build fails against this lets_be_rational
        out["py_vollib_vectorized"] = f"fails here ({type(exc).__name__})"
    return out


def within(args, vol, tol: float = 1e-6) -> str:
    """Share of identifiable options solved within ``tol`` of the true vol (or, without
    one, repriced within ``tol`` relative)."""
    f, k, t, call = args[1:]
    res = implied_vol_black76(*args, R)
    if vol is None:
        ok = res.ok
        back = black76_price(f[ok], k[ok], t[ok], res.iv[ok], call[ok], R)
        good = np.abs(back - args[0][ok]) <= tol * args[0][ok]
        return f"{100 * res.ok.mean():.1f}% solved, {100 * good.mean():.2f}% reprice within {tol:g}"
    g = black76_greeks(f, k, t, vol, call, R)
    ident = (g.vega * 1e-6 > 1e-9 * g.price + 1e-12) & (g.price > 0)
    err = np.abs(res.iv[ident] - vol[ident])
    return (f"{100 * res.ok.mean():.1f}% solved, {100 * (err <= tol).mean():.2f}% of identifiable"
            f" within {tol:g}, max |iv - vol| {err.max():.1e}")


def main() -> None:
    rng = np.random.default_rng(42)
    chain_args, chain_vol, chain_label = real_chain(rng)
    atm = int(np.argmin(np.abs(chain_args[2] - chain_args[1])))  # a solvable option
    one = tuple(np.asarray(a[atm:atm + 1]) for a in chain_args)
    cases = {
        chain_label: ((chain_args, chain_vol), 400),
        "one option": ((one, None), 2000),
        "chain 2 exp x 150 strikes (600)": (make_chain(2, 150, rng), 200),
        "random 100 000 options": (make_random(100_000, rng), 10),
    }
    print(f"{'case':34s} {'method':30s} {'options/s':>14s} {'vs brentq':>10s}")
    for name, ((args, vol), repeat) in cases.items():
        n = args[0].size
        base = max(brentq_rate(*args, sample=2000)[0] for _ in range(3))  # best of 3, like ours
        iv_rate = best_rate(lambda a=args: implied_vol_black76(*a, R), n, repeat)
        g_rate = best_rate(lambda a=args: iv_and_greeks(*a, R), n, repeat)
        print(f"{name:34s} {'brentq per option':30s} {base:14,.0f} {1.0:10.1f}")
        print(f"{name:34s} {'vectorized IV':30s} {iv_rate:14,.0f} {iv_rate / base:10.1f}")
        print(f"{name:34s} {'IV + greeks':30s} {g_rate:14,.0f} {g_rate / base:10.1f}")
        if name != "one option":
            print(f"{'':34s} ({within(args, vol)})")
        if name == "chain 2 exp x 150 strikes (600)":
            continue
        rates = peers(args, repeat)
        for peer, rate in rates.items():
            if isinstance(rate, str):
                print(f"{name:34s} {peer:30s} {rate:>25s}")
            else:
                print(f"{name:34s} {peer:30s} {rate:14,.0f} {rate / base:10.1f}")
        measured = {p: r for p, r in rates.items() if not isinstance(r, str)}
        if not measured:
            record("iv", f"{name}: ours / fastest peer", None, "")
            continue
        fastest = max(measured, key=lambda p: measured[p])
        peer_rate = measured[fastest]
        # one option: no goal (a compiled peer's ~1 us per option is below one Python call)
        goal = "" if name == "one option" else ">= 1.0"
        print(f"{'':34s} => ours {iv_rate:,.0f} options/s ({1e6 * n / iv_rate:,.1f} us per call),"
              f" IV + greeks {g_rate:,.0f}/s; fastest peer {fastest} {peer_rate:,.0f}/s;"
              f" ours / fastest: IV x{iv_rate / peer_rate:.2f}, IV + greeks x{g_rate / peer_rate:.2f}")
        short = fastest.split(" ")[0]
        record("iv", f"{name}: ours / fastest peer ({short})", iv_rate / peer_rate, goal)
        record("iv", f"{name}: IV + greeks / fastest peer ({short})", g_rate / peer_rate, goal)

if __name__ == "__main__":
    main()
