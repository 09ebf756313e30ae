"""Role-based addressing: role name -> current ActorRef, event subscriptions, dead letters.

Actors never keep another actor's ``ActorRef`` across messages: they call
``directory.send(role, msg)`` / ``directory.publish(event)`` (usually through
`SupervisedActor.send` / `SupervisedActor.publish`), and the directory resolves the role at
send time, so an actor restarted by the supervisor is picked up automatically.

The supervisor writes the directory; any thread may read it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pykka

from engine.messages.tap import MessageTap

__all__ = ["Directory"]

logger = logging.getLogger(__name__)


class Directory:
    """Thread-safe role registry plus event routing.

    Args:
        tap: optional `MessageTap` that records every message sent through here.
    """

    def __init__(self, *, tap: MessageTap | None = None) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._subscriptions: dict[type, list[str]] = {}
        self._dead_letters = 0
        self.tap = tap

    # --- roles ---------------------------------------------------------------------------

    def get(self, role: str) -> pykka.ActorRef[Any] | None:
        """Return the current ref for ``role`` or None when it has none (down / unknown)."""
        with self._lock:
            return self._refs.get(role)

    def require(self, role: str) -> pykka.ActorRef[Any]:
        """Return the current ref for ``role``.

        Raises:
            LookupError: when the role has no live registration.
        """
        ref = self.get(role)
        if ref is None:
            raise LookupError(f"no actor registered for role {role!r} (known: {self.roles()})")
        return ref

    def set(self, role: str, ref: pykka.ActorRef[Any]) -> None:
        """Register (or replace) the ref for ``role``; order of first registration is kept."""
        if not role:
            raise ValueError("role name must be non-empty")
        with self._lock:
            self._refs[role] = ref

    def remove(self, role: str, ref: pykka.ActorRef[Any] | None = None) -> None:
        """Drop ``role``; when ``ref`` is given, only if it is still the current one."""
        with self._lock:
            current = self._refs.get(role)
            if current is not None and (ref is None or current is ref):
                del self._refs[role]

    def roles(self) -> list[str]:
        """Return registered roles in registration order (the supervisor's spec order)."""
        with self._lock:
            return list(self._refs)

    def snapshot(self) -> dict[str, pykka.ActorRef[Any]]:
        """Return a copy of role -> ref."""
        with self._lock:
            return dict(self._refs)

    # --- subscriptions -----------------------------------------------------------------

    def subscribe(self, event_type: type, *roles: str) -> None:
        """Make ``roles`` receive every published event of ``event_type`` (or a subclass)."""
        if not isinstance(event_type, type):
            raise TypeError(f"subscribe needs a message class, got {event_type!r}")
        with self._lock:
            current = self._subscriptions.setdefault(event_type, [])
            for role in roles:
                if role not in current:
                    current.append(role)

    def unsubscribe(self, event_type: type, role: str) -> None:
        """Stop sending ``event_type`` to ``role``."""
        with self._lock:
            current = self._subscriptions.get(event_type, [])
            if role in current:
                current.remove(role)

    def subscribers(self, event_type: type) -> tuple[str, ...]:
        """Return the roles subscribed to ``event_type`` or any of its base classes."""
        with self._lock:
            out: list[str] = []
            for klass in event_type.__mro__:
                for role in self._subscriptions.get(klass, ()):
                    if role not in out:
                        out.append(role)
            return tuple(out)

    # --- delivery ------------------------------------------------------------------------

    @property
    def dead_letters(self) -> int:
        """How many messages could not be delivered so far."""
        with self._lock:
            return self._dead_letters

    def send(self, role: str, message: object, *, sender: str = "?",
             to: pykka.ActorRef | None = None) -> bool:
        """``tell`` ``message`` to the actor currently holding ``role``, or to ``to``: one
        actor of that role (an actor's message to itself, which must reach this instance
        even before a restart has registered it, and never its successor).

        Returns:
            True when delivered to a mailbox; False for a dead letter (logged at WARNING).
        """
        if self.tap is not None:
            self.tap.record(sender, (role,), message)
        return self._deliver(role, message, sender, to)

    def publish(self, event: object, *, sender: str = "?") -> int:
        """``tell`` ``event`` to every subscribed role; return how many got it."""
        roles = self.subscribers(type(event))
        if self.tap is not None:
            self.tap.record(sender, roles, event)
        return sum(1 for role in roles if self._deliver(role, event, sender))

    def _deliver(self, role: str, message: object, sender: str,
                 to: pykka.ActorRef | None = None) -> bool:
        ref = to if to is not None else self.get(role)
        if ref is None:
            self._dead_letter(role, message, sender, "no actor for role")
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            self._dead_letter(role, message, sender, "actor is dead")
            return False
        return True

    def _dead_letter(self, role: str, message: object, sender: str, why: str) -> None:
        with self._lock:
            self._dead_letters += 1
        logger.warning(
            "dead letter: %s from %s to role %r (%s)", type(message).__name__, sender, role, why
        )

    def __repr__(self) -> str:
        return f"Directory(roles={self.roles()})"
