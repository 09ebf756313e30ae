"""One-for-one supervision for pykka actors (pykka has none built in).

Policy, per `ChildSpec`:

* Children start in spec order (each child's ``setup`` finishes before the next starts)
  and stop in reverse order.
* A dead child is restarted as a *new* instance after an exponential back-off
  (``backoff[0] * 2**(n-1)`` capped at ``backoff[1]``), by a ``threading.Timer`` that tells
  `RestartChild` to the supervisor -- the supervisor itself never sleeps.
* Deaths are detected four ways: `ChildFailed` from ``on_failure`` (a told message
  raised), `ChildFailed` from ``setup`` (``on_start`` raised), a liveness check that finds
  ``is_alive()`` False with no restart pending, and a liveness ``Ping`` still unanswered on
  the next check (a *stuck* child). A `ChildFailed` whose urn is not the current
  incarnation's is stale and ignored.
* Intensity: more than ``max_restarts`` failures of one child inside ``period_s``
  escalates. A stuck child escalates at once (a Python thread cannot be killed) and again
  if it is still stuck ``period_s`` later.
* Escalation levels are supervisor-wide. Level 1: ``halt_entries(reason)`` is called,
  `ActorEscalated` is published (the notifier turns it into an alert), and the failing
  child is still restarted, at the maximum back-off, so positions stay monitored.
  Any further escalation (level 2) -- e.g. the same child failing again inside its window
  -- calls ``exit_process(70)``: log thread tracebacks, stop all actors, ``os._exit`` so
  the container restarts and recovery runs through normal startup. `ResetEscalation`
  (sent when the operator resumes entries) sets the level back to 0. Every escalation's
  reason (alert and pause reason) ends with what the operator must do: check the log for
  the failing child, then resume entries (``resume_hint`` says where).
* A stuck child's message gives the real wait: the time since the unanswered ping was sent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import pykka

from engine.actors.directory import Directory
from engine.actors.process import EXIT_CODE, default_exit_process, install_signal_handlers
from engine.clock import Clock
from engine.messages.base import IdSource, Message, RandomIds
from engine.messages.commands import (
    CheckChildren,
    GetStatus,
    Ping,
    ResetEscalation,
    RestartChild,
)
from engine.messages.events import ActorEscalated, ActorRestarted, ChildFailed

__all__ = [
    "EXIT_CODE",
    "ChildSpec",
    "Supervisor",
    "default_exit_process",
    "install_signal_handlers",
]

logger = logging.getLogger(__name__)

RestartPolicy = Literal["permanent", "transient", "temporary"]
ChildFactory = Callable[[pykka.ActorRef[Any]], pykka.ActorRef[Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """How to start and restart one child.

    Attributes:
        name: role name (directory key); unique per supervisor.
        factory: called with the supervisor's ref; starts the child and returns its ref.
        restart: "permanent" (always restart), "transient" (restart only after a reported
            failure; a silent stop is a normal exit), "temporary" (never restart).
        max_restarts: failures tolerated inside ``period_s`` before escalating.
        period_s: the intensity window in seconds.
        backoff: (first delay, cap) in seconds for the exponential restart back-off.
        stop_timeout_s: how long shutdown waits for the child to stop.
        start_timeout_s: how long the initial start waits for ``setup`` to finish.
        busy_grace_s: how long a liveness ping may stay unanswered before the child counts as
            stuck (0: one liveness interval). Give it to a child whose handlers legitimately
            block for a while, e.g. the executor waiting for live fills.
    """

    name: str
    factory: ChildFactory
    restart: RestartPolicy = "permanent"
    max_restarts: int = 3
    period_s: float = 60.0
    backoff: tuple[float, float] = (0.5, 30.0)
    stop_timeout_s: float = 5.0
    start_timeout_s: float = 10.0
    busy_grace_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ChildSpec.name must be non-empty")
        if not callable(self.factory):
            raise TypeError(f"ChildSpec {self.name}: factory must be callable")
        if self.restart not in ("permanent", "transient", "temporary"):
            raise ValueError(f"ChildSpec {self.name}: unknown restart policy {self.restart!r}")
        if self.max_restarts < 0 or self.period_s <= 0:
            raise ValueError(f"ChildSpec {self.name}: need max_restarts >= 0 and period_s > 0")
        low, high = self.backoff
        if not 0 <= low <= high:
            raise ValueError(f"ChildSpec {self.name}: backoff must be 0 <= first <= cap")

    @classmethod
    def for_actor(
        cls,
        name: str,
        actor_cls: type[pykka.Actor],
        ctx: Any,
        *,
        actor_kwargs: Mapping[str, Any] | None = None,
        **policy: Any,
    ) -> ChildSpec:
        """Spec for a `SupervisedActor` subclass started as ``actor_cls.start(...)``."""
        extra = dict(actor_kwargs or {})

        def factory(supervisor_ref: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
            return actor_cls.start(supervisor_ref=supervisor_ref, name=name, ctx=ctx, **extra)

        return cls(name=name, factory=factory, **policy)


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    failures: deque[float] = field(default_factory=deque)
    restarts: int = 0
    pending: threading.Timer | None = None
    ping: pykka.Future[Any] | None = None
    ping_sent: float = 0.0
    stuck_since: float | None = None
    stuck_escalations: int = 0
    gone: bool = False


class Supervisor(pykka.ThreadingActor):
    """Starts, watches, restarts and escalates a list of children (see module docstring).

    Args:
        specs: children in dependency order.
        directory: where the current ref of every child is published.
        clock: engine clock, for event timestamps.
        ids: message id source.
        halt_entries: called with a reason at every escalation; must only ``tell``.
        exit_process: called with `EXIT_CODE` at level 2 (tests inject a recorder).
        monotonic: time source in seconds for the intensity window (inject for tests).
        liveness_interval_s: seconds between liveness checks; None disables the timer
            (tell `CheckChildren` yourself).
        name: id scope / sender name of the supervisor's own messages.
        resume_hint: how the operator resumes entries (and so resets the escalation), for
            the escalation's alert and pause reason, e.g. "resume entries on the Risk page".
    """

    use_daemon_thread = False

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        directory: Directory,
        clock: Clock,
        ids: IdSource | None = None,
        halt_entries: Callable[[str], None] | None = None,
        exit_process: Callable[[int], None] = default_exit_process,
        monotonic: Callable[[], float] = time.monotonic,
        liveness_interval_s: float | None = 15.0,
        name: str = "supervisor",
        resume_hint: str = "resume entries",
    ) -> None:
        super().__init__()
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate child names in supervisor specs: {names}")
        self._children = {s.name: _Child(spec=s) for s in specs}
        self._directory = directory
        self._clock = clock
        self._ids = ids or RandomIds()
        self._halt_entries = halt_entries
        self._exit_process = exit_process
        self._monotonic = monotonic
        self._interval = liveness_interval_s
        self._name = name
        self._resume_hint = resume_hint
        self._level = 0
        self._exit_requested = False
        self._stopping = False
        self._liveness_timer: threading.Timer | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def on_start(self) -> None:
        """Start every child in spec order, then arm the liveness timer."""
        for child in self._children.values():
            self._start_child(child, wait_ready=True)
        self._arm_liveness()

    def on_stop(self) -> None:
        """Cancel timers and stop children in reverse spec order."""
        self._stopping = True
        if self._liveness_timer is not None:
            self._liveness_timer.cancel()
        for child in reversed(list(self._children.values())):
            if child.pending is not None:
                child.pending.cancel()
                child.pending = None
            ref = child.ref
            if ref is None:
                continue
            try:
                ref.stop(block=True, timeout=child.spec.stop_timeout_s)
            except pykka.Timeout:
                logger.error("child %s did not stop within %.1fs", child.spec.name,
                             child.spec.stop_timeout_s)
            self._directory.remove(child.spec.name, ref)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """The supervisor itself crashed: nothing watches the children any more, so exit."""
        logger.critical("supervisor crashed (%r): exiting the process", exception_value)
        self._exit_process(EXIT_CODE)

    def on_receive(self, message: Any) -> Any:
        """Dispatch supervision messages."""
        match message:
            case ChildFailed():
                self._on_child_failed(message)
            case RestartChild(name=name):
                self._restart(name)
            case CheckChildren():
                self._check_children()
                self._arm_liveness()
            case ResetEscalation(reason=reason):
                logger.warning("escalation level reset from %d (%s)", self._level, reason)
                self._level = 0
            case Ping():
                return "pong"
            case GetStatus():
                return self._status()
            case _:
                return super().on_receive(message)
        return None

    # --- starting ------------------------------------------------------------------------

    def _start_child(self, child: _Child, *, wait_ready: bool) -> bool:
        name = child.spec.name
        try:
            ref = child.spec.factory(self.actor_ref)
        except Exception as exc:
            logger.exception("factory of child %s failed", name)
            child.ref = None
            self._on_death(child, f"factory failed: {exc!r}", reported=True)
            return False
        child.ref, child.ping, child.stuck_since, child.stuck_escalations = ref, None, None, 0
        child.gone = False
        self._directory.set(name, ref)
        try:
            child.ping_sent = self._monotonic()
            child.ping = ref.ask(Ping(), block=False)
        except pykka.ActorDeadError:
            return True  # setup already failed; its ChildFailed is in our inbox
        if wait_ready:
            try:
                child.ping.get(timeout=child.spec.start_timeout_s)
            except pykka.Timeout:
                logger.error("child %s not ready after %.1fs", name, child.spec.start_timeout_s)
            except pykka.ActorDeadError:
                pass  # setup failed; ChildFailed follows
        return True

    def _restart(self, name: str) -> None:
        child = self._children.get(name)
        if child is None:
            logger.warning("RestartChild for unknown child %r", name)
            return
        child.pending = None
        if self._stopping or self._exit_requested:
            return
        child.restarts += 1
        if self._start_child(child, wait_ready=False) and child.ref is not None:
            logger.warning("restarted %s (attempt %d)", name, child.restarts)
            self._publish(ActorRestarted, name=name, attempt=child.restarts,
                          urn=child.ref.actor_urn)

    # --- deaths --------------------------------------------------------------------------

    def _on_child_failed(self, msg: ChildFailed) -> None:
        child = self._children.get(msg.name)
        if child is None or child.ref is None or child.ref.actor_urn != msg.urn:
            logger.info("ignoring stale failure report of %s (%s)", msg.name, msg.urn)
            return
        if child.pending is not None:
            return  # already handled (found dead by the liveness check first)
        logger.warning("child %s failed: %s", msg.name, msg.error)
        self._on_death(child, msg.error, reported=True)

    def _on_death(self, child: _Child, reason: str, *, reported: bool) -> None:
        spec = child.spec
        child.ping, child.stuck_since = None, None
        if self._stopping:
            return
        if spec.restart == "temporary" or (spec.restart == "transient" and not reported):
            logger.info("child %s ended (%s); policy %s: not restarting",
                        spec.name, reason, spec.restart)
            child.gone = True
            if child.ref is not None:
                self._directory.remove(spec.name, child.ref)
            return
        now = self._monotonic()
        child.failures.append(now)
        while child.failures and now - child.failures[0] > spec.period_s:
            child.failures.popleft()
        count = len(child.failures)
        low, high = spec.backoff
        delay = min(low * 2 ** (count - 1), high)
        if count > spec.max_restarts:
            self._escalate(spec.name, f"{spec.name} failed {count} times within "
                                      f"{spec.period_s:g}s; last: {reason}")
            delay = high
        if self._exit_requested:
            return
        logger.warning("child %s down (%s); restart in %.2fs", spec.name, reason, delay)
        timer = threading.Timer(delay, self._tell_self, args=(RestartChild, {"name": spec.name}))
        timer.daemon = True
        child.pending = timer
        timer.start()

    # --- liveness ------------------------------------------------------------------------

    def _check_children(self) -> None:
        now = self._monotonic()
        for child in self._children.values():
            ref = child.ref
            if ref is None or child.pending is not None or child.gone:
                continue
            if not ref.is_alive():
                self._on_death(child, "found dead by liveness check", reported=False)
                continue
            if child.ping is not None and not self._ping_answered(child.ping):
                if now - child.ping_sent >= child.spec.busy_grace_s:
                    self._on_stuck(child, now)
                continue
            child.stuck_since, child.stuck_escalations = None, 0
            try:
                child.ping_sent = now
                child.ping = ref.ask(Ping(), block=False)
            except pykka.ActorDeadError:
                child.ping = None

    @staticmethod
    def _ping_answered(fut: pykka.Future[Any]) -> bool:
        try:
            fut.get(timeout=0)
        except pykka.Timeout:
            return False
        except Exception:
            return True
        return True

    def _on_stuck(self, child: _Child, now: float) -> None:
        spec = child.spec
        if child.stuck_since is None:
            # stuck since the unanswered ping was sent, not since we noticed
            child.stuck_since = child.ping_sent
        stuck_for = now - child.stuck_since
        if child.stuck_escalations == 0 or (
            child.stuck_escalations == 1 and stuck_for > spec.period_s
        ):
            child.stuck_escalations += 1
            self._escalate(spec.name, f"{spec.name} is stuck: liveness ping unanswered "
                                      f"for {stuck_for:.1f}s")

    # --- escalation ----------------------------------------------------------------------

    def _escalate(self, name: str, reason: str) -> None:
        self._level += 1
        level = self._level
        if level == 1:
            reason = (f"{reason}. New entries are paused (open positions are still monitored) "
                      f"until an operator acts: check the engine log for why {name} failed, "
                      f"then {self._resume_hint}")
        else:
            reason = (f"{reason}. Second escalation: the process exits with code {EXIT_CODE} "
                      f"to be restarted; entries stay paused: check the engine log for why "
                      f"{name} failed, then {self._resume_hint}")
        logger.critical("ESCALATION level %d: %s", level, reason)
        self._publish(ActorEscalated, name=name, level=level, reason=reason)
        if self._halt_entries is not None:
            try:
                self._halt_entries(reason)
            except Exception:
                logger.exception("halt_entries callback failed")
        if level >= 2 and not self._exit_requested:
            self._exit_requested = True
            logger.critical("second escalation: exiting the process with code %d", EXIT_CODE)
            self._exit_process(EXIT_CODE)

    # --- helpers -------------------------------------------------------------------------

    def _new(self, cls: type[Message], **fields: Any) -> Any:
        return cls(message_id=self._ids.next_id(self._name), ts=self._clock.now(), **fields)

    def _publish(self, cls: type[Message], **fields: Any) -> None:
        self._directory.publish(self._new(cls, **fields), sender=self._name)

    def _tell_self(self, cls: type[Message], fields: Mapping[str, Any]) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(self._new(cls, **fields))

    def _arm_liveness(self) -> None:
        if self._interval is None or self._stopping:
            return
        if self._liveness_timer is not None:
            self._liveness_timer.cancel()
        timer = threading.Timer(self._interval, self._tell_self, args=(CheckChildren, {}))
        timer.daemon = True
        self._liveness_timer = timer
        timer.start()

    def _status(self) -> dict[str, Any]:
        children = {
            name: {
                "urn": c.ref.actor_urn if c.ref is not None else None,
                "alive": bool(c.ref is not None and c.ref.is_alive()),
                "restarts": c.restarts,
                "restart_pending": c.pending is not None,
                "stuck": c.stuck_since is not None,
                "failures_in_window": len(c.failures),
                "gone": c.gone,
            }
            for name, c in self._children.items()
        }
        return {"level": self._level, "children": children}
