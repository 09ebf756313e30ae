"""Supervisor: restarts, intensity, escalation, stale reports, stuck children, ordering."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pykka
import pytest

from engine.actors.base import ActorContext
from engine.actors.directory import Directory
from engine.actors.supervisor import EXIT_CODE, ChildSpec, Supervisor
from engine.clock import ManualClock
from engine.messages.base import Event, SeededIds, new
from engine.messages.commands import CheckChildren, GetStatus, Ping, ResetEscalation
from engine.messages.events import ActorEscalated, ActorRestarted, ChildFailed
from tests.actors.helpers import Block, Boom, Journal, Worker, eventually, ist

pytestmark = pytest.mark.usefixtures("_stop_all")

FAST = {"backoff": (0.01, 0.05)}


def make_ctx() -> ActorContext:
    return ActorContext(
        clock=ManualClock(ist(2025, 1, 6, 9, 15)), directory=Directory(), ids=SeededIds("test")
    )


def worker_spec(ctx: ActorContext, name: str, journal: Journal, **policy: Any) -> ChildSpec:
    extra = policy.pop("actor_kwargs", {})
    return ChildSpec.for_actor(
        name, Worker, ctx, actor_kwargs={"journal": journal, **extra}, **{**FAST, **policy}
    )


class Calls:
    def __init__(self) -> None:
        self.halts = Journal()
        self.exits = Journal()

    def kwargs(self) -> dict[str, Any]:
        return {"halt_entries": self.halts.add, "exit_process": self.exits.add}


def start(ctx: ActorContext, specs: list[ChildSpec], **kwargs: Any) -> pykka.ActorRef[Any]:
    kwargs.setdefault("liveness_interval_s", None)
    kwargs.setdefault("exit_process", lambda code: None)
    sup = Supervisor.start(specs, directory=ctx.directory, clock=ctx.clock, ids=ctx.ids, **kwargs)
    assert sup.ask(Ping(), timeout=10) == "pong"  # answered once on_start started every child
    return sup


def with_observer(ctx: ActorContext, specs: list[ChildSpec]) -> Journal:
    seen = Journal()
    specs.insert(0, worker_spec(ctx, "observer", seen))
    ctx.directory.subscribe(Event, "observer")
    return seen


def boom(ctx: ActorContext, role: str) -> None:
    assert ctx.directory.send(role, new(Boom, ctx.clock), sender="test")


def test_supervisor_told_failure_restarts_child_with_new_ref() -> None:
    ctx, journal = make_ctx(), Journal()
    specs = [worker_spec(ctx, "w", journal)]
    seen = with_observer(ctx, specs)
    start(ctx, specs)
    first = ctx.directory.require("w")

    boom(ctx, "w")

    restarted = eventually(lambda: seen.of_type(ActorRestarted), what="ActorRestarted")
    second = ctx.directory.require("w")
    assert second is not first
    assert not first.is_alive()
    assert second.ask(Ping(), timeout=5) == "pong"
    assert (restarted[0].name, restarted[0].attempt, restarted[0].urn) == (
        "w", 1, second.actor_urn,
    )
    assert journal.items().count(("start", "w")) == 2


def test_supervisor_setup_failure_is_reported_and_restarted() -> None:
    ctx, journal = make_ctx(), Journal()
    specs = [worker_spec(ctx, "w", journal, actor_kwargs={"fail_setups": [2]})]
    seen = with_observer(ctx, specs)
    sup = start(ctx, specs)

    eventually(lambda: len(seen.of_type(ActorRestarted)) == 2, what="two restarts")
    eventually(lambda: ("start", "w") in journal.items(), what="successful setup")
    assert ctx.directory.require("w").ask(Ping(), timeout=5) == "pong"
    status = sup.ask(GetStatus(), timeout=5)
    assert status["children"]["w"]["restarts"] == 2
    assert status["level"] == 0


def test_supervisor_intensity_exceeded_halts_then_exits_on_continued_failure() -> None:
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    specs = [worker_spec(ctx, "w", journal, max_restarts=1, period_s=60)]
    seen = with_observer(ctx, specs)
    start(ctx, specs, monotonic=lambda: 100.0, **calls.kwargs())

    boom(ctx, "w")  # 1st failure: within intensity -> plain restart
    eventually(lambda: len(seen.of_type(ActorRestarted)) == 1, what="first restart")
    assert calls.halts.items() == []

    boom(ctx, "w")  # 2nd failure in the window: level 1, still restarted
    eventually(lambda: len(seen.of_type(ActorRestarted)) == 2, what="restart after level 1")
    assert len(calls.halts.items()) == 1
    assert "failed 2 times" in calls.halts.items()[0]
    assert calls.exits.items() == []

    boom(ctx, "w")  # failures continue: level 2 -> exit
    eventually(lambda: calls.exits.items() == [EXIT_CODE], what="exit_process(70)")
    eventually(lambda: [e.level for e in seen.of_type(ActorEscalated)] == [1, 2],
               what="ActorEscalated levels 1 and 2 observed")
    assert all(e.name == "w" for e in seen.of_type(ActorEscalated))


def test_supervisor_failures_outside_window_do_not_escalate() -> None:
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    now = [0.0]
    specs = [worker_spec(ctx, "w", journal, max_restarts=1, period_s=10)]
    seen = with_observer(ctx, specs)
    start(ctx, specs, monotonic=lambda: now[0], **calls.kwargs())

    for n in range(1, 4):
        now[0] += 11.0  # each failure lands after the previous left the window
        boom(ctx, "w")
        eventually(lambda n=n: len(seen.of_type(ActorRestarted)) == n, what=f"restart {n}")

    assert calls.halts.items() == []
    assert seen.of_type(ActorEscalated) == []


def test_supervisor_stale_failure_report_is_ignored() -> None:
    ctx, journal = make_ctx(), Journal()
    specs = [worker_spec(ctx, "w", journal)]
    seen = with_observer(ctx, specs)
    sup = start(ctx, specs)
    old = ctx.directory.require("w")
    boom(ctx, "w")
    eventually(lambda: seen.of_type(ActorRestarted), what="restart")
    current = ctx.directory.require("w")

    for urn in (old.actor_urn, "urn:uuid:00000000-0000-0000-0000-000000000000"):
        sup.tell(new(ChildFailed, ctx.clock, name="w", urn=urn, error="late report"))
    status = sup.ask(GetStatus(), timeout=5)  # processed after both reports

    child = status["children"]["w"]
    assert child["restarts"] == 1
    assert child["restart_pending"] is False
    assert child["urn"] == current.actor_urn
    assert ctx.directory.require("w") is current
    assert current.is_alive()


def test_supervisor_stuck_child_is_detected_and_escalated() -> None:
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    specs = [worker_spec(ctx, "w", journal)]
    sup = start(ctx, specs, **calls.kwargs())
    release = threading.Event()
    try:
        ctx.directory.send("w", new(Block, ctx.clock, release=release), sender="test")
        sup.tell(new(CheckChildren, ctx.clock))  # previous ping answered; new ping queued
        sup.tell(new(CheckChildren, ctx.clock))  # that ping is still unanswered -> stuck
        status = sup.ask(GetStatus(), timeout=5)
        assert status["children"]["w"]["stuck"] is True
        assert status["level"] == 1
        assert len(calls.halts.items()) == 1
        assert "stuck" in calls.halts.items()[0]
        assert calls.exits.items() == []
    finally:
        release.set()
    ctx.directory.require("w").ask(Ping(), timeout=5)
    sup.tell(new(CheckChildren, ctx.clock))
    sup.tell(new(ResetEscalation, ctx.clock, reason="operator resumed"))
    status = sup.ask(GetStatus(), timeout=5)
    assert status["children"]["w"]["stuck"] is False
    assert status["level"] == 0


def _stuck_seconds(text: str) -> float:
    found = re.search(r"unanswered for ([0-9.]+)s", text)
    assert found, text
    return float(found.group(1))


def test_supervisor_stuck_message_reports_the_real_wait() -> None:
    """A child blocked for 31.5 s (a database outage) is reported as unanswered for 31.5 s,
    not 0.0 s: the wait is counted from the ping it did not answer."""
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    now = [1000.0]
    sup = start(ctx, [worker_spec(ctx, "bridge", journal)], monotonic=lambda: now[0],
                **calls.kwargs())
    release = threading.Event()
    try:
        ctx.directory.send("bridge", new(Block, ctx.clock, release=release), sender="test")
        sup.tell(new(CheckChildren, ctx.clock))  # a ping sent at t=1000, queued behind Block
        sup.ask(GetStatus(), timeout=5)  # that check has run
        now[0] += 31.5
        sup.tell(new(CheckChildren, ctx.clock))
        sup.ask(GetStatus(), timeout=5)
        assert len(calls.halts.items()) == 1
        assert _stuck_seconds(calls.halts.items()[0]) == 31.5
    finally:
        release.set()


def test_supervisor_stuck_message_covers_the_measured_block() -> None:
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    sup = start(ctx, [worker_spec(ctx, "w", journal)], **calls.kwargs())
    release = threading.Event()
    try:
        began = time.monotonic()
        ctx.directory.send("w", new(Block, ctx.clock, release=release), sender="test")
        sup.tell(new(CheckChildren, ctx.clock))
        sup.ask(GetStatus(), timeout=5)
        time.sleep(0.3)  # the blocked time being measured, not a synchronisation
        sup.tell(new(CheckChildren, ctx.clock))
        sup.ask(GetStatus(), timeout=5)
        waited = time.monotonic() - began
        reported = _stuck_seconds(calls.halts.items()[0])
        assert 0.3 <= reported <= waited + 0.05
    finally:
        release.set()


def test_supervisor_escalation_says_what_the_operator_must_do() -> None:
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    specs = [worker_spec(ctx, "w", journal, max_restarts=0)]
    seen = with_observer(ctx, specs)
    start(ctx, specs, resume_hint="resume entries on the Risk page", **calls.kwargs())
    boom(ctx, "w")
    eventually(lambda: calls.halts.items(), what="halt_entries")
    halt = calls.halts.items()[0]
    assert halt.startswith("w failed 1 times within 60s")
    assert "New entries are paused" in halt and "until an operator acts" in halt
    assert "check the engine log for why w failed, then resume entries on the Risk page" in halt
    alert = eventually(lambda: seen.of_type(ActorEscalated), what="ActorEscalated")[0]
    assert alert.reason == halt


def test_supervisor_restarted_child_slow_to_start_is_not_stuck_within_grace() -> None:
    """The grace of a restarted child counts from its own first ping, not an older one."""
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    gates: list[threading.Event] = []
    specs = [worker_spec(ctx, "w", journal, busy_grace_s=3600,
                         actor_kwargs={"slow_setups": gates})]
    seen = with_observer(ctx, specs)
    sup = start(ctx, specs, monotonic=lambda: 5000.0, **calls.kwargs())
    gate = threading.Event()
    gates.append(gate)
    try:
        boom(ctx, "w")
        eventually(lambda: seen.of_type(ActorRestarted), what="restart")
        eventually(lambda: gates == [], what="the new incarnation's setup waiting on the gate")
        sup.tell(new(CheckChildren, ctx.clock))
        status = sup.ask(GetStatus(), timeout=5)
        assert status["children"]["w"]["stuck"] is False
        assert status["level"] == 0 and calls.halts.items() == []
    finally:
        gate.set()
    assert ctx.directory.require("w").ask(Ping(), timeout=5) == "pong"


def test_supervisor_busy_child_within_grace_is_not_stuck() -> None:
    """A child allowed to block (busy_grace_s) is not escalated while inside its grace."""
    ctx, journal, calls = make_ctx(), Journal(), Calls()
    specs = [worker_spec(ctx, "w", journal, busy_grace_s=3600)]
    sup = start(ctx, specs, **calls.kwargs())
    release = threading.Event()
    try:
        ctx.directory.send("w", new(Block, ctx.clock, release=release), sender="test")
        sup.tell(new(CheckChildren, ctx.clock))
        sup.tell(new(CheckChildren, ctx.clock))
        sup.tell(new(CheckChildren, ctx.clock))
        status = sup.ask(GetStatus(), timeout=5)
        assert status["children"]["w"]["stuck"] is False
        assert status["level"] == 0 and calls.halts.items() == []
    finally:
        release.set()


def test_supervisor_liveness_timer_restarts_silently_dead_child() -> None:
    ctx, journal = make_ctx(), Journal()
    specs = [worker_spec(ctx, "w", journal)]
    seen = with_observer(ctx, specs)
    start(ctx, specs, liveness_interval_s=0.02)
    old = ctx.directory.require("w")

    old.stop()  # dies without a failure report: only the liveness check can notice

    eventually(lambda: seen.of_type(ActorRestarted), what="restart by liveness check")
    assert ctx.directory.require("w") is not old
    assert ctx.directory.require("w").ask(Ping(), timeout=5) == "pong"


def test_supervisor_transient_child_normal_stop_is_not_restarted() -> None:
    ctx, journal = make_ctx(), Journal()
    sup = start(ctx, [worker_spec(ctx, "w", journal, restart="transient")])
    ctx.directory.require("w").stop()
    sup.tell(new(CheckChildren, ctx.clock))
    status = sup.ask(GetStatus(), timeout=5)
    assert status["children"]["w"]["gone"] is True
    assert status["children"]["w"]["restart_pending"] is False
    assert ctx.directory.get("w") is None


def test_supervisor_children_start_in_order_and_stop_in_reverse() -> None:
    ctx, journal = make_ctx(), Journal()
    names = ["token", "risk", "executor", "scanner"]
    sup = start(ctx, [worker_spec(ctx, n, journal) for n in names])
    assert [i for i in journal.items() if i[0] == "start"] == [("start", n) for n in names]
    assert ctx.directory.roles() == names

    sup.stop(timeout=10)

    assert [i for i in journal.items() if i[0] == "stop"] == [("stop", n) for n in reversed(names)]
    assert ctx.directory.roles() == []


def test_supervisor_rejects_duplicate_child_names() -> None:
    ctx, journal = make_ctx(), Journal()
    with pytest.raises(ValueError, match="duplicate child names"):
        Supervisor([worker_spec(ctx, "w", journal), worker_spec(ctx, "w", journal)],
                   directory=ctx.directory, clock=ctx.clock)


def test_childspec_bad_backoff_raises() -> None:
    with pytest.raises(ValueError, match="backoff"):
        ChildSpec(name="x", factory=lambda sup: sup, backoff=(5.0, 1.0))


def test_default_exit_process_stops_actors_and_exits_70(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import pykka
        from engine.actors.supervisor import default_exit_process

        class A(pykka.ThreadingActor):
            use_daemon_thread = False
            def on_stop(self):
                print("stopped", flush=True)

        A.start()
        default_exit_process(70)
        import threading
        threading.Event().wait(20)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert proc.returncode == EXIT_CODE
    assert "stopped" in proc.stdout
