"""Health (no session), log tail and process stats."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import jsonify

from engine.bus.events import HEARTBEAT_KEY
from engine.logsetup import redact
from engine.timeutil import now_ist
from web.api import bp, services
from web.validate import Int, Str, query

HEARTBEAT_STALE_S = 120.0
LOG_FILES = {"engine": "engine.log", "web": "web.log"}
MAX_TAIL_BYTES = 4 * 1024 * 1024


def _parse_ts(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


@bp.get("/health")
def health() -> Any:
    """Database reachability, engine heartbeat age and Dhan token expiry (never the token)."""
    try:
        with services().pool.connection(timeout=3) as conn:
            state = {r["key"]: r["value"] for r in conn.execute(
                "SELECT key, value FROM runtime_state WHERE key IN (%s, 'dhan_token')",
                (HEARTBEAT_KEY,)).fetchall()}
    except Exception:
        return jsonify({"database": "error", "engine_heartbeat_age_s": None,
                        "token_expires_at": None, "status": "error"}), 503
    beat = _parse_ts((state.get(HEARTBEAT_KEY) or {}).get("ts"))
    age = round((now_ist() - beat).total_seconds(), 1) if beat else None
    token = state.get("dhan_token") or {}
    expires = next((token.get(k) for k in ("expires_at", "expiry", "token_expiry")
                    if token.get(k)), None)
    status = "ok" if age is not None and age <= HEARTBEAT_STALE_S else "engine_down"
    return jsonify({"database": "ok", "engine_heartbeat_age_s": age,
                    "token_expires_at": expires, "status": status})


def tail_lines(path: Path, count: int, block: int = 64 * 1024) -> list[str]:
    """The last ``count`` lines of ``path``, reading backwards in blocks (bounded bytes)."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        position = fh.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count and len(data) < MAX_TAIL_BYTES:
            step = min(block, position)
            position -= step
            fh.seek(position)
            data = fh.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    if position > 0 and lines:
        lines = lines[1:]  # first line is probably partial
    return lines[-count:]


@bp.get("/logs/tail")
def logs_tail() -> Any:
    """The last lines of the engine (or web) log, secrets redacted."""
    values = query({"lines": Int(optional=True, default=200, minimum=1, maximum=2000),
                    "file": Str(optional=True, default="engine", choices=tuple(LOG_FILES))})
    svc = services()
    folder = svc.engine_log_dir if values["file"] == "engine" and svc.engine_log_dir else svc.log_dir
    path = folder / LOG_FILES[values["file"]]
    if not path.is_file():
        return jsonify({"file": path.name, "lines": [], "missing": True})
    return jsonify({"file": path.name, "lines": [redact(x) for x in tail_lines(path, values["lines"])],
                    "missing": False})


@bp.get("/system")
def system() -> Any:
    """This web process: websocket clients, events relayed, pool statistics."""
    svc = services()
    stats = svc.pool.get_stats()
    return jsonify({"pid": os.getpid(), "hub": svc.hub.stats(),
                    "pool": {k: stats.get(k) for k in ("pool_size", "pool_available",
                                                       "requests_waiting", "requests_num")},
                    "bridge": svc.actor is not None and svc.actor.is_alive()})
