"""Composition root: builds the actor system from configuration and runs it.

``Engine`` wires the ports (market data, paper/live broker, chat), the supervisor with its
children in dependency order, the directory's event subscriptions, the scheduler and the
PostgreSQL command bus. The simulated market runs on a ManualClock driven in lock-step at a
chosen speed (nights and holidays are skipped); live market data runs on the real IST clock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import pykka
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.actors.backtest import BacktestActor
from engine.actors.base import ActorContext
from engine.actors.bridge import SUBSCRIBED as BRIDGE_EVENTS
from engine.actors.bridge import EventBridgeActor
from engine.actors.directory import Directory
from engine.actors.executor import ExecutorActor
from engine.actors.monitor import MonitorActor
from engine.actors.notifier import DrainOutbox, NotifierActor
from engine.actors.process import EXIT_CODE
from engine.actors.risk import RiskActor
from engine.actors.scanner import ScannerActor
from engine.actors.scheduler import ScheduleConfig, Scheduler
from engine.actors.supervisor import ChildSpec, Supervisor
from engine.actors.token import TokenActor
from engine.ai.wiring import with_ai_actor
from engine.bus.commands import CommandBus
from engine.bus.dispatch import Dispatcher
from engine.bus.events import write_heartbeat
from engine.chat.service import ChatService
from engine.clock import Clock, ManualClock, RealClock
from engine.config import Config, ConfigError
from engine.execution.paper import PaperBroker
from engine.market.calendar import NseCalendar
from engine.market.calendar_store import CalendarSource, seed_builtin_holidays
from engine.market.simulator import EPOCH as SIM_EPOCH
from engine.market.simulator import SimulatedMarket
from engine.messages.base import IdSource, RandomIds
from engine.messages.commands import PauseEntries, Ping
from engine.messages.events import (
    ActorEscalated,
    ActorRestarted,
    AlertRaised,
    BacktestFinished,
    EntryDenied,
    MarkedToMarket,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    RiskPaused,
    RiskResumed,
    TokenRefreshed,
    TokenRefreshFailed,
)
from engine.messages.tap import MessageTap
from engine.ops.metrics import instrumented, save_metrics
from engine.ports.market_data import MarketData, SimMarketData
from engine.settings import Settings
from engine.store.notify import Listener
from engine.timeutil import IST

logger = logging.getLogger(__name__)

SIM_CLOCK_KEY = "sim_clock"
#: How long a lock-step run waits for the database to save its simulated clock (a restart of
#: PostgreSQL takes seconds) before it exits with EXIT_CODE to be restarted.
SIM_CLOCK_SAVE_WAIT_S = 60.0
#: What the operator does to lift a supervisor's pause (told in the escalation alert).
RESUME_HINT = ("resume entries on the dashboard's Risk page (POST /api/risk/resume); that "
               "also resets the escalation")
LIVE_EXECUTOR_BUSY_GRACE_S = 300.0

# Who hears which event (resolved at send time, so restarted actors are picked up).
SUBSCRIPTIONS: dict[type, tuple[str, ...]] = {
    PositionOpened: ("risk", "scanner", "notifier"),  # the monitor reads open_trades each cycle
    PositionClosed: ("risk", "monitor", "scanner", "notifier"),
    EntryDenied: ("scanner",),
    OrderRejected: ("risk", "notifier"),
    RiskPaused: ("scanner", "notifier"),
    RiskResumed: ("scanner", "notifier"),
    MarkedToMarket: ("executor",),
    ActorRestarted: ("notifier",),
    ActorEscalated: ("notifier",),
    TokenRefreshed: ("notifier",),
    TokenRefreshFailed: ("notifier",),
    BacktestFinished: ("notifier",),
    AlertRaised: ("notifier",),
}
ACTORS: tuple[tuple[str, type], ...] = (
    ("token", TokenActor), ("notifier", NotifierActor), ("executor", ExecutorActor),
    ("risk", RiskActor), ("monitor", MonitorActor), ("scanner", ScannerActor),
    ("backtest", BacktestActor), ("bridge", EventBridgeActor),
)
# AI flows (engine/ai, issue 19): the AI actor, last; it runs on its own timer and subscribes
# to trade events itself only when the LLM port is configured (LLM_BASE_URL, LLM_MODEL).
ACTORS = with_ai_actor(ACTORS)


@dataclass
class Engine:
    """A built (not yet started) engine."""

    config: Config
    pool: ConnectionPool
    clock: Clock
    market: MarketData
    calendar: CalendarSource  # live: re-read from nse_holidays on NOTIFY
    settings: Settings
    directory: Directory
    ids: IdSource
    services: dict[str, Any]
    schedule: ScheduleConfig
    bridge_events: bool = True
    supervisor: Any = None
    scheduler: Scheduler | None = None
    bus: Any = None
    outbox_listener: Any = None
    exit_process: Any = None
    instance_lock: Any = None
    restart_policy: dict[str, Any] = field(default_factory=lambda: {
        "backoff": (0.05, 5.0), "max_restarts": 3, "period_s": 60.0})
    _stop: threading.Event = field(default_factory=threading.Event)

    # ------------------------------------------------------------ lifecycle
    def start(self, *, with_bus: bool = True) -> Engine:
        if with_bus:  # the engine process: one per database and Dhan client id (exit 3)
            self._take_instance_lock()
        feed = self.services.get("dhan_order_feed")
        if feed is not None:  # connects (in its own thread) while the actors start
            feed.start()
        ctx = ActorContext(clock=self.clock, directory=self.directory, ids=self.ids,
                           services=self.services)
        # the executor blocks while live orders fill (legs x fill timeout, plus flattening):
        # that is work, not a hang, so the liveness check gives it time before calling it stuck
        busy = {"executor": LIVE_EXECUTOR_BUSY_GRACE_S} if "live_broker" in self.services else {}
        specs = [ChildSpec.for_actor(name, instrumented(name, cls), ctx, **self.restart_policy,
                                     busy_grace_s=busy.get(name, 0.0))
                 for name, cls in ACTORS if name != "bridge" or self.bridge_events]
        for event, roles in SUBSCRIPTIONS.items():
            self.directory.subscribe(event, *roles)
        if self.bridge_events:
            for event in BRIDGE_EVENTS:
                self.directory.subscribe(event, "bridge")
        kwargs: dict[str, Any] = {"halt_entries": self._halt_entries,
                                  "resume_hint": RESUME_HINT}
        if self.exit_process is not None:
            kwargs["exit_process"] = self.exit_process
        self.supervisor = Supervisor.start(specs, directory=self.directory, clock=self.clock,
                                           ids=self.ids, **kwargs)
        self.supervisor.ask(Ping(), timeout=120)
        self.scheduler = Scheduler(clock=self.clock, calendar=self.calendar,
                                   directory=self.directory, config=self.schedule, ids=self.ids)
        if with_bus:

            dsn = self.config.database_url or _dsn(self.pool)
            self.bus = CommandBus(self.pool, dsn, Dispatcher(self).dispatch).start()

            chat = self.services.get("chat_service")
            if chat is not None:  # Telegram poller (one per bot token) and chat follow-ups
                chat.start(dsn)
            self.outbox_listener = Listener(
                dsn, ["chat_outbox"],
                lambda _c, _p: self.directory.send("notifier", DrainOutbox(), sender="outbox"),
                name="outbox-listener").start()
        live_ops = self.services.get("live_ops")
        if live_ops is not None:  # static-IP check and P&L exit at start, then daily
            live_ops.start(self._ops_alert)
        logger.info("engine started: %s", ", ".join(self.directory.roles()))
        return self

    def _take_instance_lock(self) -> None:
        """Refuse to run next to another engine of this database or Dhan client id: say who
        holds the lock and exit with ``EXIT_LOCKED`` (engine.instance_lock)."""
        import sys

        from engine.instance_lock import EXIT_LOCKED, InstanceLock, InstanceLockHeld

        client = self.config.dhan_client_id if self.config.broker == "dhan" else None
        try:
            self.instance_lock = InstanceLock(self.config.database_url or _dsn(self.pool),
                                              client or None).acquire()
        except InstanceLockHeld as exc:
            logger.error("%s", exc)
            print(f"engine not started: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_LOCKED) from None

    def _ops_alert(self, text: str) -> None:
        self.directory.publish(AlertRaised(ts=self.clock.now(), source="live_ops", text=text,
                                           message_id=self.ids.next_id("live_ops")),
                               sender="live_ops")

    def _halt_entries(self, reason: str) -> None:
        """The supervisor escalated: pause new entries until an operator resumes them (the
        reason says what to check and how to resume; /api/health repeats it)."""
        msg = PauseEntries(ts=self.clock.now(), reason=reason, source="supervisor",
                           message_id=self.ids.next_id("supervisor"))
        self.directory.send("risk", msg, sender="supervisor")
        live_ops = self.services.get("live_ops")
        if live_ops is not None:  # LIVE_KILL_SWITCH_ON_ESCALATION: Dhan's kill switch once flat
            live_ops.on_escalation(reason)

    def request_stop(self) -> None:
        """Ask a running ``run_*`` loop to return (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self.outbox_listener is not None:
            self.outbox_listener.stop()
        if self.services.get("chat_service") is not None:
            self.services["chat_service"].stop()
        if self.bus is not None:
            self.bus.stop()
        if self.scheduler is not None and isinstance(self.clock, RealClock):
            self.scheduler.stop()
        if self.supervisor is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self.supervisor.stop(timeout=30)
        feed = self.services.get("dhan_order_feed")
        if feed is not None:  # after the executor: it may consult the feed until it stops
            feed.stop()
        if self.services.get("live_ops") is not None:
            self.services["live_ops"].stop()
        self.settings.close()
        self.calendar.close()
        leftovers = pykka.ActorRegistry.get_all()
        if leftovers:
            logger.error("actors still running after stop: %s", leftovers)
            pykka.ActorRegistry.stop_all(timeout=10)
        if self.instance_lock is not None:
            self.instance_lock.release()
        logger.info("engine stopped")

    # ------------------------------------------------------------ running
    def run_realtime(self) -> None:
        assert self.scheduler is not None
        self.scheduler.start()
        self._stop.wait()

    def run_accelerated(self, speed: float, until: datetime | None = None,
                        on_step=None) -> None:
        """Drive the ManualClock in lock-step, pacing simulated time at ``speed``× real time.

        Nights, weekends and holidays are skipped in (at most) a second of real time.
        """
        assert isinstance(self.clock, ManualClock) and self.scheduler is not None
        step = timedelta(seconds=self.schedule.monitor_every_s or 15)
        while not self._stop.is_set():
            now = self.clock.now()
            target = self._next_target(now, step)
            if until is not None and target > until:
                target = until
            began = time.monotonic()
            self.scheduler.run_lockstep(target)
            self._save_sim_clock(target)
            if on_step is not None:
                on_step(target)
            if until is not None and target >= until:
                return
            pause = min((target - now).total_seconds() / speed, 1.0) - (time.monotonic() - began)
            if pause > 0:
                self._stop.wait(pause)

    def _next_target(self, now: datetime, step: timedelta) -> datetime:
        """The next lock-step boundary: one step in session; after the close, an hour for the
        end-of-day and prune ticks; then straight to the next session's open."""
        target = now + step
        if self.calendar.is_market_open(target):
            return target
        day, cal = now.date(), self.calendar
        if cal.is_trading_day(day):
            if now < cal.session_open(day):
                return cal.session_open(day)
            if now < cal.session_close(day) + timedelta(hours=1):
                return cal.session_close(day) + timedelta(hours=1)
        return cal.session_open(cal.next_trading_day(day))

    def _save_sim_clock(self, at: datetime) -> None:
        """Record that every tick up to ``at`` ran. Not atomic with the ticks' own writes: a
        scan cycle records itself (its battle-log row, see ``simulated_start``), and the
        other ticks (monitor, end of day, prunes, token) are safe to run again.

        The save is idempotent, so a database that goes away under it (a restart ends the
        connection mid-statement) is waited for up to ``SIM_CLOCK_SAVE_WAIT_S``; after that
        the process exits with ``EXIT_CODE``, as an escalation does, to be restarted."""
        deadline, delay = time.monotonic() + SIM_CLOCK_SAVE_WAIT_S, 0.2
        while True:
            try:
                with self.pool.connection() as conn:
                    conn.execute(
                        "INSERT INTO runtime_state (key, value, updated_at) VALUES (%s, %s, now())"
                        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,"
                        " updated_at = now()", (SIM_CLOCK_KEY, Jsonb({"now": at.isoformat()})))
                return
            except psycopg.OperationalError as exc:  # (the pool's PoolTimeout is one too)
                if time.monotonic() + delay > deadline:
                    logger.critical("simulated clock not saved at %s: the database is away (%s);"
                                    " exiting %d to be restarted", at, exc, EXIT_CODE)
                    raise SystemExit(EXIT_CODE) from exc
                logger.warning("simulated clock not saved at %s (%s); retrying in %.1fs",
                               at, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _dsn(pool: ConnectionPool) -> str:
    with pool.connection() as conn:
        return conn.info.dsn


def simulated_start(pool: ConnectionPool, config: Config,
                    calendar: NseCalendar | CalendarSource) -> datetime:
    """Where the simulated clock starts: continue from the last run, else SIM_START's open,
    else the next session open after now.

    The last run got as far as the later of the clock it saved after each lock-step and its
    last committed scan cycle (the newest battle-log row, written in the cycle's own
    transaction), so a cycle that committed just before the process died is never run again.
    """
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT value->>'now' FROM runtime_state WHERE key = %s) AS saved,"
            " (SELECT max(created_at) FROM strategy_battle_log) AS last_cycle",
            (SIM_CLOCK_KEY,)).fetchone()
    reached = [t.astimezone(IST) for t in (
        datetime.fromisoformat(row["saved"]) if row["saved"] else None, row["last_cycle"])
        if t is not None]
    # the last run's ticks at exactly that time already ran: resume just after it
    saved = max(reached) + timedelta(seconds=1) if reached else None
    if config.sim_start:
        day = date.fromisoformat(config.sim_start)
        if day < SIM_EPOCH:
            raise ConfigError(f"SIM_START={config.sim_start!r}: the simulated market begins on"
                              f" {SIM_EPOCH}")
        if not calendar.is_trading_day(day):
            day = calendar.next_trading_day(day)
        start = calendar.session_open(day)
        if saved is not None and saved > start:
            logger.warning("SIM_START %s is before the simulated clock saved by the last run (%s);"
                           " continuing from the saved time so no trade is replayed twice",
                           start, saved)
            return saved
        return start
    if saved is not None:
        return saved
    today = datetime.now(IST).date()
    day = today if calendar.is_trading_day(today) else calendar.next_trading_day(today)
    return calendar.session_open(day)


def build(config: Config, pool: ConnectionPool, *, clock: Clock | None = None,
          tap: MessageTap | None = None, ids: IdSource | None = None,
          settings: Settings | None = None, listen_settings: bool = True,
          listen_calendar: bool | None = None,
          bridge_events: bool = True, extra_services: dict[str, Any] | None = None) -> Engine:
    """Build the engine for ``config`` (paper broker on the simulated market by default).

    The trading calendar is read from ``nse_holidays`` (seeded from the built-in list on the
    first run) and, with ``listen_calendar`` (default: as ``listen_settings``), re-read on
    every NOTIFY ``nse_holidays``.
    """
    with pool.connection() as conn:
        seed_builtin_holidays(conn)
    calendar = CalendarSource(pool)
    if listen_calendar if listen_calendar is not None else listen_settings:
        calendar.listen(config.database_url or _dsn(pool))
    if settings is None:
        settings = Settings(pool)
        if listen_settings:
            settings.listen(config.database_url or _dsn(pool))
    if config.market_source == "sim":
        start = clock.now() if clock is not None else simulated_start(pool, config, calendar)
        clock = clock or ManualClock(start)
        # the simulated exchange keeps the calendar of its start (its sessions are generated
        # from it); the scheduler and the actors follow the live one
        market: MarketData = SimMarketData(
            SimulatedMarket(config.sim_seed, start, calendar.current()), clock)
    else:
        from engine.broker.dhan.wiring import dhan_market_data

        clock = clock or RealClock()
        market = dhan_market_data(config, clock)
    paper = PaperBroker(market.quote, lambda: int(settings.get("PAPER_SLIPPAGE_TICKS")))
    services: dict[str, Any] = {
        "pool": pool, "settings": settings, "market": market, "paper_broker": paper,
        "dry_run_flags": dict(config.dry_run_flags), "calendar": calendar,
        "heartbeat": lambda wall, engine_time: (write_heartbeat(
            pool, wall, engine_time, simulated=config.market_source == "sim"),
            save_metrics(pool)),
    }
    if config.broker == "dhan":
        from engine.broker.dhan.wiring import dhan_services

        services.update(dhan_services(config, pool, clock, market, settings=settings,
                                      calendar=calendar))
    chat = ChatService(config, pool, settings)
    services.update(chat_channels=chat.channels, chat_service=chat)
    services.update(extra_services or {})
    schedule = ScheduleConfig(scan_every_s=config.scan_interval_sec,
                              monitor_every_s=config.monitor_interval_sec,
                              monitor_roles=("monitor", "notifier"),
                              eod_roles=("executor", "risk", "notifier", "backtest"))
    return Engine(config=config, pool=pool, clock=clock, market=market, calendar=calendar,
                  settings=settings, directory=Directory(tap=tap), ids=ids or RandomIds(),
                  services=services, schedule=schedule, bridge_events=bridge_events)
