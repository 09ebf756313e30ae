"""Build a real engine (real actors, real PostgreSQL, simulated market) for tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.app import Engine, build
from engine.clock import ManualClock
from engine.config import load
from engine.messages.base import SeededIds
from engine.messages.tap import MessageTap
from engine.store.pool import open_pool
from engine.timeutil import IST

SESSION = datetime(2025, 2, 3, 9, 15, tzinfo=IST)
#: the strategies a harness engine runs unless told otherwise: the two-leg futures spread,
#: which trades often on the simulated market (the options strategies have their own tests)
DEFAULT_STRATEGIES = ("CAL_ARB",)


def enable_only(pool, strategies) -> None:
    """Switch on exactly ``strategies`` (``<NAME>_ENABLED``) in the runtime settings, and
    the daily parity report off: its worker process after each close only where a test asks
    for it (``PARITY_DAILY``), never in an engine a fault test kills."""
    from engine.settings import Settings
    from engine.strategies.registry import names

    settings = Settings(pool)
    for name in names():
        settings.set(f"{name}_ENABLED", "true" if name in strategies else "false",
                     updated_by="test harness")
    settings.set("PARITY_DAILY", "false", updated_by="test harness")


def enable_only_url(db_url: str, strategies) -> None:
    """:func:`enable_only` for an engine started as a process on ``db_url``."""
    pool = open_pool(db_url, max_size=2, name="enable-only")
    try:
        enable_only(pool, strategies)
    finally:
        pool.close()


class Harness:
    """An engine in lock-step on a ManualClock; ``run_until`` advances simulated time."""

    def __init__(self, db_url: str, *, start: datetime = SESSION, seed: int = 7,
                 tap: MessageTap | None = None, env: dict[str, str] | None = None,
                 restart_policy: dict[str, Any] | None = None,
                 strategies: tuple[str, ...] | None = DEFAULT_STRATEGIES,
                 settings: dict[str, str] | None = None) -> None:
        self.pool = open_pool(db_url, max_size=10, name="harness")
        if strategies is not None:  # None: leave the stored settings as they are (a restart)
            enable_only(self.pool, strategies)
        if settings:  # runtime settings (registered knobs), stored before the engine starts
            from engine.settings import Settings

            store = Settings(self.pool)
            for key, value in settings.items():
                store.set(key, value, updated_by="test harness")
        cfg = load({"DATABASE_URL": db_url, "SIM_SEED": str(seed), **(env or {})})
        self.engine: Engine = build(cfg, self.pool, clock=ManualClock(start), tap=tap,
                                    ids=SeededIds(seed), listen_settings=False)
        self.escalations: list[int] = []
        self.engine.exit_process = self.escalations.append
        if restart_policy:
            self.engine.restart_policy = restart_policy

    def start(self) -> Harness:
        self.engine.start(with_bus=False)
        return self

    def run_until(self, hh: int, mm: int, day: datetime | None = None) -> None:
        base = day or self.engine.clock.now()
        self.engine.scheduler.run_lockstep(base.replace(hour=hh, minute=mm, second=0, microsecond=0))

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def stop(self) -> None:
        self.engine.stop()
        self.pool.close()
