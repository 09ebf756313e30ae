"""The engine's in-process metrics, saved for the dashboard's ``/metrics`` (Prometheus text).

The engine and the dashboard are separate processes, so the engine keeps its counters here
(one registry per process) and saves a snapshot with every heartbeat in ``runtime_state``
``engine_metrics``; ``web/api/metrics.py`` renders it together with what the database knows
(open positions, MTM, orders by outcome, token expiry).

* ``scan_cycle_seconds``: a histogram of how long the scanner took per ``ScanTick``;
* ``actor_restarts_total{actor}``: supervisor restarts (counted where ``ActorRestarted`` is
  delivered);
* ``broker_errors_total{code}``: errors Dhan answered (``DH-904``, ``813``, ...; ``transport``
  for timeouts and lost connections), counted by the Dhan transport.

Labels are fixed vocabularies (actor role names, error codes): no token, client id or
message text ever becomes a label.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from psycopg.types.json import Jsonb

logger = logging.getLogger(__name__)

__all__ = ["BUCKETS", "REGISTRY", "MetricsRegistry", "instrumented", "save_metrics"]

METRICS_KEY = "engine_metrics"
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LABEL_OK = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")


def safe_label(value: Any) -> str:
    """A label value from a fixed vocabulary; anything else becomes ``other``."""
    text = str(value)
    return text if _LABEL_OK.match(text) else "other"


class MetricsRegistry:
    """Counters and the scan-cycle histogram of this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[str, float]] = {}
        self._hist_counts = [0] * len(BUCKETS)
        self._hist_sum = 0.0
        self._hist_n = 0

    def inc(self, name: str, label: str, by: float = 1.0) -> None:
        with self._lock:
            series = self._counters.setdefault(name, {})
            key = safe_label(label)
            series[key] = series.get(key, 0.0) + by

    def observe_scan(self, seconds: float) -> None:
        with self._lock:
            self._hist_sum += seconds
            self._hist_n += 1
            for i, edge in enumerate(BUCKETS):
                if seconds <= edge:
                    self._hist_counts[i] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counters": {k: dict(v) for k, v in self._counters.items()},
                    "scan_cycle": {"buckets": list(BUCKETS), "counts": list(self._hist_counts),
                                   "sum": self._hist_sum, "count": self._hist_n}}

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._hist_counts = [0] * len(BUCKETS)
            self._hist_sum, self._hist_n = 0.0, 0


REGISTRY = MetricsRegistry()


def record_broker_error(code: str | None) -> None:
    """Count one error answered by (or on the way to) Dhan."""
    REGISTRY.inc("broker_errors_total", code or "transport")


def save_metrics(pool: Any) -> None:
    """Save this process's snapshot in ``runtime_state`` (never raises: it rides on the
    heartbeat)."""
    try:
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO runtime_state (key, value, updated_at) VALUES (%s, %s, now())"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                (METRICS_KEY, Jsonb(REGISTRY.snapshot())))
    except Exception as exc:
        logger.warning("engine metrics not saved (%s)", type(exc).__name__)


def instrumented(role: str, cls: type) -> type:
    """``cls`` with its ``handle`` measured: scan cycles (``ScanTick``) are timed and
    ``ActorRestarted`` deliveries counted. Same name, same behaviour otherwise."""
    import time

    from engine.messages.commands import ScanTick
    from engine.messages.events import ActorRestarted

    base_handle = cls.handle

    def handle(self: Any, message: Any) -> Any:
        if isinstance(message, ActorRestarted):
            REGISTRY.inc("actor_restarts_total", message.name)
        if not isinstance(message, ScanTick):
            return base_handle(self, message)
        began = time.perf_counter()
        try:
            return base_handle(self, message)
        finally:
            REGISTRY.observe_scan(time.perf_counter() - began)

    return type(cls.__name__, (cls,), {"handle": handle, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__,
                                       "metrics_role": role})
