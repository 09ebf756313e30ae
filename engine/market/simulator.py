"""Seeded, deterministic NIFTY market simulator (spot, futures, option chains).

What is simulated:
    * Spot: per-second log-returns inside 09:15-15:30 IST sessions of the NSE calendar;
      variance follows a GARCH(1,1) recursion on a 1-minute grid (volatility clustering) whose
      unconditional level plus the jump variance equals ``config.annual_vol`` (annualized
      over 252 x 375 trading minutes); Poisson jumps; an overnight gap between sessions.
    * Futures (current and next month): ``spot e^{(r-q)T} + u``, with ``u`` a per-contract
      Ornstein-Uhlenbeck noise in points, so the far-near calendar spread mean-reverts.
    * Options for the near weekly, next weekly and monthly (>= 3 expiries), 150 strikes
      step 50 around the session's opening ATM: Black-76 mid on a forward whose basis noise
      is interpolated between the futures, IV from a smile in ``z = ln(K/F)/(atm sqrt T)``
      (skew + curvature, tanh-saturated wings) over an ATM term structure that follows the
      current GARCH vol; bid/ask around the mid widening away from ATM and near expiry,
      rounded to the 0.05 tick; LTP inside the spread; OI and cumulative volume profiles.

Determinism: the market is one path from a fixed epoch (``EPOCH``, 2024-01-01: ``spot0``,
the unconditional variance, zero basis), the same for every start and resume point. Each
simulated day -- every weekday and every special session, including exchange holidays, on
which the market moves unobserved, so editing the holiday list changes no other day -- draws
its shocks from ``numpy.random.Generator(PCG64)`` seeded by ``[seed, date.toordinal()]`` and
starts from the close, GARCH variance and basis its previous day handed over (after the
overnight gap). Walking the chain from the epoch needs only the minute-level path (cached
per seed); the per-second detail of an observed session comes from its own stream, bridged
so that every minute ends exactly where the minute-level path says. Quote noise at an
instant uses ``[seed, ordinal, second]``. So ``snapshot_at(t)`` is a pure function of
``(seed, config, t)``: identical whatever was asked before and wherever the engine started,
and two markets with the same seed are identical to the last digit.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from numpy.random import PCG64, Generator
from scipy.signal import lfilter

from engine.market.calendar import NseCalendar
from engine.market.pricing import black76_price, year_fraction
from engine.market.snapshot import ChainSide, FutureQuote, MarketSnapshot, OptionChain
from engine.timeutil import IST, MARKET_OPEN, to_ist

__all__ = ["EPOCH", "SimConfig", "SimulatedMarket"]

SESSION_SECONDS = 22_500  # 09:15-15:30
MINUTES = SESSION_SECONDS // 60
TICK = 0.05
EPOCH = date(2024, 1, 1)  # day 0 of every simulated market (a Monday, an NSE session)
_DETAIL_STREAM = 1_000_003  # RNG key of a session's per-second detail (> any second index)
_KEEP_SESSIONS = 4  # full per-second sessions kept per market (about 0.4 MB each)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Simulator parameters (vols are annualized decimal fractions)."""

    spot0: float = 23_000.0
    annual_vol: float = 0.14
    garch_alpha: float = 0.06
    garch_beta: float = 0.92
    jumps_per_day: float = 0.3
    jump_std: float = 0.002
    overnight_std: float = 0.004
    r: float = 0.065
    q: float = 0.012
    basis_kappa_per_min: float = 0.02
    basis_std_points: float = 8.0
    iv_premium: float = 1.08
    skew: float = 0.12
    curvature: float = 0.03
    term_decay_years: float = 0.04
    strike_step: float = 50.0
    n_strikes: int = 150
    n_expiries: int = 3
    base_oi: int = 4_000_000

    def __post_init__(self) -> None:
        if not 0.01 <= self.annual_vol <= 2.0:
            raise ValueError(f"annual_vol {self.annual_vol} outside [0.01, 2]")
        if self.garch_alpha + self.garch_beta >= 1.0:
            raise ValueError("garch_alpha + garch_beta must be < 1 (stationary variance)")
        if self.n_strikes < 2 or self.n_expiries < 1 or self.spot0 <= 0:
            raise ValueError("n_strikes >= 2, n_expiries >= 1 and spot0 > 0 are required")


@dataclass(frozen=True, slots=True)
class _Carry:
    """What a simulated day hands to the next one at its close."""

    close: float
    var: float  # GARCH variance (annualized)
    basis: tuple[float, float]  # OU noise of the near/far futures, points


@dataclass(frozen=True, slots=True, eq=False)
class _Day:
    """The minute-level path of one simulated day and the draws its detail is bridged to."""

    day: date
    open_px: float
    spot_min: np.ndarray  # MINUTES + 1 spot values on the minute grid (open .. close)
    var: np.ndarray  # MINUTES + 1 GARCH variances
    basis: np.ndarray  # (2, MINUTES + 1)
    z: np.ndarray  # GARCH shock of each minute
    s: np.ndarray  # standardized sum of each minute's idiosyncratic per-second noise
    jump_at: np.ndarray  # second index of each jump
    jump_size: np.ndarray  # log-return of each jump

    def carry(self) -> _Carry:
        return _Carry(float(self.spot_min[-1]), float(self.var[-1]),
                      (float(self.basis[0, -1]), float(self.basis[1, -1])))


@dataclass(frozen=True, slots=True, eq=False)
class _Session:
    day: date
    spot: np.ndarray  # SESSION_SECONDS + 1 values (open .. close)
    sigma_min: np.ndarray  # per-minute annualized GARCH vol
    basis: np.ndarray  # (2, MINUTES + 1) OU noise of near/far futures, points
    var_end: float
    atm0: float


def _simulate_day(seed: int, cfg: SimConfig, day: date, carry: _Carry | None) -> _Day:
    """Day ``day``'s minute-level path from the state ``carry`` its previous day left
    (``None``: the epoch, which opens at ``spot0`` with no gap)."""
    rng = Generator(PCG64([seed, day.toordinal()]))
    gap = rng.normal(0.0, cfg.overnight_std)
    z = rng.standard_normal(MINUTES)
    s = rng.standard_normal(MINUTES)
    n_jumps = rng.poisson(cfg.jumps_per_day)
    jump_at = rng.integers(0, SESSION_SECONDS, n_jumps)
    jump_size = rng.normal(0.0, cfg.jump_std, n_jumps)
    innov = rng.standard_normal((2, MINUTES))

    per_min = 1.0 / (252 * MINUTES)
    jump_var = cfg.jumps_per_day * cfg.jump_std**2 * 252  # annualized
    uncond = max(cfg.annual_vol**2 - jump_var, 1e-6)
    omega = uncond * (1 - cfg.garch_alpha - cfg.garch_beta)
    v = uncond if carry is None else carry.var
    var = [v]
    for a in (cfg.garch_alpha * z * z + cfg.garch_beta).tolist():  # GARCH(1,1) per minute
        v = omega + a * v
        var.append(v)
    var_arr = np.array(var)
    sig_min = np.sqrt(var_arr[:-1] * per_min)
    # a minute's log-return: its GARCH shock and the sum of its per-second noise (see _expand)
    minute = sig_min * (0.5 * z + math.sqrt(0.75) * s) - 0.5 * sig_min**2
    np.add.at(minute, jump_at // 60, jump_size)
    open_px = cfg.spot0 if carry is None else carry.close * math.exp(gap)
    spot_min = open_px * np.exp(np.concatenate([[0.0], np.cumsum(minute)]))

    start_basis = np.zeros(2) if carry is None else np.array(carry.basis)
    phi = math.exp(-cfg.basis_kappa_per_min)
    innov *= cfg.basis_std_points * math.sqrt(1 - phi**2)
    basis = np.empty((2, MINUTES + 1))
    for j in range(2):
        filtered, _ = lfilter([1.0], [1.0, -phi], innov[j], zi=[phi * start_basis[j]])
        basis[j] = np.concatenate([[start_basis[j]], filtered])
    return _Day(day, open_px, spot_min, var_arr, basis, z, s, jump_at, jump_size)


def _expand(seed: int, cfg: SimConfig, d: _Day) -> _Session:
    """The per-second session of ``d``: inside each minute a path from its own RNG stream
    whose noise sums to the minute's draw, pinned to the minute grid of ``d``."""
    rng = Generator(PCG64([seed, d.day.toordinal(), _DETAIL_STREAM]))
    e = rng.standard_normal((MINUTES, 60))
    # iid N(0, 1) per second whose sum over each minute is sqrt(60) * s (a Brownian bridge)
    eps = e - e.mean(axis=1, keepdims=True) + d.s[:, None] / math.sqrt(60.0)
    per_min = 1.0 / (252 * MINUTES)
    sig_sec = np.sqrt(d.var[:-1] * per_min / 60.0)[:, None]
    rets = sig_sec * (0.5 * d.z[:, None] / math.sqrt(60.0) + math.sqrt(0.75) * eps)
    rets -= 0.5 * sig_sec**2
    np.add.at(rets.reshape(-1), d.jump_at, d.jump_size)
    log_min = np.log(d.spot_min / d.open_px)
    inside = np.concatenate([np.zeros((MINUTES, 1)), np.cumsum(rets[:, :-1], axis=1)], axis=1)
    spot = np.empty(SESSION_SECONDS + 1)
    spot[:-1] = d.open_px * np.exp((log_min[:-1, None] + inside).reshape(-1))
    spot[::60] = d.spot_min  # every minute exactly on the minute-level path (and the close)
    step = cfg.strike_step
    return _Session(d.day, spot, np.sqrt(d.var), d.basis, float(d.var[-1]),
                    round(d.open_px / step) * step)


class _Chain:
    """The closing state of every simulated day from the epoch, for one (seed, config)."""

    def __init__(self, seed: int, cfg: SimConfig, specials: frozenset[date]) -> None:
        self.seed, self.cfg, self.specials = seed, cfg, specials
        self._carry: dict[date, _Carry] = {}
        self._lock = threading.Lock()

    def simulated(self, d: date) -> bool:
        """Days the market moves: weekdays (holidays too) and special weekend sessions."""
        return d.weekday() < 5 or d in self.specials

    def previous(self, d: date) -> date | None:
        if d <= EPOCH:
            return None
        d -= timedelta(days=1)
        while not self.simulated(d):
            d -= timedelta(days=1)
        return d if d >= EPOCH else None

    def day(self, d: date) -> _Day:
        """The minute-level path of simulated day ``d`` (>= EPOCH)."""
        return _simulate_day(self.seed, self.cfg, d, self.carry_before(d))

    def carry_before(self, d: date) -> _Carry | None:
        with self._lock:
            todo: list[date] = []
            prev = self.previous(d)
            while prev is not None and prev not in self._carry:
                todo.append(prev)
                prev = self.previous(prev)
            carry = self._carry[prev] if prev is not None else None
            for p in reversed(todo):
                carry = _simulate_day(self.seed, self.cfg, p, carry).carry()
                self._carry[p] = carry
            return carry


_CHAINS: dict[tuple[int, SimConfig, frozenset[date]], _Chain] = {}
_CHAINS_LOCK = threading.Lock()


def _chain(seed: int, cfg: SimConfig, specials: frozenset[date]) -> _Chain:
    key = (seed, cfg, specials)
    with _CHAINS_LOCK:
        chain = _CHAINS.get(key)
        if chain is None:
            chain = _CHAINS[key] = _Chain(seed, cfg, specials)
        return chain


class SimulatedMarket:
    """Clock-driven simulated NIFTY market.

    Args:
        seed: RNG seed (same seed -> identical snapshots, whatever the start).
        start: aware datetime on or after ``EPOCH``; the clock starts here. It does not
            shape the market: the path runs from ``EPOCH`` whatever the start.
        calendar: trading calendar (holidays, expiries, lot sizes).
        config: simulator parameters.
    """

    def __init__(self, seed: int, start: datetime, calendar: NseCalendar | None = None,
                 config: SimConfig | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start {start!r} must be timezone-aware")
        self.seed = int(seed)
        self.calendar = calendar or NseCalendar()
        self.config = config or SimConfig()
        self.now = to_ist(start)
        if self.now.date() < EPOCH:
            raise ValueError(f"start {self.now:%Y-%m-%d}: the simulated market begins on {EPOCH}")
        self._first_day = EPOCH if self.calendar.is_trading_day(EPOCH) else \
            self.calendar.next_trading_day(EPOCH)
        specials = frozenset(getattr(self.calendar, "special_sessions", ()))
        self._path = _chain(self.seed, self.config, specials)
        self._sessions: OrderedDict[date, _Session] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ paths
    def _session(self, day: date) -> _Session:
        with self._lock:
            hit = self._sessions.get(day)
            if hit is not None:
                self._sessions.move_to_end(day)
                return hit
        sess = _expand(self.seed, self.config, self._path.day(day))
        with self._lock:
            self._sessions[day] = sess
            while len(self._sessions) > _KEEP_SESSIONS:
                self._sessions.popitem(last=False)
        return sess

    def daily_closes(self, before: date, count: int) -> tuple[float, ...]:
        """Spot closes of the ``count`` sessions before ``before``, oldest first (fewer
        when the simulated market began later). Cheap: the minute path only."""
        out: list[float] = []
        d = self.calendar.previous_trading_day(before)
        while len(out) < count and d >= self._first_day:
            out.append(float(self._path.day(d).spot_min[-1]))
            d = self.calendar.previous_trading_day(d)
        return tuple(reversed(out))

    # ------------------------------------------------------------------ clock
    def _locate(self, t: datetime) -> tuple[date, int]:
        """(session day, second index) of instant ``t``, clamped into sessions."""
        local = to_ist(t)
        d = local.date()
        cal = self.calendar
        if not cal.is_trading_day(d) or local < cal.session_open(d):
            d = d if cal.is_trading_day(d) else cal.previous_trading_day(d)
            if local < cal.session_open(d):
                d = cal.previous_trading_day(d)
            if d < self._first_day:
                return self._first_day, 0
            return d, SESSION_SECONDS
        sec = int((local - cal.session_open(d)).total_seconds())
        return d, min(max(sec, 0), SESSION_SECONDS)

    def step(self, dt: timedelta) -> MarketSnapshot:
        """Advance the clock by ``dt`` (jumping to the next open outside sessions)."""
        if dt < timedelta(0):
            raise ValueError(f"step dt must be >= 0, got {dt}")
        nxt = self.now + dt
        d = nxt.date()
        cal = self.calendar
        if not cal.is_market_open(nxt):
            if cal.is_trading_day(d) and nxt.time() < MARKET_OPEN:
                nxt = cal.session_open(d)
            elif not (cal.is_trading_day(d) and nxt == cal.session_close(d)):
                nxt = cal.session_open(cal.next_trading_day(d))
        self.now = nxt
        return self.snapshot_at(nxt)

    # ------------------------------------------------------------------ snapshot
    def snapshot_at(self, t: datetime) -> MarketSnapshot:
        """The market at instant ``t`` (clamped to the nearest session; pure in (seed, t))."""
        t = to_ist(t)
        day, sec = self._locate(t)
        sess = self._session(day)
        cfg = self.config
        spot = float(sess.spot[sec])
        minute = min(sec // 60, MINUTES)
        qt = t if self.calendar.is_market_open(t) else (
            self.calendar.session_open(day) + timedelta(seconds=sec))
        rng = Generator(PCG64([self.seed, day.toordinal(), sec]))
        listed = self.calendar.listed_nifty_expiries(day)
        monthlies = sorted({self.calendar.monthly_expiry(e.year, e.month) for e in listed
                            if e >= day})
        fut_exp = [m for m in monthlies if m >= day][:2]
        futs = []
        for j, e in enumerate(fut_exp):
            tt = year_fraction(qt, e)
            fair = spot * math.exp((cfg.r - cfg.q) * tt) + float(sess.basis[j, minute])
            half = max(TICK, round(fair * 2e-5 / TICK) * TICK)
            ltp = _tick(fair + rng.uniform(-half, half))
            futs.append(FutureQuote(security_id=1_000_000_000 + e.toordinal(), expiry=e,
                                    ltp=ltp, bid=_tick(fair - half), ask=_tick(fair + half)))
        fut_t = [year_fraction(qt, e) for e in fut_exp]
        fut_u = [float(sess.basis[j, minute]) for j in range(len(fut_exp))]
        chain_exps = self._chain_expiries(day, listed, monthlies)
        sigma_now = float(sess.sigma_min[minute]) * cfg.iv_premium
        frac = sec / SESSION_SECONDS
        chains = [self._chain(e, qt, spot, sess, sigma_now, fut_t, fut_u, frac, rng)
                  for e in chain_exps]
        return MarketSnapshot(time=qt, spot=round(spot, 2),
                              near_future=futs[0] if futs else None,
                              far_future=futs[1] if len(futs) > 1 else None,
                              chains=tuple(chains), listed_expiries=tuple(listed),
                              lot_size=self.calendar.lot_size(day),
                              strike_step=cfg.strike_step)

    def _chain_expiries(self, day: date, listed: list[date], monthlies: list[date]) -> list[date]:
        short = [e for e in listed if e >= day]
        picked = set(short[:2]) | {monthlies[0]}
        for e in short:
            if len(picked) >= self.config.n_expiries:
                break
            picked.add(e)
        return sorted(picked)[: max(self.config.n_expiries, 3)]

    def _chain(self, expiry: date, qt: datetime, spot: float, sess: _Session, sigma_now: float,
               fut_t: list[float], fut_u: list[float], frac: float, rng: Generator) -> OptionChain:
        cfg = self.config
        n, step = cfg.n_strikes, cfg.strike_step
        strikes = sess.atm0 + step * (np.arange(n) - n // 2)
        t = max(year_fraction(qt, expiry), 1e-7)
        basis = float(np.interp(t, [0.0, *fut_t], [0.0, *fut_u])) if fut_t else 0.0
        fwd = spot * math.exp((cfg.r - cfg.q) * t) + basis
        long_run = cfg.annual_vol * cfg.iv_premium
        atm = long_run + (sigma_now - long_run) * math.exp(-t / cfg.term_decay_years)
        z = np.log(strikes / fwd) / (atm * math.sqrt(t))
        zs = 3.0 * np.tanh(z / 3.0)
        vol = atm * (1.0 - cfg.skew * zs + cfg.curvature * zs * zs)
        kk = np.concatenate([strikes, strikes])
        is_call = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        mid = black76_price(fwd, kk, t, np.concatenate([vol, vol]), is_call, cfg.r)
        zz = np.abs(np.concatenate([z, z]))
        days = t * 365.0
        half = TICK * (1.0 + 0.6 * zz) + mid * 0.002 * (1.0 + 1.0 / max(days, 0.25))
        bid = np.maximum(np.round(np.floor((mid - half) / TICK) * TICK, 2), 0.0)
        ask = np.maximum(np.round(np.ceil((mid + half) / TICK) * TICK, 2), TICK)
        jitter = np.minimum(ask - bid, 2 * TICK + 0.01 * mid)
        ltp = np.clip(_tick_arr(mid + rng.uniform(-0.5, 0.5, 2 * n) * jitter), bid, ask)
        ltp = np.maximum(ltp, TICK)
        prev = _tick_arr(mid * np.exp(rng.normal(0.0, 0.08, 2 * n)))
        shape = np.exp(-0.5 * (np.log(kk / fwd) / 0.03) ** 2) + 0.05
        roundness = np.where(kk % 500 == 0, 2.0, np.where(kk % 100 == 0, 1.3, 1.0))
        oi_units = cfg.base_oi * shape * roundness * rng.uniform(0.8, 1.2, 2 * n)
        lot = self.calendar.lot_size(sess.day, expiry)
        oi = (np.round(oi_units / lot) * lot).astype(np.int64)
        volume = (oi_units / lot * (0.2 + 3.0 * frac) * rng.uniform(0.5, 1.5, 2 * n)).astype(
            np.int64)
        base_id = (expiry.toordinal() % 1000) * 100_000
        sid = base_id + (kk / step).astype(np.int64) * 2 + np.where(is_call, 0, 1)
        iv = np.concatenate([vol, vol])

        def side(sl: slice) -> ChainSide:
            return ChainSide(security_id=sid[sl], ltp=ltp[sl], bid=bid[sl], ask=ask[sl],
                             iv=iv[sl], oi=oi[sl], volume=volume[sl], prev_close=prev[sl])

        return OptionChain(expiry=expiry, strikes=strikes, ce=side(slice(0, n)),
                           pe=side(slice(n, 2 * n)))


def _tick(x: float) -> float:
    return round(round(x / TICK) * TICK, 2)


def _tick_arr(x: np.ndarray) -> np.ndarray:
    return np.round(np.round(x / TICK) * TICK, 2)


def session_start(day: date) -> datetime:
    """09:15 IST on ``day`` (helper for callers building a clock)."""
    return datetime.combine(day, MARKET_OPEN, tzinfo=IST)
