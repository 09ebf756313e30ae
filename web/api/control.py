"""Endpoints that change something: risk pause/resume, go-live stage, generic commands, settings.

Trading state is never written from here: each action is a row in ``engine_commands`` the
engine's CommandBus executes (DESIGN.md §1). Settings go through engine.settings (audited).
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from engine.bus.commands import enqueue_command
from engine.bus.dispatch import strategy_problem, task_problem
from engine.settings import SettingError, knob
from engine.store.tx import transaction
from web.api import bp, error, one, rows, runtime_settings, services
from web.validate import (
    BadRequest,
    Bool,
    Int,
    Obj,
    Scalar,
    Str,
    check,
    clean_text,
    query,
    request_json,
)

STAGES = ("paper", "shadow", "live", "disabled")
GENERIC_KINDS = ("close_trade", "rerun_task")
#: close_trade modes: send the orders that close what the broker still holds for the trade
#: (default), or record it closed at the broker's trade-book prices without sending any order.
CLOSE_MODES = ("send", "record_from_broker")
IDEMPOTENCY = Str(optional=True, max_len=100)
DASHBOARD = "dashboard"


def submit(kind: str, payload: dict[str, Any], idempotency_key: str | None = None) -> int:
    with transaction(services().pool) as conn:
        return enqueue_command(conn, kind, payload, requested_by=DASHBOARD,
                               idempotency_key=idempotency_key)


def accepted(command_id: int, **extra: Any) -> Any:
    return jsonify({"command_id": command_id, "status": "pending", **extra}), 202


def close_trade_payload(tag: str, mode: str | None, confirm: bool | None,
                        prefix: str = "") -> dict[str, Any]:
    """The close_trade payload for an open trade, or BadRequest naming ``prefix`` + field:
    the tag must be an open trade, and record_from_broker needs ``confirm: true``."""
    clean_text(prefix + "tag", tag)
    if not 1 <= len(tag) <= 100:
        raise BadRequest(prefix + "tag", "expected 1 to 100 characters")
    if one("SELECT 1 AS x FROM open_trades WHERE tag = %s", (tag,)) is None:
        closed = one("SELECT 1 AS x FROM closed_trades WHERE tag = %s LIMIT 1", (tag,))
        raise BadRequest(prefix + "tag", f"trade {tag!r} is already closed" if closed else
                         f"no open trade with tag {tag!r}")
    if mode == "record_from_broker" and confirm is not True:
        raise BadRequest(prefix + "confirm", "must be true to record the trade closed at the "
                                             "broker's trade-book prices (no order is sent)")
    payload: dict[str, Any] = {"tag": tag}
    if mode is not None:
        payload["mode"] = mode
    if confirm is True:
        payload["confirm"] = True
    return payload


# ---------------------------------------------------------------- risk
@bp.get("/risk")
def risk() -> Any:
    from web.api.system import pause_action

    state = one("SELECT * FROM risk_envelope_state WHERE id = 1") or {}
    paused = bool(state.get("pause_reason"))
    return jsonify({"state": state, "paused": paused,
                    "action_needed": pause_action(state["pause_reason"])[1] if paused else None})


@bp.post("/risk/pause")
def risk_pause() -> Any:
    data = check(request_json(), {"reason": Str(max_len=300), "idempotency_key": IDEMPOTENCY})
    return accepted(submit("pause_entries", {"reason": data["reason"]}, data["idempotency_key"]))


@bp.post("/risk/resume")
def risk_resume() -> Any:
    data = check(request_json(), {"idempotency_key": IDEMPOTENCY})
    return accepted(submit("resume_entries", {}, data["idempotency_key"]))


@bp.post("/risk/kill-switch")
def risk_kill_switch() -> Any:
    """Pause entries and arm Dhan's kill switch once the account is flat (``BROKER=dhan``;
    the paper engine refuses the command). ``confirm: true`` is required."""
    data = check(request_json(), {"reason": Str(max_len=300), "confirm": Bool(),
                                  "idempotency_key": IDEMPOTENCY})
    if data["confirm"] is not True:
        raise BadRequest("confirm", "must be true to activate Dhan's kill switch (it stops "
                                    "every order for the rest of the day)")
    return accepted(submit("kill_switch", {"reason": data["reason"], "confirm": True},
                           data["idempotency_key"]))


# ---------------------------------------------------------------- go-live
@bp.get("/go-live")
def go_live() -> Any:
    return jsonify({"strategies": rows("SELECT * FROM go_live_state ORDER BY strategy")})


@bp.post("/go-live/<strategy>")
def go_live_set(strategy: str) -> Any:
    """Ask the engine to move a strategy to a stage; ``confirm: true`` is required."""
    if not strategy.replace("_", "").isalnum() or len(strategy) > 40:
        raise BadRequest("strategy", "expected letters, digits and _ (at most 40)")
    problem = strategy_problem(strategy)
    if problem is not None:
        raise BadRequest("strategy", problem)
    data = check(request_json(), {"stage": Str(choices=STAGES), "confirm": Bool(),
                                  "idempotency_key": IDEMPOTENCY})
    if data["confirm"] is not True:
        raise BadRequest("confirm", "must be true to change a go-live stage")
    command_id = submit("set_go_live_stage", {"strategy": strategy, "stage": data["stage"],
                                              "confirm": True}, data["idempotency_key"])
    return accepted(command_id)


# ---------------------------------------------------------------- generic commands
@bp.post("/commands")
def command_create() -> Any:
    """Queue close_trade {tag, mode?, confirm?} or rerun_task {task}."""
    data = check(request_json(), {"kind": Str(choices=GENERIC_KINDS), "payload": Obj(),
                                  "idempotency_key": IDEMPOTENCY})
    spec = {"close_trade": {"tag": Str(max_len=100),
                            "mode": Str(optional=True, choices=CLOSE_MODES),
                            "confirm": Bool(optional=True)},
            "rerun_task": {"task": Str(max_len=60, pattern=r"[a-z][a-z0-9_]*")}}[data["kind"]]
    try:
        payload = check(data["payload"], spec)
    except BadRequest as exc:
        raise BadRequest(f"payload.{exc.field}", exc.message) from None
    if data["kind"] == "close_trade":
        payload = close_trade_payload(payload["tag"], payload["mode"], payload["confirm"],
                                      prefix="payload.")
    if data["kind"] == "rerun_task" and (problem := task_problem(payload["task"])) is not None:
        raise BadRequest("payload.task", problem)
    return accepted(submit(data["kind"], payload, data["idempotency_key"]))


@bp.get("/commands")
def command_list() -> Any:
    values = query({"limit": Int(optional=True, default=50, minimum=1, maximum=500)})
    return jsonify({"commands": rows("SELECT * FROM engine_commands ORDER BY id DESC LIMIT %s",
                                     (values["limit"],))})


@bp.get("/commands/<int:command_id>")
def command_get(command_id: int) -> Any:
    row = one("SELECT * FROM engine_commands WHERE id = %s", (command_id,))
    if row is None:
        return error(404, f"no command {command_id}")
    return jsonify(row)


# ---------------------------------------------------------------- settings
def _known(key: str) -> None:
    try:
        knob(key)
    except SettingError as exc:
        from werkzeug.exceptions import NotFound

        raise NotFound(str(exc)) from None


@bp.get("/settings")
def settings_list() -> Any:
    from dataclasses import asdict

    return jsonify({"settings": [asdict(v) for v in runtime_settings().list()]})


@bp.put("/settings/<key>")
def settings_set(key: str) -> Any:
    _known(key)
    data = check(request_json(), {"value": Scalar()})
    raw = data["value"]
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    try:
        change = runtime_settings().set(key, str(raw), updated_by=DASHBOARD)
    except SettingError as exc:
        raise BadRequest("value", str(exc)) from None
    return jsonify({"key": change.key, "old_value": change.old_value,
                    "new_value": change.new_value, "updated_by": change.updated_by})


@bp.delete("/settings/<key>")
def settings_reset(key: str) -> Any:
    _known(key)
    change = runtime_settings().reset(key, updated_by=DASHBOARD)
    return jsonify({"key": change.key, "old_value": change.old_value, "new_value": None,
                    "updated_by": change.updated_by})


@bp.get("/settings/<key>/history")
def settings_history(key: str) -> Any:
    _known(key)
    values = query({"limit": Int(optional=True, default=100, minimum=1, maximum=1000)})
    return jsonify({"key": key, "history": runtime_settings().history(key, values["limit"])})
