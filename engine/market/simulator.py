"""Seeded, deterministic NIFTY market simulator (spot, futures, option chains).

What is simulated:
    * Spot: per-second log-returns inside 09:15-15:30 IST sessions of the NSE calendar;
      variance follows a GARCH(1,1) recursion on a 1-minute grid (volatility clustering) whose
      unconditional level plus the jump variance equals ``config.annual_vol`` (annualized
      over 252 x 375 trading minutes); Poisson jumps; an overnight gap between sessions.
    * Futures (current and next month): ``spot e^{(r-q)T} + u``, with ``u`` a per-contract
      Ornstein-Uhlenbeck noise in points, so the far-near calendar spread mean-reverts.
    * Option chains (150 strikes, step 50, around the session's opening ATM) for every
      expiry a strategy can pick: on an expiry day today's contract; then ``n_expiries``
      (default 3) consecutive expiries from near (near = the first expiry after today on an
      expiry day), i.e. near, next weekly and the one after; and always the first monthly
      strictly after near (on and around a monthly expiry, next month's).
    * Prices: Black-76 mid on a forward whose basis noise is interpolated between the futures.
      Volatility is set in **trading time**: an ATM term structure ``sigma(tau)`` over
      ``tau`` = (rest of today's session + whole sessions to expiry) / 252, equal to the
      current GARCH vol x ``iv_premium`` fading into its long-run level over
      ``term_decay_years``, plus a term-slope factor that fades over ``term_slope_years``;
      a smile in ``z = ln(K/F) / (sigma sqrt tau)`` (skew + curvature, tanh-saturated wings).
      The quoted IV is the same total variance per calendar year (``sqrt(sigma^2 tau / t)``,
      ``t`` = :func:`year_fraction`), so a far expiry spanning a weekend looks cheap in
      calendar time, as on the real chain. The term-slope factor and the skew level are two
      Ornstein-Uhlenbeck processes on the minute grid (stationary std ``term_slope_std``,
      ``skew_std``; half-life about two sessions) carried across days like the basis: the
      front is sometimes rich against the next weekly in trading time by 1-3 vol points,
      sometimes cheap.
    * Liquidity thins away from the front and away from the money, calibrated on the real
      UDiFF bhavcopies (``python -m tests.market.sim_calibration``; constants below): the
      expected day volume and the OI of a contract are the front ATM level
      (``base_volume`` contracts, ``base_oi`` units per side) x a factor of its expiry kind
      (front, next weekly, the monthly after the front ~1/100 of the front; weeklies
      further out ~1e-5; later monthlies ~3e-4) x a measured profile in ``|z|`` (front /
      back expiry, OTM / ITM side) x a strike-roundness bonus x a per-day noise. Volume and
      OI use the session-open moneyness, so cumulative volume (3 % of the day at the open,
      growing linearly) only grows and OI holds through a session.
    * Quotes: bhavcopies carry no bid/ask, so the spread is **modelled** from that liquidity,
      not measured: ``max(1, round(2.5e-4 x mid x liq^-0.375 / 0.05))`` ticks, ``liq`` = the
      expected day volume over the front ATM's at the current moneyness (capped at half the
      mid). Front ATM: 1 tick; next weekly / monthly ATM: ~Rs 0.3-0.7; far weeklies and deep
      ITM legs: rupees. Bid/ask on the 0.05 tick around the mid, call bids falling and put
      bids rising with the strike (no executable vertical); LTP inside the spread.
      Top-of-book quantities (``bid_qty`` / ``ask_qty``, units) are ``top_lots`` (an
      assumption: 40 lots at the front ATM) x ``sqrt(liq)`` x noise, at least one lot.

Determinism: the market is one path from a fixed epoch (``EPOCH``, 2024-01-01: ``spot0``,
the unconditional variance, zero basis), the same for every start and resume point. Each
simulated day -- every weekday and every special session, including exchange holidays, on
which the market moves unobserved, so editing the holiday list changes no other day -- draws
its shocks from ``numpy.random.Generator(PCG64)`` seeded by ``[seed, date.toordinal()]`` and
starts from the close, GARCH variance, basis and smile factors its previous day handed over
(after the overnight gap); the smile factors are drawn after every other shock of the day, so
they leave the spot path as it was. Walking the chain from the epoch needs only the minute-level path (cached
per seed); the per-second detail of an observed session comes from its own stream, bridged
so that every minute ends exactly where the minute-level path says. Quote noise at an
instant uses ``[seed, ordinal, second]``; a day's liquidity noise per expiry uses
``[seed, ordinal, expiry ordinal, _LIQ_STREAM]``. So ``snapshot_at(t)`` is a pure function of
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
_LIQ_STREAM = 1_000_033  # RNG key of a day's per-expiry liquidity noise

# ---- liquidity, calibrated on the real NSE UDiFF F&O bhavcopies in /work/shared/data (the 19
# sessions 2025-02-03 .. 2025-02-28 and 2025-09-11) by ``python -m tests.market.sim_calibration``:
# medians over non-expiry days of each expiry's ATM volume / OI (mean of CE and PE at the strike
# nearest the parity forward) over the front expiry's. Front ATM: 1.76 M contracts and 3.9 M
# units of OI per side (SimConfig.base_volume / base_oi). E.g. 2025-02-03, 23350 CE: 1 514 050
# contracts in the 6-Feb weekly, 11 588 in 13-Feb, 135 in 20-Feb, 4 287 in the 27-Feb monthly.
_FRONT, _NEXT_WEEKLY, _MONTHLY, _OTHER_WEEKLY, _LATER_MONTHLY = range(5)
# front (rank 0; today's contract on an expiry day), next weekly (rank 1), the first monthly
# after the front, weeklies further out, later monthlies
_RANK_VOLUME = np.array([1.0, 1.08e-2, 1.06e-2, 1.05e-5, 2.95e-4])
_RANK_OI = np.array([1.0, 5.28e-2, 1.03e-1, 6.9e-4, 1.19e-2])
# moneyness profiles relative to the same expiry's ATM, by |z| = |ln(K/F)| / (ATM vol sqrt T)
# (bucket medians 0.25-0.5, 0.5-0.75, 0.75-1, 1-1.5, 1.5-2, 2-3, 3-4, 4-6 placed at their
# centres; 1 at the money; medians that round to 0 on the ITM side floored at 1e-4 / 1e-3)
_Z_KNOTS = np.array([0.0, 0.375, 0.625, 0.875, 1.25, 1.75, 2.5, 3.5, 5.0])
_FRONT_VOL_OTM = np.array([1.0, 1.0, 0.891, 0.629, 0.615, 0.429, 0.354, 0.155, 0.061])
_FRONT_VOL_ITM = np.array([1.0, 0.46, 0.287, 0.071, 0.017, 0.003, 3e-4, 1e-4, 1e-4])
_BACK_VOL_OTM = np.array([1.0, 0.727, 0.68, 0.548, 0.415, 0.239, 0.107, 0.064, 0.044])
_BACK_VOL_ITM = np.array([1.0, 0.134, 0.017, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4])
_FRONT_OI_OTM = np.array([1.0, 1.07, 1.11, 1.018, 1.068, 0.99, 0.787, 0.432, 0.305])
_FRONT_OI_ITM = np.array([1.0, 0.374, 0.303, 0.13, 0.069, 0.029, 0.015, 0.002, 0.002])
_BACK_OI_OTM = np.array([1.0, 0.983, 0.852, 0.549, 0.473, 0.307, 0.209, 0.168, 0.218])
_BACK_OI_ITM = np.array([1.0, 0.329, 0.098, 0.014, 1e-3, 1e-3, 1e-3, 1e-3, 2e-3])
# rows: front OTM, front ITM, back OTM, back ITM
_LOG_VOL_PROFILES = np.log([_FRONT_VOL_OTM, _FRONT_VOL_ITM, _BACK_VOL_OTM, _BACK_VOL_ITM])
_LOG_OI_PROFILES = np.log([_FRONT_OI_OTM, _FRONT_OI_ITM, _BACK_OI_OTM, _BACK_OI_ITM])
# quoted spread (bhavcopies carry no bid/ask, so this is a model, not a measurement):
# ticks = max(1, round(KAPPA * mid * liq^-POWER / 0.05)), liq = expected day volume over the
# front ATM's. Front ATM (~Rs 130): 1 tick; next weekly / monthly ATM (liq ~0.011, Rs 250-350):
# 0.3-0.5; a far weekly (liq ~1e-5, ~135 contracts a day): several rupees.
_SPREAD_KAPPA = 2.5e-4
_SPREAD_POWER = 0.375
_MIN_LIQ = 1e-5
_MAX_SPREAD_OF_MID = 0.5


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
    term_decay_years: float = 0.04  # trading years (10 sessions)
    term_slope_std: float = 0.04  # stationary std of the front term-slope factor (vol)
    term_slope_years: float = 0.03  # trading years over which that factor fades
    skew_std: float = 0.03  # stationary std of the skew noise around ``skew``
    smile_kappa_per_min: float = 0.001  # OU mean reversion of both (half-life ~2 sessions)
    strike_step: float = 50.0
    n_strikes: int = 150
    n_expiries: int = 3  # consecutive expiries from near (the monthly after near is added)
    base_oi: int = 3_900_000  # front ATM open interest per side, units (see _RANK_OI)
    base_volume: int = 1_750_000  # front ATM day volume per side, contracts
    top_lots: float = 40.0  # front ATM top-of-book quantity, lots (an assumption)

    def __post_init__(self) -> None:
        if not 0.01 <= self.annual_vol <= 2.0:
            raise ValueError(f"annual_vol {self.annual_vol} outside [0.01, 2]")
        if self.garch_alpha + self.garch_beta >= 1.0:
            raise ValueError("garch_alpha + garch_beta must be < 1 (stationary variance)")
        if self.n_strikes < 2 or self.n_expiries < 1 or self.spot0 <= 0:
            raise ValueError("n_strikes >= 2, n_expiries >= 1 and spot0 > 0 are required")
        for name in ("term_slope_std", "skew_std", "base_oi", "base_volume"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)} must be >= 0")
        for name in ("term_decay_years", "term_slope_years", "smile_kappa_per_min", "top_lots"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} {getattr(self, name)} must be > 0")


@dataclass(frozen=True, slots=True)
class _Carry:
    """What a simulated day hands to the next one at its close."""

    close: float
    var: float  # GARCH variance (annualized)
    basis: tuple[float, float]  # OU noise of the near/far futures, points
    smile: tuple[float, float] = (0.0, 0.0)  # OU term-slope and skew noise


@dataclass(frozen=True, slots=True, eq=False)
class _Day:
    """The minute-level path of one simulated day and the draws its detail is bridged to."""

    day: date
    open_px: float
    spot_min: np.ndarray  # MINUTES + 1 spot values on the minute grid (open .. close)
    var: np.ndarray  # MINUTES + 1 GARCH variances
    basis: np.ndarray  # (2, MINUTES + 1)
    smile: np.ndarray  # (2, MINUTES + 1) term-slope and skew noise
    z: np.ndarray  # GARCH shock of each minute
    s: np.ndarray  # standardized sum of each minute's idiosyncratic per-second noise
    jump_at: np.ndarray  # second index of each jump
    jump_size: np.ndarray  # log-return of each jump

    def carry(self) -> _Carry:
        return _Carry(float(self.spot_min[-1]), float(self.var[-1]),
                      (float(self.basis[0, -1]), float(self.basis[1, -1])),
                      (float(self.smile[0, -1]), float(self.smile[1, -1])))


@dataclass(frozen=True, slots=True, eq=False)
class _Session:
    day: date
    spot: np.ndarray  # SESSION_SECONDS + 1 values (open .. close)
    sigma_min: np.ndarray  # per-minute annualized GARCH vol
    basis: np.ndarray  # (2, MINUTES + 1) OU noise of near/far futures, points
    smile: np.ndarray  # (2, MINUTES + 1) term-slope and skew noise
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
    smile_innov = rng.standard_normal((2, MINUTES))  # drawn last: the spot path is unchanged

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

    basis = _ou(innov, (0.0, 0.0) if carry is None else carry.basis, cfg.basis_kappa_per_min,
                (cfg.basis_std_points, cfg.basis_std_points))
    smile = _ou(smile_innov, (0.0, 0.0) if carry is None else carry.smile,
                cfg.smile_kappa_per_min, (cfg.term_slope_std, cfg.skew_std))
    return _Day(day, open_px, spot_min, var_arr, basis, smile, z, s, jump_at, jump_size)


def _ou(innov: np.ndarray, start: tuple[float, float], kappa: float,
        std: tuple[float, float]) -> np.ndarray:
    """Two Ornstein-Uhlenbeck paths on the minute grid (stationary std ``std``) from ``start``."""
    phi = math.exp(-kappa)
    out = np.empty((2, MINUTES + 1))
    for j in range(2):
        x = innov[j] * (std[j] * math.sqrt(1 - phi**2))
        out[j, 0] = start[j]
        out[j, 1:] = _ar1(x, phi, float(start[j]))
    return out


def _ar1(x: np.ndarray, phi: float, start: float) -> np.ndarray:
    """y[n] = x[n] + phi * y[n-1] with y[-1] = start: the operations, in the order, of
    ``scipy.signal.lfilter([1], [1, -phi], x, zi=[phi * start])`` (bit for bit the same
    floats), without importing scipy.signal (0.6 s at every engine start)."""
    out = np.empty(len(x))
    prev = start
    for n, value in enumerate(x.tolist()):
        prev = phi * prev + value
        out[n] = prev
    return out


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
    return _Session(d.day, spot, np.sqrt(d.var), d.basis, d.smile, float(d.var[-1]),
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
        self._dte: dict[tuple[date, date], int] = {}
        self._day_expiries: dict[date, tuple] = {}
        self._liq: dict[date, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
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
        listed, fut_exp, kinds = self._expiries(day)
        futs = []
        for j, e in enumerate(fut_exp):
            tt = year_fraction(qt, e)
            fair = spot * math.exp((cfg.r - cfg.q) * tt) + float(sess.basis[j, minute])
            half = max(TICK, round(fair * 2e-5 / TICK) * TICK)
            ltp = _tick(fair + rng.uniform(-half, half))
            futs.append(FutureQuote(security_id=1_000_000_000 + e.toordinal(), expiry=e,
                                    ltp=ltp, bid=_tick(fair - half), ask=_tick(fair + half)))
        frac = sec / SESSION_SECONDS
        chains = self._chains(kinds, day, qt, spot, sess, minute, fut_exp, frac, rng)
        return MarketSnapshot(time=qt, spot=round(spot, 2),
                              near_future=futs[0] if futs else None,
                              far_future=futs[1] if len(futs) > 1 else None,
                              chains=tuple(chains), listed_expiries=tuple(listed),
                              lot_size=self.calendar.lot_size(day),
                              strike_step=cfg.strike_step)

    def _expiries(self, day: date) -> tuple[list[date], list[date], list[tuple[date, int]]]:
        """(listed expiries, the two futures' expiries, chains with their liquidity kind) of
        ``day`` (cached: a function of the day and the calendar only)."""
        hit = self._day_expiries.get(day)
        if hit is None:
            listed = self.calendar.listed_nifty_expiries(day)
            monthlies = sorted({self.calendar.monthly_expiry(e.year, e.month) for e in listed
                                if e >= day})
            hit = (listed, [m for m in monthlies if m >= day][:2],
                   self._chain_expiries(day, listed))
            with self._lock:
                if len(self._day_expiries) > 256:
                    self._day_expiries.clear()
                self._day_expiries[day] = hit
        return hit

    def _chain_expiries(self, day: date, listed: list[date]) -> list[tuple[date, int]]:
        """(expiry, liquidity kind) of every chain quoted on ``day``: today's contract on
        an expiry day, then ``n_expiries`` consecutive expiries from near (near = the first
        expiry after today), and always the first monthly strictly after near."""
        cal = self.calendar
        short = [e for e in listed if e >= day]
        i0 = 1 if short and short[0] == day else 0
        picked = set(short[: i0 + self.config.n_expiries])
        near = short[i0] if len(short) > i0 else None
        monthlies = sorted({cal.monthly_expiry(e.year, e.month) for e in short})
        after = [m for m in monthlies if near is not None and m > near and m in short]
        if after:
            picked.add(after[0])
        out = []
        for rank, e in enumerate(sorted(picked)):
            if rank == 0:
                kind = _FRONT
            elif e in monthlies and e == next((m for m in monthlies if m > short[0]), None):
                kind = _MONTHLY
            elif e in monthlies:
                kind = _LATER_MONTHLY
            else:
                kind = _NEXT_WEEKLY if e == short[1] else _OTHER_WEEKLY
            out.append((e, kind))
        return out

    def _sessions_after(self, day: date, expiry: date) -> int:
        """Trading sessions after ``day`` up to and including ``expiry`` (cached)."""
        key = (day, expiry)
        n = self._dte.get(key)
        if n is None:
            n, d = 0, day
            while d < expiry:
                d = self.calendar.next_trading_day(d)
                n += d <= expiry
            with self._lock:
                if len(self._dte) > 4096:
                    self._dte.clear()
                self._dte[key] = n
        return n

    def _surface(self, exps: list[date], day: date, qt: datetime, spot: float, sess: _Session,
                 minute: int, frac: float, fut_exp: list[date]) -> tuple[np.ndarray, ...]:
        """(calendar t, trading tau, forward, trading-time ATM vol, skew) of ``exps`` at ``qt``."""
        cfg = self.config
        ne = len(exps)
        t = np.array([max(year_fraction(qt, e), 1e-7) for e in exps])
        tau = np.array([max((1.0 - frac + self._sessions_after(day, e)) / 252.0, 1e-7)
                        for e in exps])
        if fut_exp:
            fut_t = [year_fraction(qt, e) for e in fut_exp]
            fut_u = [float(sess.basis[j, minute]) for j in range(len(fut_exp))]
            basis = np.interp(t, [0.0, *fut_t], [0.0, *fut_u])
        else:
            basis = np.zeros(ne)
        fwd = spot * np.exp((cfg.r - cfg.q) * t) + basis
        # ATM vol in trading time: GARCH level fading into the long run, plus the OU term slope
        long_run = cfg.annual_vol * cfg.iv_premium
        sigma_now = float(sess.sigma_min[minute]) * cfg.iv_premium
        slope, skew_noise = float(sess.smile[0, minute]), float(sess.smile[1, minute])
        atm = (long_run + (sigma_now - long_run) * np.exp(-tau / cfg.term_decay_years)
               + slope * np.exp(-tau / cfg.term_slope_years))
        atm = np.maximum(atm, 0.3 * long_run)
        skew = min(max(cfg.skew + skew_noise, 0.02), 0.25)
        return t, tau, fwd, atm, np.full(ne, skew)

    def _moneyness(self, strikes: np.ndarray, fwd: np.ndarray, atm: np.ndarray,
                   tau: np.ndarray) -> np.ndarray:
        """z = ln(K/F) / (ATM vol sqrt tau), shape (expiries, strikes)."""
        return np.log(strikes[None, :] / fwd[:, None]) / (atm * np.sqrt(tau))[:, None]

    def _day_liquidity(self, day: date, sess: _Session, kinds: list[tuple[date, int]],
                       fut_exp: list[date]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expected day volume in contracts, OI in units, quote-size noise), each (expiries,
        2 strikes), fixed for the session: set by the moneyness at the open and a per-day
        noise (so cumulative volume only grows and OI does not flicker). Cached per day."""
        hit = self._liq.get(day)
        if hit is not None:
            return hit
        cfg = self.config
        n, n2 = cfg.n_strikes, 2 * cfg.n_strikes
        exps = [e for e, _ in kinds]
        kind = np.array([k for _, k in kinds])
        strikes = sess.atm0 + cfg.strike_step * (np.arange(n) - n // 2)
        _, tau, fwd, atm, _ = self._surface(exps, day, self.calendar.session_open(day),
                                            float(sess.spot[0]), sess, 0, 0.0, fut_exp)
        z = self._moneyness(strikes, fwd, atm, tau)
        prof_v, prof_oi = _profiles(np.abs(np.concatenate([z, z], axis=1)),
                                    _profile_rows(z, kind, n))
        kk = np.concatenate([strikes, strikes])
        roundness = np.where(kk % 500 == 0, 1.6, np.where(kk % 100 == 0, 1.25, 1.0))[None, :]
        noise = np.empty((3, len(exps), n2))
        for j, e in enumerate(exps):
            g = Generator(PCG64([self.seed, day.toordinal(), e.toordinal(), _LIQ_STREAM]))
            noise[:, j] = np.exp(g.normal(0.0, 0.25, (3, n2)))
        day_vol = cfg.base_volume * _RANK_VOLUME[kind][:, None] * prof_v * roundness * noise[0]
        lots = np.array([self.calendar.lot_size(day, e) for e in exps])[:, None]
        oi_units = cfg.base_oi * _RANK_OI[kind][:, None] * prof_oi * roundness * noise[1]
        oi = (np.round(oi_units / lots) * lots).astype(np.int64)
        hit = (day_vol, oi, noise[2])
        with self._lock:
            while len(self._liq) >= _KEEP_SESSIONS:
                self._liq.pop(next(iter(self._liq)))
            self._liq[day] = hit
        return hit

    def _chains(self, kinds: list[tuple[date, int]], day: date, qt: datetime, spot: float,
                sess: _Session, minute: int, fut_exp: list[date], frac: float,
                rng: Generator) -> list[OptionChain]:
        """Every chain of the snapshot, computed as one (expiries x 2 strikes) batch."""
        cfg = self.config
        n, step = cfg.n_strikes, cfg.strike_step
        strikes = sess.atm0 + step * (np.arange(n) - n // 2)
        exps = [e for e, _ in kinds]
        kind = np.array([k for _, k in kinds])
        t, tau, fwd, atm, skew = self._surface(exps, day, qt, spot, sess, minute, frac, fut_exp)
        z = self._moneyness(strikes, fwd, atm, tau)
        zs = 3.0 * np.tanh(z / 3.0)
        vol_tr = atm[:, None] * (1.0 - skew[:, None] * zs + cfg.curvature * zs * zs)
        iv = vol_tr * np.sqrt(tau / t)[:, None]  # the same total variance per calendar year
        iv2 = np.concatenate([iv, iv], axis=1)  # (expiries, 2n): CE then PE
        kk = np.concatenate([strikes, strikes])
        is_call = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        mid = black76_price(fwd[:, None], kk[None, :], t[:, None], iv2, is_call[None, :], cfg.r)
        day_vol, oi, size_noise = self._day_liquidity(day, sess, kinds, fut_exp)
        volume = (day_vol * (0.03 + 0.97 * frac)).astype(np.int64)
        # liquidity now (moneyness at this instant): expected day volume over the front ATM's
        prof_v, _ = _profiles(np.abs(np.concatenate([z, z], axis=1)), _profile_rows(z, kind, n))
        liq = _RANK_VOLUME[kind][:, None] * prof_v
        # quoted spread in ticks from liquidity: thin legs (low expected volume) are wide
        ticks = _SPREAD_KAPPA * mid * np.maximum(liq, _MIN_LIQ) ** -_SPREAD_POWER / TICK
        ticks = np.maximum(1.0, np.round(np.minimum(ticks, _MAX_SPREAD_OF_MID * mid / TICK)))
        spread = ticks * TICK
        bid = np.maximum(np.floor((mid - 0.5 * spread) / TICK + 0.5) * TICK, 0.0)
        ask = np.maximum(bid + spread, TICK)
        # no executable vertical: call bids fall and put bids rise with the strike
        bid[:, :n] = np.minimum.accumulate(bid[:, :n], axis=1)
        bid[:, n:] = np.minimum.accumulate(bid[:, n:][:, ::-1], axis=1)[:, ::-1]
        bid, ask = np.round(bid, 2), np.round(ask, 2)
        jitter = np.minimum(ask - bid, 2 * TICK + 0.01 * mid)
        ltp = np.clip(_tick_arr(mid + rng.uniform(-0.5, 0.5, mid.shape) * jitter), bid, ask)
        ltp = np.maximum(ltp, TICK)
        prev = _tick_arr(mid * np.exp(rng.normal(0.0, 0.08, mid.shape)))
        lots = np.array([self.calendar.lot_size(day, e) for e in exps])[:, None]
        size = cfg.top_lots * np.sqrt(liq) * size_noise
        qty = np.maximum(1, np.round(size[None] * rng.uniform(0.5, 1.5, (2, *mid.shape))))
        qty = (qty * lots[None]).astype(np.int64)
        out = []
        for j, e in enumerate(exps):
            base_id = (e.toordinal() % 1000) * 100_000
            sid = base_id + (kk / step).astype(np.int64) * 2 + np.where(is_call, 0, 1)

            def side(sl: slice, j: int = j, sid: np.ndarray = sid) -> ChainSide:
                return ChainSide(security_id=sid[sl], ltp=ltp[j, sl], bid=bid[j, sl],
                                 ask=ask[j, sl], iv=iv2[j, sl], oi=oi[j, sl],
                                 volume=volume[j, sl], prev_close=prev[j, sl],
                                 bid_qty=qty[0, j, sl], ask_qty=qty[1, j, sl])

            out.append(OptionChain(expiry=e, strikes=strikes, ce=side(slice(0, n)),
                                   pe=side(slice(n, 2 * n))))
        return out


def _profile_rows(z: np.ndarray, kind: np.ndarray, n: int) -> np.ndarray:
    """Row of the profile tables for each (expiry, CE/PE strike): front/back x OTM/ITM."""
    zz = np.concatenate([z, z], axis=1)
    is_call = np.r_[np.ones(n, bool), np.zeros(n, bool)][None, :]
    otm = np.where(is_call, zz > 0, zz < 0)
    return 2 * (kind != _FRONT)[:, None] + ~otm


def _profiles(az: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Volume and OI moneyness profiles at ``|z|`` from row ``table`` of the profile tables
    (log-linear between the knots, flat beyond the last)."""
    x = np.minimum(az, _Z_KNOTS[-1])
    i = np.clip(np.searchsorted(_Z_KNOTS, x, side="right") - 1, 0, _Z_KNOTS.size - 2)
    f = (x - _Z_KNOTS[i]) / (_Z_KNOTS[i + 1] - _Z_KNOTS[i])
    out = []
    for logs in (_LOG_VOL_PROFILES, _LOG_OI_PROFILES):
        lo, hi = logs[table, i], logs[table, i + 1]
        out.append(np.exp(lo + f * (hi - lo)))
    return out[0], out[1]


def _tick(x: float) -> float:
    return round(round(x / TICK) * TICK, 2)


def _tick_arr(x: np.ndarray) -> np.ndarray:
    return np.round(np.round(x / TICK) * TICK, 2)


def session_start(day: date) -> datetime:
    """09:15 IST on ``day`` (helper for callers building a clock)."""
    return datetime.combine(day, MARKET_OPEN, tzinfo=IST)
