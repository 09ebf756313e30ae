"""Reading and writing runtime settings (bot_settings + append-only settings_audit).

Reads: the override from bot_settings, else the code default, coerced to the knob's type,
cached per process for five minutes. Writes: one transaction that updates bot_settings,
appends settings_audit and NOTIFYs ``bot_settings``; every process listening drops its cache
at once. A bad key or value is refused before anything is written.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from engine.settings.registry import all_knobs, knob
from engine.store.notify import Listener, notify
from engine.store.tx import transaction

logger = logging.getLogger(__name__)

CHANNEL = "bot_settings"
TTL_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class SettingView:
    key: str
    value: Any
    default: Any
    overridden: bool
    updated_by: str | None
    updated_at: datetime | None
    description: str
    allowed: str


@dataclass(frozen=True, slots=True)
class Change:
    key: str
    old_value: str | None
    new_value: str | None
    updated_by: str


class Settings:
    """Per-process settings reader/writer with a TTL cache busted by NOTIFY."""

    def __init__(self, pool: ConnectionPool, *, ttl: float = TTL_SECONDS) -> None:
        self._pool = pool
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, str] | None = None
        self._loaded_at = 0.0
        self._listener: Listener | None = None

    # ------------------------------------------------------------ cache
    def listen(self, dsn: str) -> Settings:
        """Start a LISTEN thread so writes from any process bust this cache immediately."""
        self._listener = Listener(dsn, [CHANNEL], lambda _c, _p: self.invalidate(),
                                  on_reconnect=self.invalidate, name="settings-listener").start()
        return self

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def invalidate(self) -> None:
        with self._lock:
            self._cache = None

    def _overrides(self) -> dict[str, str]:
        with self._lock:
            fresh = self._cache is not None and time.monotonic() - self._loaded_at < self._ttl
            if fresh:
                return self._cache  # type: ignore[return-value]
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT key, value FROM bot_settings").fetchall()
        cache = {r["key"]: r["value"] for r in rows}
        with self._lock:
            self._cache, self._loaded_at = cache, time.monotonic()
        return cache

    # ------------------------------------------------------------ reads
    def get(self, key: str) -> Any:
        """The effective value of ``key`` (override or default), typed."""
        k = knob(key)
        raw = self._overrides().get(key)
        if raw is None:
            return k.default
        try:
            return k.coerce(raw)
        except ValueError:
            logger.error("stored value for %s is no longer valid; using the default %s",
                         key, k.render(k.default))
            return k.default

    def snapshot(self, keys: list[str] | None = None) -> dict[str, Any]:
        """Effective values of many keys at once (for strategies' explicit parameters)."""
        return {k.key: self.get(k.key) for k in all_knobs() if keys is None or k.key in keys}

    def list(self) -> list[SettingView]:
        with self._pool.connection() as conn:
            rows = {r["key"]: r for r in conn.execute("SELECT * FROM bot_settings").fetchall()}
        views = []
        for k in all_knobs():
            row = rows.get(k.key)
            value = k.default
            if row is not None:
                try:
                    value = k.coerce(row["value"])
                except ValueError:
                    value = k.default
            views.append(SettingView(
                key=k.key, value=value, default=k.default, overridden=row is not None,
                updated_by=row["updated_by"] if row else None,
                updated_at=row["updated_at"] if row else None,
                description=k.description, allowed=k.allowed()))
        return views

    def history(self, key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if key is not None:
            knob(key)
        with self._pool.connection() as conn:
            return conn.execute(
                "SELECT id, key, old_value, new_value, updated_by, updated_at FROM settings_audit"
                " WHERE %(key)s::text IS NULL OR key = %(key)s ORDER BY id DESC LIMIT %(limit)s",
                {"key": key, "limit": limit}).fetchall()

    # ------------------------------------------------------------ writes
    def set(self, key: str, raw_value: Any, *, updated_by: str) -> Change:
        """Override ``key``; refuses an unknown key or a bad value before writing anything."""
        k = knob(key)
        if not updated_by or not str(updated_by).strip():
            raise ValueError("updated_by is required: say who changed the setting")
        new_text = k.render(k.coerce(str(raw_value)))
        with transaction(self._pool) as conn:
            row = conn.execute("SELECT value FROM bot_settings WHERE key = %s FOR UPDATE",
                               (key,)).fetchone()
            old_text = row["value"] if row else None
            conn.execute(
                "INSERT INTO bot_settings (key, value, updated_by, updated_at)"
                " VALUES (%s, %s, %s, now()) ON CONFLICT (key) DO UPDATE"
                " SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by,"
                " updated_at = EXCLUDED.updated_at",
                (key, new_text, updated_by))
            self._audit(conn, key, old_text, new_text, updated_by)
        self.invalidate()
        logger.info("setting %s changed from %s to %s by %s", key, old_text, new_text, updated_by)
        return Change(key, old_text, new_text, updated_by)

    def reset(self, key: str, *, updated_by: str) -> Change:
        """Remove the override so the code default applies again."""
        knob(key)
        with transaction(self._pool) as conn:
            row = conn.execute("DELETE FROM bot_settings WHERE key = %s RETURNING value",
                               (key,)).fetchone()
            old_text = row["value"] if row else None
            if row is not None:
                self._audit(conn, key, old_text, None, updated_by)
        self.invalidate()
        return Change(key, old_text, None, updated_by)

    @staticmethod
    def _audit(conn, key: str, old: str | None, new: str | None, who: str) -> None:
        conn.execute(
            "INSERT INTO settings_audit (key, old_value, new_value, updated_by)"
            " VALUES (%s, %s, %s, %s)", (key, old, new, who))
        notify(conn, CHANNEL, {"key": key})
