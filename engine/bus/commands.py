"""Durable commands from the web to the engine: rows in ``engine_commands`` plus a NOTIFY.

The web calls :func:`enqueue_command` (row + NOTIFY 'engine_commands' in one transaction).
The engine runs one :class:`CommandBus`: it LISTENs on 'engine_commands' and also polls every
few seconds, claims each pending row exactly once with ``FOR UPDATE SKIP LOCKED`` (several
buses may race safely), calls ``dispatch(row) -> dict`` in its own worker thread and writes
``done``/``error`` plus NOTIFY 'engine_command_results'.

Crash recovery: a row left ``claimed`` for longer than ``stale_after`` belonged to an engine
that died while running it. Re-running it blindly could, for example, close a trade twice, so
it is marked ``error`` ('engine restarted while running; check state') unless its kind is in
:data:`IDEMPOTENT_KINDS` (running it again leaves the same end state), in which case it goes
back to ``pending``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.store.notify import Listener, notify
from engine.store.tx import transaction

logger = logging.getLogger(__name__)

COMMANDS_CHANNEL = "engine_commands"
RESULTS_CHANNEL = "engine_command_results"

#: kind -> required payload fields (what the dispatch can rely on).
COMMAND_KINDS: Mapping[str, tuple[str, ...]] = {
    # optional: mode "send" (default: the closing orders; for a trade on hold only its share
    # of what the broker holds) | "record_from_broker" (no order sent: recorded closed at the
    # broker's trade-book prices with model charges; needs confirm: true)
    "close_trade": ("tag",),
    "pause_entries": ("reason",),
    "resume_entries": (),
    "set_go_live_stage": ("strategy", "stage", "confirm"),
    "run_backtest": ("run_id",),
    "run_grid": ("job_id",),
    "rerun_task": ("task",),
    # the operator's decision on an unresolved live order: action filled (+ price, quantity)
    # | not_filled | flatten (+ quantity)
    "resolve_order": ("correlation_id", "action", "confirm"),
    # Dhan's kill switch (BROKER=dhan only): entries are paused, then the switch is armed at
    # Dhan once the account is flat (no open position, no pending order); needs confirm: true
    "kill_switch": ("reason", "confirm"),
}

#: Kinds whose re-run after an engine crash reaches the same end state: pausing or resuming
#: entries, setting a stage to a value, and (re)computing a backtest run / grid job into its
#: own row. close_trade and rerun_task are NOT: a half-done close may have sent orders, and a
#: task (AI call, fetch) may have had side effects; those need an operator's look.
IDEMPOTENT_KINDS: frozenset[str] = frozenset(
    {"pause_entries", "resume_entries", "set_go_live_stage", "run_backtest", "run_grid",
     "kill_switch"})

STALE_ERROR = "engine restarted while running; check state"

#: How long a command may wait before it is refused at claim time, by what it does to risk.
#: Risk-reducing commands (close a trade, pause entries, stage down to paper/disabled) still
#: run late: the dispatch checks at claim time that they still make sense (the trade is still
#: open, ...). Risk-adding ones (resume entries, promote to shadow/live, rerun an AI task)
#: expire: an operator who asked an hour ago, while the engine was down, may not want it now.
RISK_ADDING_TTL = timedelta(minutes=5)
NEUTRAL_TTL = timedelta(hours=24)  # backtests: compute only, but not a day-old queue


def risk_direction(kind: str, payload: Mapping[str, Any]) -> str:
    """``"reduces"``, ``"adds"`` or ``"neutral"``: what running the command does to risk."""
    if kind in ("close_trade", "pause_entries", "resolve_order", "kill_switch"):
        return "reduces"
    if kind == "set_go_live_stage":
        return "reduces" if payload.get("stage") in ("paper", "disabled") else "adds"
    if kind in ("resume_entries", "rerun_task"):
        return "adds"
    return "neutral"


def expiry_error(kind: str, payload: Mapping[str, Any], age: timedelta) -> str | None:
    """Why a command that waited ``age`` must not run any more, or None."""
    direction = risk_direction(kind, payload)
    ttl = {"adds": RISK_ADDING_TTL, "neutral": NEUTRAL_TTL}.get(direction)
    if ttl is None or age <= ttl:
        return None
    minutes = int(age.total_seconds() // 60)
    return (f"expired: {kind} waited {minutes} min (risk-adding commands run only within "
            f"{int(ttl.total_seconds() // 60)} min of the request); send it again if still wanted"
            if direction == "adds" else
            f"expired: {kind} waited {minutes} min (more than {ttl}); send it again")


class CommandError(ValueError):
    """A command has an unknown kind or is missing a payload field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRow:
    """One claimed command as the dispatch function receives it."""

    id: int
    kind: str
    payload: dict[str, Any]
    requested_by: str
    created_at: datetime
    claimed_by: str
    idempotency_key: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CommandRow:
        return cls(id=row["id"], kind=row["kind"], payload=dict(row["payload"] or {}),
                   requested_by=row["requested_by"], created_at=row["created_at"],
                   claimed_by=row["claimed_by"], idempotency_key=row["idempotency_key"])


def validate_command(kind: str, payload: Mapping[str, Any]) -> None:
    """Raise CommandError naming the problem when ``kind``/``payload`` is not acceptable."""
    if kind not in COMMAND_KINDS:
        raise CommandError(f"kind: unknown command {kind!r}; expected one of "
                           + ", ".join(sorted(COMMAND_KINDS)))
    if not isinstance(payload, Mapping):
        raise CommandError("payload: expected an object")
    for name in COMMAND_KINDS[kind]:
        if name not in payload:
            raise CommandError(f"payload.{name}: required for {kind}")


def enqueue_command(
    conn: psycopg.Connection[Any],
    kind: str,
    payload: Mapping[str, Any],
    *,
    requested_by: str,
    idempotency_key: str | None = None,
) -> int:
    """Insert a pending command and NOTIFY the engine (on commit). Returns the command id.

    With an ``idempotency_key`` already used, the existing command's id is returned and no new
    row is written.
    """
    validate_command(kind, payload)
    row = conn.execute(
        "INSERT INTO engine_commands (kind, payload, requested_by, idempotency_key)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (kind, Jsonb(dict(payload)), requested_by, idempotency_key)).fetchone()
    if row is None:
        existing = conn.execute("SELECT id FROM engine_commands WHERE idempotency_key = %s",
                                (idempotency_key,)).fetchone()
        return _first(existing)
    command_id = _first(row)
    notify(conn, COMMANDS_CHANNEL, {"id": command_id, "kind": kind})
    return command_id


def _first(row: Any) -> int:
    return int(row["id"] if isinstance(row, Mapping) else row[0])


_CLAIM = """
UPDATE engine_commands SET status = 'claimed', claimed_by = %s, claimed_at = now()
 WHERE id = (SELECT id FROM engine_commands WHERE status = 'pending'
              ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING *, now() - created_at AS age
"""


class CommandBus:
    """The engine side of the bridge: claim, dispatch and record web commands.

    Args:
        pool: the engine's connection pool.
        dsn: DSN for the dedicated LISTEN connection.
        dispatch: called once per claimed command in the bus thread; returns a JSON-able dict
            (stored as ``result``) or raises (the message is stored as ``error``). It should
            hand the work to an actor and return quickly.
        worker_name: written to ``claimed_by`` (include host and pid).
        poll_interval: seconds between polls when no NOTIFY arrives.
        stale_after: age of a ``claimed`` row after which its engine is presumed dead.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        dsn: str,
        dispatch: Callable[[CommandRow], dict[str, Any] | None],
        worker_name: str | None = None,
        *,
        poll_interval: float = 2.0,
        stale_after: timedelta = timedelta(minutes=10),
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._dispatch = dispatch
        self.worker_name = worker_name or f"engine-{os.getpid()}"
        self._poll_interval = poll_interval
        self._stale_after = stale_after
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> CommandBus:
        """Recover stale claims, start LISTEN and the worker thread."""
        self._listener = Listener(self._dsn, [COMMANDS_CHANNEL], self._on_notify,
                                  on_reconnect=self._wake.set,
                                  name=f"cmd-listen-{self.worker_name}").start()
        self._thread = threading.Thread(target=self._run, name=f"cmd-bus-{self.worker_name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening; the command being dispatched (if any) is finished first."""
        self._stop.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_notify(self, _channel: str, _payload: dict[str, Any]) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.recover_stale()
                self.drain()
            except psycopg.Error as exc:
                logger.warning("command bus %s: database error %s; retrying",
                               self.worker_name, exc.__class__.__name__)
            self._wake.wait(self._poll_interval)
            self._wake.clear()

    # ------------------------------------------------------------ work
    def drain(self) -> int:
        """Claim and run pending commands until none is left. Returns how many ran."""
        count = 0
        while not self._stop.is_set() and self.run_one():
            count += 1
        return count

    def run_one(self) -> bool:
        """Claim one pending command and run it. Returns False when none was pending."""
        with transaction(self._pool) as conn:
            row = conn.execute(_CLAIM, (self.worker_name,)).fetchone()
        if row is None:
            return False
        command = CommandRow.from_row(row)
        logger.info("command %s %s claimed by %s (requested by %s)", command.id, command.kind,
                    self.worker_name, command.requested_by)
        expired = expiry_error(command.kind, command.payload, row["age"])
        if expired is not None:
            logger.warning("command %s not run: %s", command.id, expired)
            self._finish(command, "error", None, expired)
            return True
        try:
            result = self._dispatch(command) or {}
        except Exception as exc:
            logger.warning("command %s %s failed: %s", command.id, command.kind, exc)
            self._finish(command, "error", None, f"{exc.__class__.__name__}: {exc}"[:2000])
        else:
            self._finish(command, "done", result, None)
        return True

    def _finish(self, command: CommandRow, status: str, result: dict[str, Any] | None,
                error: str | None) -> None:
        with transaction(self._pool) as conn:
            conn.execute(
                "UPDATE engine_commands SET status = %s, result = %s, error = %s,"
                " finished_at = now() WHERE id = %s AND claimed_by = %s",
                (status, Jsonb(result) if result is not None else None, error, command.id,
                 self.worker_name))
            notify(conn, RESULTS_CHANNEL, {"id": command.id, "kind": command.kind,
                                           "status": status})

    def recover_stale(self) -> int:
        """Resolve commands claimed longer than ``stale_after`` ago (their engine died).

        Idempotent kinds go back to pending; the others are marked error. Returns the count.
        """
        with transaction(self._pool) as conn:
            rows = conn.execute(
                "UPDATE engine_commands SET"
                "   status = CASE WHEN kind = ANY(%(idem)s) THEN 'pending' ELSE 'error' END,"
                "   error = CASE WHEN kind = ANY(%(idem)s) THEN NULL ELSE %(msg)s END,"
                "   finished_at = CASE WHEN kind = ANY(%(idem)s) THEN NULL ELSE now() END,"
                "   claimed_by = CASE WHEN kind = ANY(%(idem)s) THEN NULL ELSE claimed_by END,"
                "   claimed_at = CASE WHEN kind = ANY(%(idem)s) THEN NULL ELSE claimed_at END"
                " WHERE status = 'claimed' AND claimed_at < now() - %(age)s"
                " RETURNING id, kind, status",
                {"idem": sorted(IDEMPOTENT_KINDS), "msg": STALE_ERROR,
                 "age": self._stale_after}).fetchall()
            for row in rows:
                logger.warning("command %s %s was claimed by a dead engine: now %s",
                               row["id"], row["kind"], row["status"])
                if row["status"] == "error":
                    notify(conn, RESULTS_CHANNEL, {"id": row["id"], "kind": row["kind"],
                                                   "status": "error"})
        return len(rows)
