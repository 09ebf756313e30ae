"""Shared fixtures: a real PostgreSQL, a fresh migrated database per test.

The server is the machine's PostgreSQL (TEST_DATABASE_ADMIN_URL, default
postgresql://postgres@127.0.0.1:5432/postgres) when reachable, otherwise the embedded
server. Migrations run once per session into a template database; each test gets a clone
(CREATE DATABASE ... TEMPLATE), which takes a few tens of milliseconds.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.actors.base import UNEXPECTED_MESSAGE
from engine.store.migrate import migrate
from engine.store.pool import open_pool

DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

pytest_plugins = ["tests.dhan_fixtures"]  # Dhan simulator fixtures: make_sim, sim

# A developer's ./.env (live credentials, DATABASE_URL, ...) must never leak into tests,
# including the engine subprocesses they start.
os.environ["ENGINE_ENV_FILE"] = os.devnull


class _UnexpectedMessages(logging.Handler):
    """Collects actors' "unexpected message" warnings (ours and pykka's own)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if UNEXPECTED_MESSAGE in text or text.startswith("Unexpected message received by"):
            self.seen.append(text)


@pytest.fixture(autouse=True)
def _no_unexpected_actor_messages(request: pytest.FixtureRequest) -> Iterator[None]:
    """A message delivered to an actor that does not handle it is a routing bug: fail the test
    (mark a test ``unexpected_messages_ok`` when it sends one on purpose)."""
    handler = _UnexpectedMessages()
    loggers = [logging.getLogger("engine.actors.base"), logging.getLogger("pykka")]
    for lg in loggers:
        lg.addHandler(handler)
    yield
    for lg in loggers:
        lg.removeHandler(handler)
    if handler.seen and request.node.get_closest_marker("unexpected_messages_ok") is None:
        pytest.fail("actors received messages they do not handle: " + "; ".join(handler.seen[:5]))


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _embedded_admin(tmp_root: Path) -> str:
    import pgserver

    tmp_root.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(tmp_root / "pgdata", cleanup_mode="stop")
    return server.get_uri()


def with_dbname(dsn: str, name: str) -> str:
    parts = conninfo_to_dict(dsn)
    parts["dbname"] = name
    return make_conninfo(**parts)


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    dsn = os.environ.get("TEST_DATABASE_ADMIN_URL", DEFAULT_ADMIN)
    if os.environ.get("TEST_EMBEDDED_DB") != "1" and _reachable(dsn):
        return dsn
    return _embedded_admin(Path(os.environ.get("ENGINE_VAR_DIR", "var")).resolve() / "test")


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    name = f"tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(with_dbname(admin_url, name))
    yield name
    _drop(admin_url, name)


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clone_database(conn: psycopg.Connection, template_db: str, prefix: str = "t_") -> str:
    """A new database (``prefix`` + a random suffix) cloned from ``template_db``; its name."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    for attempt in range(20):
        try:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
            return name
        except psycopg.errors.ObjectInUse:  # template briefly busy in another clone
            time.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"template {template_db} stayed busy")


class SpareDatabases:
    """Clones of the template made ahead of need on a background thread.

    A CREATE DATABASE costs ~0.3 s here, nearly all of it PostgreSQL waiting on fsync, and
    most tests need one: made while the previous test runs, it is ready when asked for.
    A used one is dropped on the same thread (a DROP waits behind a running CREATE). Best
    effort only: when none is ready (the first, or the server was away), ``take`` makes one
    itself, as before.
    """

    AHEAD = 2

    def __init__(self, admin_url: str, template_db: str) -> None:
        self._admin, self._template = admin_url, template_db
        self._ready: queue.Queue[str] = queue.Queue(maxsize=self.AHEAD)
        self._used: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="spare-databases", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self._admin, autocommit=True, connect_timeout=5)
                self._drop_used(conn)
                if self._ready.full():  # (this thread is the only one that puts)
                    self._stop.wait(0.2)
                else:  # one made as close() stops us is dropped by close()
                    self._ready.put_nowait(clone_database(conn, self._template))
            except Exception:  # the server away (a restart test) or busy: try again soon
                logging.getLogger(__name__).debug("spare database not made", exc_info=True)
                if conn is not None:
                    conn.close()
                    conn = None
                self._stop.wait(1.0)
        if conn is not None:
            conn.close()

    def _drop_used(self, conn: psycopg.Connection) -> None:
        while True:
            try:
                name = self._used.get_nowait()
            except queue.Empty:
                return
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:
                self._used.put(name)  # the next round (or close) tries again
                raise

    def discard(self, name: str) -> None:
        """A test's database, no longer needed: dropped soon, on the background thread."""
        self._used.put(name)

    def take(self) -> str:
        try:
            return self._ready.get_nowait()
        except queue.Empty:
            with psycopg.connect(self._admin, autocommit=True) as conn:
                return clone_database(conn, self._template)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)
        for waiting in (self._ready, self._used):
            while True:
                try:
                    _drop(self._admin, waiting.get_nowait())
                except queue.Empty:
                    break


@pytest.fixture(scope="session")
def spare_databases(admin_url: str, template_db: str) -> Iterator[SpareDatabases]:
    spares = SpareDatabases(admin_url, template_db)
    yield spares
    spares.close()


@pytest.fixture
def new_database(admin_url: str, spare_databases: SpareDatabases) -> Iterator[Callable[[], str]]:
    """Factory for extra fresh migrated databases within one test."""
    made: list[str] = []

    def make() -> str:
        name = spare_databases.take()
        made.append(name)
        return with_dbname(admin_url, name)

    yield make
    for name in made:
        spare_databases.discard(name)


@pytest.fixture
def empty_database(admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_dbname(admin_url, name)
    _drop(admin_url, name)


@pytest.fixture
def db_url(new_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> str:
    url = new_database()
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def pool(db_url: str):
    p = open_pool(db_url, min_size=1, max_size=6, name="test")
    yield p
    p.close()


def eventually(condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.02):
    """Poll ``condition`` until it returns a truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")


# ---------------------------------------------------------------- scheduling on xdist workers
#: The longest tests (minutes each on 2 cores, from ``pytest --durations``): run first, so the
#: workers take them one at a time while short tests fill the gaps, and no worker ends the
#: run on one of them (``make test`` uses ``--dist loadgroup --no-loadscope-reorder``).
HEAVY_FIRST = (
    "tests/faults/test_cycle_replay_faults.py::test_kills_between_cycle_commit_and_clock_save_replay_nothing",
    "tests/faults/test_invariants.py",
    "tests/risk/test_margin_backtest.py::test_backtest_refuses_entries_over_the_margin_cap",
    "tests/web/test_engine_integration.py::test_backtest_and_grid_from_dashboard_run_to_complete",
    "tests/engine/test_cycle_replay.py::test_restarted_scanner_continues_the_days_rows_exactly",
    "tests/replay/test_replay.py::test_replay_twice_is_identical",
    "tests/faults/test_risk_envelope_faults.py::test_kill_between_close_and_risk_update_loses_no_close",
    "tests/faults/test_postgres_restart.py::test_postgres_restart_mid_session_keeps_every_invariant",
    "tests/engine/test_options_day.py::test_double_calendar_opens_is_marked_and_exits_on_its_rule",
    "tests/engine/test_paper_loop.py::test_trade_past_expiry_alerts_once_and_held_trade_is_not_auto_closed",
    "tests/engine/test_paper_loop.py::test_restart_continues_from_database",
    "tests/rehearsal/test_documented_rehearsal.py::test_readme_rehearsal_trades_live_against_the_simulator",
    "tests/engine/test_paper_loop.py::test_daily_loss_cap_blocks_entries_and_survives_restart",
    "tests/replay/test_replay.py::test_replay_changed_strategy_parameter_changes_log",
    "tests/faults/test_cycle_replay_faults.py::test_random_kills_apply_every_scan_cycle_exactly_once",
)
#: Files whose module-scoped fixtures are expensive: their tests stay on one worker.
ONE_WORKER_FILES = (
    "tests/faults/test_invariants.py", "tests/backtest/test_bhav_download.py",
    "tests/ops/test_compose_commands.py", "tests/ops/test_nginx.py", "tests/ops/test_compose.py",
    "tests/strategies/test_view_cache.py", "tests/strategies/test_mdc.py",
    "tests/strategies/test_iron_condor.py", "tests/market/test_surface_store.py",
)


def pytest_collection_modifyitems(session, config, items) -> None:
    def rank(item) -> int:
        for i, key in enumerate(HEAVY_FIRST):
            if item.nodeid == key or item.nodeid.startswith(key + "::"):
                return i
        return len(HEAVY_FIRST)

    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in ONE_WORKER_FILES:
            item.add_marker(pytest.mark.xdist_group(path))
    items.sort(key=rank)  # stable: the rest keeps pytest's order
