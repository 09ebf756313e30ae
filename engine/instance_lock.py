"""One engine per database and per Dhan client id: PostgreSQL advisory locks held for the
life of the process.

Two engines on one database would both trade the same books (double entries, exits fought
over); two engines on one Dhan account, even on different databases, would both send its
orders. So an engine takes, on a connection of its own that it keeps open:

* the **database lock**: ``pg_try_advisory_lock(NAMESPACE, 0)`` in its own database;
* the **client-id lock** (with a Dhan client id): ``pg_try_advisory_lock(NAMESPACE,
  crc32(client id))`` in the server's maintenance database (``postgres``), which every
  database on the server shares; when that database cannot be reached, in the engine's own.

The lock connection carries ``application_name = nifty-engine pid=… host=… since=…`` so a
second engine can say who holds the lock (``pg_locks`` joined with ``pg_stat_activity``)
before it exits with :data:`EXIT_LOCKED`. PostgreSQL drops an advisory lock when its session
ends, so a killed engine never leaves a stale one. A keeper thread checks the connection;
after a database restart it takes the lock again (and says CRITICAL if another engine got it
meanwhile).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import zlib
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.redact import redact
from engine.timeutil import IST

logger = logging.getLogger(__name__)

__all__ = ["EXIT_LOCKED", "NAMESPACE", "InstanceLock", "InstanceLockHeld"]

NAMESPACE = 0x4E494654  # "NIFT"
EXIT_LOCKED = 3
APP_PREFIX = "nifty-engine"


class InstanceLockHeld(RuntimeError):
    """Another engine holds the lock; the message names it."""


def _key(client_id: str | None) -> int:
    if not client_id:
        return 0
    return zlib.crc32(client_id.encode()) & 0x7FFFFFFF or 1


def _maintenance_dsn(dsn: str) -> str:
    return make_conninfo(dsn, dbname="postgres")


class _Held:
    """One advisory lock on one connection."""

    def __init__(self, dsn: str, key: int, what: str, app_name: str) -> None:
        self.dsn, self.key, self.what, self.app_name = dsn, key, what, app_name
        self.conn: psycopg.Connection | None = None

    def try_take(self) -> bool:
        conn = psycopg.connect(self.dsn, autocommit=True, application_name=self.app_name,
                               connect_timeout=10)
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                           (NAMESPACE, self.key)).fetchone()[0]
        if not got:
            conn.close()
            return False
        self.conn = conn
        return True

    def holder(self) -> str:
        """Who holds the lock (as the holder's session describes itself)."""
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start"
                    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s"
                    " AND l.objid = %s AND l.objsubid = 2"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "                   WHERE datname = current_database())",
                    (NAMESPACE, self.key)).fetchone()
        except psycopg.Error as exc:
            return f"(holder not readable: {type(exc).__name__})"
        if row is None:
            return "(the holder just released it)"
        pid, app, addr, since = row
        return (f"{app or 'an unnamed session'} (database backend pid {pid}, from "
                f"{addr or 'a local socket'}, connected {since.astimezone(IST):%Y-%m-%d %H:%M:%S}"
                " IST)")

    def alive(self) -> bool:
        if self.conn is None or self.conn.closed:
            return False
        try:
            self.conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (NAMESPACE, self.key))
            self.conn.close()
        self.conn = None


class InstanceLock:
    """The engine's locks (module docstring).

    Args:
        dsn: the engine's database.
        client_id: the Dhan client id (``None``: only the database lock).
        keep_alive_s: how often the keeper thread checks the lock connections.
    """

    def __init__(self, dsn: str, client_id: str | None = None, *,
                 keep_alive_s: float = 15.0) -> None:
        self.dsn, self.client_id, self.keep_alive_s = dsn, client_id, keep_alive_s
        since = datetime.now(IST).strftime("%Y-%m-%dT%H:%M:%S")
        self.app_name = (f"{APP_PREFIX} pid={os.getpid()} host={socket.gethostname()} "
                         f"since={since}")[:63]
        self._held: list[_Held] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _plan(self) -> list[_Held]:
        db = conninfo_to_dict(self.dsn).get("dbname") or "?"
        plan = [_Held(self.dsn, 0, f"database {db}", self.app_name)]
        if self.client_id:
            cross = _maintenance_dsn(self.dsn)
            try:
                psycopg.connect(cross, connect_timeout=5).close()
            except psycopg.Error as exc:
                logger.warning("maintenance database not reachable (%s): the Dhan client-id "
                               "lock is taken in the engine's database only", type(exc).__name__)
                cross = self.dsn
            plan.append(_Held(cross, _key(self.client_id),
                              f"Dhan client id {self.client_id}", self.app_name))
        return plan

    def acquire(self) -> InstanceLock:
        """Take every lock or none.

        Raises:
            InstanceLockHeld: another engine holds one; the message says which and who.
        """
        for held in self._plan():
            if not held.try_take():
                who = held.holder()
                self.release()
                raise InstanceLockHeld(
                    f"another engine is already running for {held.what}: the instance lock is "
                    f"held by {who}. Stop that engine first (one engine per database and per "
                    "Dhan client id)")
            self._held.append(held)
        logger.info("instance lock taken: %s", ", ".join(h.what for h in self._held))
        self._thread = threading.Thread(target=self._keep, name="instance-lock", daemon=True)
        self._thread.start()
        return self

    def _keep(self) -> None:
        while not self._stop.wait(self.keep_alive_s):
            for held in self._held:
                if held.alive():
                    continue
                held.release()
                try:
                    if held.try_take():
                        logger.warning("instance lock for %s taken again after its connection "
                                       "was lost", held.what)
                    else:
                        logger.critical("INSTANCE LOCK LOST for %s: another engine holds it "
                                        "now (%s); stop one of them", held.what, held.holder())
                except psycopg.Error as exc:
                    logger.warning("instance lock for %s not re-taken yet (%s)", held.what,
                                   redact(str(exc))[:200])

    def release(self) -> None:
        self._stop.set()
        for held in self._held:
            held.release()
        self._held = []

    def describe(self) -> dict[str, Any]:
        return {"held": [h.what for h in self._held], "application_name": self.app_name}


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - exercised by subprocess
    """``python -m engine.instance_lock DSN [CLIENT_ID]``: take the lock, report, release."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        lock = InstanceLock(args[0], args[1] if len(args) > 1 else None).acquire()
    except InstanceLockHeld as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_LOCKED
    print(f"lock free: {lock.describe()}")
    lock.release()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
