"""Turn web commands (engine_commands rows) into actor messages.

Each command is handed to the actor that owns the state it changes, by ``tell``; the result
written back says what was sent. Problems the operator can fix (an unknown trade, a stage
change without confirmation or for a strategy the engine does not have) raise CommandError,
which the bus records as the row's error. The web checks the same rules before it queues a
command (:func:`strategy_problem`, :func:`task_problem`); the checks here catch a row queued
another way, or one that stopped making sense while it waited.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from engine.bus.commands import CommandError, CommandRow
from engine.config import DRY_RUN_STRATEGIES
from engine.messages.commands import (
    CLOSE_MODES,
    ClosePosition,
    PauseEntries,
    ResetEscalation,
    ResolveOrder,
    ResumeEntries,
    RunBacktest,
    RunGrid,
    SetGoLiveStage,
)

if TYPE_CHECKING:
    from engine.app import Engine

STAGES = ("paper", "shadow", "live", "disabled")
#: Strategies that have a go-live stage: the ones the engine seeds into go_live_state.
GO_LIVE_STRATEGIES: tuple[str, ...] = DRY_RUN_STRATEGIES
#: Tasks rerun_task can run: ai_market (engine/ai, issue 19; needs the LLM port).
RERUN_TASKS: tuple[str, ...] = ("ai_market",)


def strategy_problem(strategy: object) -> str | None:
    """Why ``strategy`` cannot get a go-live stage, or None."""
    if strategy in GO_LIVE_STRATEGIES:
        return None
    return (f"unknown strategy {strategy!r}; the engine has "
            f"{', '.join(GO_LIVE_STRATEGIES)}")


def task_problem(task: object) -> str | None:
    """Why rerun_task cannot run ``task``, or None."""
    if task in RERUN_TASKS:
        from engine.ai.wiring import task_unavailable  # ai_market: None once LLM_* are set

        return task_unavailable(task)
    runs = ", ".join(RERUN_TASKS) if RERUN_TASKS else "no task yet"
    return f"{task!r} is not a task this engine runs (it runs {runs})"


class Dispatcher:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _send(self, role: str, cls: type, **fields: Any) -> None:
        e = self._engine
        msg = cls(ts=e.clock.now(), message_id=e.ids.next_id("bus"), **fields)
        if not e.directory.send(role, msg, sender="bus"):
            raise CommandError(f"the {role} actor is not running; try again shortly")

    def dispatch(self, cmd: CommandRow) -> dict[str, Any]:
        p, who = cmd.payload, cmd.requested_by
        match cmd.kind:
            case "close_trade":
                return self._close_trade(p, who)
            case "pause_entries":
                self._send("risk", PauseEntries, reason=str(p["reason"]), source=who)
                return {"sent": "PauseEntries"}
            case "resume_entries":
                self._send("risk", ResumeEntries, reason=f"resumed by {who}", source=who)
                if self._engine.supervisor is not None:
                    self._engine.supervisor.tell(ResetEscalation(
                        ts=self._engine.clock.now(), message_id=self._engine.ids.next_id("bus"),
                        reason=f"resumed by {who}"))
                return {"sent": "ResumeEntries"}
            case "set_go_live_stage":
                if p.get("confirm") is not True:
                    raise CommandError("confirm: must be true to change a go-live stage")
                if p["stage"] not in STAGES:
                    raise CommandError(f"stage: expected one of {', '.join(STAGES)}")
                problem = strategy_problem(p["strategy"])
                if problem is not None:
                    raise CommandError(f"strategy: {problem}")
                self._send("executor", SetGoLiveStage, strategy=str(p["strategy"]),
                           stage=str(p["stage"]), reason=who)
                return {"sent": "SetGoLiveStage"}
            case "run_backtest":
                row = self._row("backtest_runs", "run_id", p["run_id"])
                self._send("backtest", RunBacktest, strategy=row["strategy"],
                           start=row["start_date"], end=row["end_date"],
                           params=dict(row["config_snapshot"] or {}), run_id=row["run_id"])
                return {"sent": "RunBacktest", "run_id": row["run_id"]}
            case "run_grid":
                row = self._row("backtest_grid_jobs", "job_id", p["job_id"])
                space = dict(row["param_space"] or {})
                options = space.pop("_options", {})  # data, fill model, ranking (the API's)
                grid = _expand(space)
                self._send("backtest", RunGrid, strategy=row["strategy"], start=row["start_date"],
                           end=row["end_date"], grid=tuple(grid), options=options,
                           job_id=row["job_id"])
                return {"sent": "RunGrid", "job_id": row["job_id"], "combinations": len(grid)}
            case "resolve_order":
                return self._resolve_order(p, who)
            case "kill_switch":
                return self._kill_switch(p, who)
            case "rerun_task":
                if task_problem(p["task"]) is None:  # the AI actor runs it (engine/ai)
                    from engine.ai.wiring import rerun

                    return rerun(self._send, str(p["task"]), who)
                problem = task_problem(p["task"]) or f"{p['task']!r} has no runner here"
                raise CommandError(f"task: {problem}")
        raise CommandError(f"kind: {cmd.kind!r} is not handled by this engine")

    def _close_trade(self, p: dict[str, Any], who: str) -> dict[str, Any]:
        """Close an open trade: ``mode`` ``send`` (default; for a trade on hold only its share
        of what the broker holds is sent) or ``record_from_broker`` (nothing sent: recorded
        closed at the broker's trade-book prices; needs ``confirm: true``, live trades only)."""
        tag = str(p["tag"])
        mode = p.get("mode", "send")
        if mode is None:
            mode = "send"
        if mode not in CLOSE_MODES:
            raise CommandError(f"mode: expected one of {', '.join(CLOSE_MODES)}, got {mode!r}")
        confirm = p.get("confirm")
        if confirm is not None and not isinstance(confirm, bool):
            raise CommandError("confirm: expected true or false")
        if mode == "record_from_broker" and confirm is not True:
            raise CommandError("confirm: must be true to record a trade closed at the broker's "
                               "trade-book prices (no order is sent)")
        with self._engine.pool.connection() as conn:
            row = conn.execute("SELECT mode FROM open_trades WHERE tag = %s", (tag,)).fetchone()
        if row is None:
            raise CommandError(f"tag: no open trade {tag!r}")
        if mode == "record_from_broker" and row["mode"] != "live":
            raise CommandError(f"mode: record_from_broker is for live trades; {tag} is a "
                               f"{row['mode']} trade (close it with mode send)")
        self._send("executor", ClosePosition, tag=tag, reason=f"manual close by {who}", mode=mode)
        return {"sent": "ClosePosition", "tag": tag, "mode": mode}

    def _kill_switch(self, p: dict[str, Any], who: str) -> dict[str, Any]:
        """Pause entries, then arm Dhan's kill switch (``engine.ops.backstops``): at once if
        the account is flat, else as soon as a later check finds it flat. The outcome reaches
        the operator as an alert; the paper engine has no broker-side switch."""
        if p.get("confirm") is not True:
            raise CommandError("confirm: must be true to activate Dhan's kill switch (it stops "
                               "every order for the rest of the day)")
        live_ops = self._engine.services.get("live_ops")
        if live_ops is None:
            raise CommandError("kill switch: this engine trades on the paper broker "
                               "(BROKER=paper); Dhan's kill switch exists only with "
                               "BROKER=dhan. Use pause to stop new entries")
        reason = str(p["reason"])[:300] or "operator"
        self._send("risk", PauseEntries, reason=f"kill switch requested by {who}: {reason}",
                   source=who)
        live_ops.arm_kill_switch(f"requested by {who}: {reason}")
        return {"sent": "PauseEntries", "kill_switch": "arming (the outcome comes as an alert)"}

    def _resolve_order(self, p: dict[str, Any], who: str) -> dict[str, Any]:
        """The operator's decision on an unresolved order (see ``engine.execution.intents``):
        checked here against ``order_intents``, carried out by the executor."""
        if p.get("confirm") is not True:
            raise CommandError("confirm: must be true to resolve an order by hand")
        cid, action = str(p["correlation_id"]), str(p["action"])
        if action not in ("filled", "not_filled", "flatten"):
            raise CommandError("action: expected filled, not_filled or flatten")
        with self._engine.pool.connection() as conn:
            row = conn.execute("SELECT state, quantity, settled_at, sliced FROM order_intents"
                               " WHERE correlation_id = %s", (cid,)).fetchone()
        if row is None or row["sliced"]:
            raise CommandError(f"correlation_id: no order intent {cid!r}")
        if row["settled_at"] is not None:
            raise CommandError(f"correlation_id: {cid} is already settled")
        if action != "flatten" and row["state"] in ("TRADED", "REJECTED", "CANCELLED",
                                                    "EXPIRED"):
            raise CommandError(f"correlation_id: {cid} is {row['state']}, not unresolved")
        price = quantity = None
        try:
            if p.get("price") is not None:
                price = Decimal(str(p["price"]))
            if p.get("quantity") is not None:
                quantity = int(p["quantity"])
        except (InvalidOperation, TypeError, ValueError):
            raise CommandError("price/quantity: expected a decimal price and an integer "
                               "quantity") from None
        if action == "filled" and (price is None or price <= 0):
            raise CommandError("price: 'filled' needs the price the broker filled at")
        if quantity is not None and quantity <= 0:
            raise CommandError("quantity: expected a positive number of units")
        if action == "filled" and quantity is not None and quantity > row["quantity"]:
            raise CommandError(f"quantity: the order is for {row['quantity']} units")
        if action == "flatten" and quantity is None:
            raise CommandError("quantity: 'flatten' needs the quantity to flatten")
        self._send("executor", ResolveOrder, correlation_id=cid, action=action, price=price,
                   quantity=quantity, by=who)
        return {"sent": "ResolveOrder", "correlation_id": cid, "action": action}

    def _row(self, table: str, key: str, value: Any) -> dict[str, Any]:
        with self._engine.pool.connection() as conn:
            row = conn.execute(f"SELECT * FROM {table} WHERE {key} = %s", (value,)).fetchone()
        if row is None:
            raise CommandError(f"{key}: no {table} row {value!r}")
        return row


def _expand(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product of a param_space {KEY: [values...]} (or an explicit {'grid': [...]})."""
    if "grid" in space:
        return [dict(g) for g in space["grid"]]
    combos: list[dict[str, Any]] = [{}]
    for key, values in space.items():
        values = values if isinstance(values, list) else [values]
        combos = [c | {key: v} for c in combos for v in values]
    return combos
