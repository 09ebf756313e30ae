"""Health (no session), log tail and process stats."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import current_app, jsonify

from engine.bus.events import HEARTBEAT_KEY
from engine.logsetup import redact
from engine.timeutil import IST, now_ist
from web.api import bp, read, services
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


RESUME = "resume entries on the Risk page (POST /api/risk/resume)"


def pause_action(reason: str) -> tuple[str, str]:
    """(who paused, what the operator must do) for the global pause ``reason``.

    The RiskActor stores it as "<source>: <why>" (engine.actors.risk); the text given here
    names no more than the source and, for the supervisor, the failing actor: /api/health is
    public, the full reason is on the Risk page."""
    source, _, why = reason.partition(": ")
    if source == "supervisor":
        actor = why.split(" ", 1)[0] or "an"
        return source, (f"New entries are paused by the supervisor after repeated failures of "
                        f"the {actor} actor; they stay paused until an operator acts. Check the "
                        f"engine log (Logs page or /api/logs/tail) for why {actor} failed, "
                        f"then {RESUME}.")
    if source == "executor":
        return source, ("New entries are paused: a live trade is on hold or has unhedged legs. "
                        "Check the position at Dhan, close the trade from the dashboard (or the "
                        f"legs at the broker), then {RESUME}.")
    if source == "token":
        return source, ("New entries are paused: the Dhan access token is missing or expired. "
                        "Check the token refresher and the DHAN_* settings, then "
                        f"{RESUME}.")
    return source, f"New entries were paused by {source or 'an operator'}; {RESUME} when ready."


#: Everything /api/health reads, in one statement (one round trip on the request's read
#: connection): the heartbeat and token rows, the global pause, the paused stages.
HEALTH_SQL = ("SELECT 'state' AS kind, key, value, NULL::text AS pause_reason,"
              " NULL::timestamptz AS paused_until FROM runtime_state WHERE key IN (%s, 'dhan_token')"
              " UNION ALL SELECT 'global', NULL, NULL, pause_reason, NULL"
              " FROM risk_envelope_state WHERE id = 1"
              " UNION ALL SELECT 'stage', stage, NULL, pause_reason, paused_until"
              " FROM risk_envelope_stages WHERE pause_reason IS NOT NULL")


def _entries(pause_reason: str | None, stages: list[dict[str, Any]],
             now: datetime) -> dict[str, Any]:
    """Whether new entries are paused, by whom, and what the operator must do (``stages``:
    rows of paused stages; those whose pause ended before ``now`` do not count)."""
    stages = sorted((r for r in stages if r["paused_until"] is None or r["paused_until"] > now),
                    key=lambda r: r["stage"])
    paused_by, actions = [], []
    if pause_reason:
        source, action = pause_action(pause_reason)
        paused_by.append(source)
        actions.append(action)
    for row in stages:
        paused_by.append(f"risk ({row['stage']})")
        until = row["paused_until"]
        lift = (f"they resume by themselves at {until.astimezone(now.tzinfo):%Y-%m-%d %H:%M}"
                f" IST, or {RESUME} to lift the pause earlier" if until else
                f"{RESUME} to lift the pause")
        actions.append(f"{row['stage'].capitalize()} entries are paused by the risk envelope "
                       f"(a loss cap or the loss streak); {lift}.")
    return {"entries_paused": bool(paused_by), "paused_by": paused_by,
            "action_needed": " ".join(actions) or None}


#: a heartbeat older than this no longer tells the engine's time
BEAT_FRESH = timedelta(minutes=5)


def clock_from_beat(beat: dict[str, Any]) -> tuple[datetime, str]:
    """The engine's clock and its kind ("simulated" or "real") from a heartbeat value
    written less than BEAT_FRESH ago; else IST now and "real"."""
    wall = now_ist()
    written = _parse_ts(beat.get("ts"))
    moment = _parse_ts(beat.get("engine_time"))
    if written is None or moment is None or wall - written >= BEAT_FRESH:
        return wall, "real"
    return moment.astimezone(IST), str(beat.get("clock") or "real")


def engine_clock() -> tuple[datetime, str]:
    """The engine's clock (the one way every page and endpoint tells it): from the heartbeat
    in the health rows, which may be up to WEB_HEALTH_CACHE_S old (the heartbeat itself is
    written every monitor tick, so a second more changes nothing a trader can see)."""
    state = {r["key"]: r["value"] for r in _health_rows() if r["kind"] == "state"}
    return clock_from_beat(state.get(HEARTBEAT_KEY) or {})


def _health_rows() -> list[dict[str, Any]]:
    """HEALTH_SQL's rows, at most WEB_HEALTH_CACHE_S old: a probe polled by Docker, nginx
    and every open dashboard tab may see the heartbeat, token and pauses as they were up
    to that long ago (the heartbeat's own period is longer). A failed read is never
    cached."""
    svc = services()
    ttl = float(current_app.config.get("HEALTH_CACHE_S", 0))
    cached = svc.health_rows
    if ttl > 0 and cached is not None and time.monotonic() - cached[0] < ttl:
        return cached[1]
    found = read(lambda conn: conn.execute(HEALTH_SQL, (HEARTBEAT_KEY,)).fetchall(), timeout=3)
    if ttl > 0:
        svc.health_rows = (time.monotonic(), found)
    return found


@bp.get("/health")
def health() -> Any:
    """Database reachability, engine heartbeat age, Dhan token expiry (never the token), and
    whether entries are paused with the action an operator must take (``action_needed``)."""
    try:
        found = _health_rows()
        state = {r["key"]: r["value"] for r in found if r["kind"] == "state"}
        stages = [{"stage": r["key"], "pause_reason": r["pause_reason"],
                   "paused_until": r["paused_until"]} for r in found if r["kind"] == "stage"]
        paused = next((r["pause_reason"] for r in found if r["kind"] == "global"), None)
        entries = _entries(paused, stages, clock_from_beat(state.get(HEARTBEAT_KEY) or {})[0])
    except Exception:
        return jsonify({"database": "error", "engine_heartbeat_age_s": None, "engine_time": None,
                        "clock": "real",
                        "token_expires_at": None, "status": "error", "entries_paused": None,
                        "paused_by": [], "action_needed": None}), 503
    beat = _parse_ts((state.get(HEARTBEAT_KEY) or {}).get("ts"))
    age = round((now_ist() - beat).total_seconds(), 1) if beat else None
    token = state.get("dhan_token") or {}
    expires = next((token.get(k) for k in ("expires_at", "expiry", "token_expiry")
                    if token.get(k)), None)
    status = "ok" if age is not None and age <= HEARTBEAT_STALE_S else "engine_down"
    heartbeat = state.get(HEARTBEAT_KEY) or {}
    engine_time = heartbeat.get("engine_time") if status == "ok" else None
    return jsonify({"database": "ok", "engine_heartbeat_age_s": age,
                    # the engine's clock (simulated or real) as of its last heartbeat: the
                    # dashboard's header clock and default date ranges follow it
                    "engine_time": engine_time,
                    "clock": heartbeat.get("clock", "real") if engine_time else "real",
                    "token_expires_at": expires, "status": status, **entries})


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
