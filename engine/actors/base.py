"""`SupervisedActor`: the base class of every long-lived engine actor.

It closes pykka's supervision gaps: a failure on a told message (``on_failure``) *and* a
failure in ``setup()`` (pykka does not call ``on_failure`` for ``on_start``) are reported
to the supervisor as `ChildFailed`. It also answers `Ping` (liveness) and `Probe` (the
lock-step scheduler's settle check), and gives subclasses `send` / `publish` / `new`.

Subclasses implement ``setup()`` (rebuild state from PostgreSQL; cold start and restart
are the same path) and ``handle(message)`` with a ``match`` statement.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import pykka

from engine.actors.directory import Directory
from engine.clock import Clock
from engine.messages.base import IdSource, Message, RandomIds, new, reply
from engine.messages.commands import Crash, Ping, Probe
from engine.messages.events import ChildFailed

__all__ = ["UNEXPECTED_MESSAGE", "ActorContext", "InjectedCrash", "SupervisedActor"]


class InjectedCrash(RuntimeError):
    """Raised by an actor that received `Crash` (fault injection)."""

logger = logging.getLogger(__name__)
UNEXPECTED_MESSAGE = "unexpected message, dropped:"

M = TypeVar("M", bound=Message)


def _no_services() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorContext:
    """What every actor gets from the composition root.

    Attributes:
        clock: the engine clock (message timestamps, "now").
        directory: role -> ref lookups, event subscriptions, dead letters, tap.
        ids: message id source (`SeededIds` in replays).
        services: named ports (pool, broker, market data, ...) for actors that need them.
    """

    clock: Clock
    directory: Directory
    ids: IdSource = field(default_factory=RandomIds)
    services: Mapping[str, Any] = field(default_factory=_no_services)


class SupervisedActor(pykka.ThreadingActor):
    """Base class for children of `engine.actors.supervisor.Supervisor`.

    Args:
        supervisor_ref: the supervisor to report failures to.
        name: the role name (also the directory key and the id scope).
        ctx: the shared `ActorContext`.
    """

    use_daemon_thread = False  # on_stop must always run

    def __init__(
        self, *, supervisor_ref: pykka.ActorRef[Any] | None, name: str, ctx: ActorContext
    ) -> None:
        super().__init__()
        if not name:
            raise ValueError("a supervised actor needs a non-empty name")
        self._supervisor_ref = supervisor_ref
        self._name = name
        self._ctx = ctx
        self._processed = 0

    # --- hooks for subclasses ------------------------------------------------------------

    def setup(self) -> None:
        """Load state (from PostgreSQL) before the first message; raise to fail the start."""

    def handle(self, message: Any) -> Any:
        """Handle one application message; override with ``match message:``.

        The default logs the message as unexpected and drops it: a message reaches only the
        roles that subscribe to it, so this is a routing bug (the test suite fails on it).
        """
        logger.warning("%s: %s %s", self._name, UNEXPECTED_MESSAGE, type(message).__name__)
        return None

    # --- properties --------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The role name."""
        return self._name

    @property
    def ctx(self) -> ActorContext:
        """The shared context."""
        return self._ctx

    @property
    def clock(self) -> Clock:
        """Shortcut for ``ctx.clock``."""
        return self._ctx.clock

    @property
    def processed(self) -> int:
        """Application messages taken from the inbox so far (Ping / Probe excluded)."""
        return self._processed

    # --- helpers -----------------------------------------------------------------------

    def new(self, cls: type[M], **fields: Any) -> M:
        """Create a message stamped with this actor's id scope and the clock's time."""
        return new(cls, self._ctx.clock, ids=self._ctx.ids, scope=self._name, **fields)

    def reply(self, cls: type[M], to: Message, **fields: Any) -> M:
        """Create a message correlated with ``to``."""
        return reply(cls, to, self._ctx.clock, ids=self._ctx.ids, scope=self._name, **fields)

    def send(self, role: str, message: object) -> bool:
        """Tell ``message`` to ``role`` (resolved now); False and a WARNING on a dead letter."""
        return self._ctx.directory.send(role, message, sender=self._name)

    def publish(self, event: object) -> int:
        """Tell ``event`` to every subscribed role; return how many received it."""
        return self._ctx.directory.publish(event, sender=self._name)

    # --- pykka hooks -------------------------------------------------------------------

    def on_start(self) -> None:
        """Run `setup`; on error report `ChildFailed` and re-raise (pykka then stops us)."""
        try:
            self.setup()
        except Exception as exc:
            self._report_failure(exc)
            raise

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Report a failure on a told message to the supervisor."""
        self._report_failure(exception_value)

    def on_receive(self, message: Any) -> Any:
        """Answer Ping / Probe; count and dispatch everything else to `handle`."""
        match message:
            case Ping():
                return "pong"
            case Probe():
                return self._processed
            case Crash(reason=reason):
                raise InjectedCrash(f"{self._name}: {reason}")
            case _:
                self._processed += 1
                return self.handle(message)

    def _report_failure(self, exc: BaseException | None) -> None:
        if self._supervisor_ref is None:
            return
        failed = ChildFailed(
            message_id=self._ctx.ids.next_id(self._name),
            ts=self._ctx.clock.now(),
            name=self._name,
            urn=self.actor_urn,
            error=repr(exc),
        )
        with contextlib.suppress(pykka.ActorDeadError):
            self._supervisor_ref.tell(failed)

    def __str__(self) -> str:
        return f"{type(self).__name__}[{self._name}] ({self.actor_urn})"
