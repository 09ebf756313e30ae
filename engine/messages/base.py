"""Base message types, id sources and the `new()` factory.

Every message is a frozen, slotted, keyword-only dataclass that carries:

* ``message_id`` -- a string id (uuid4 by default; `SeededIds` makes it deterministic),
* ``ts`` -- an aware IST datetime taken from the injected `Clock`,
* ``correlation_id`` -- the id of the message that started the conversation, or None.

Adding a message: subclass `Command` (verb-first name) or `Event` (past tense) with the
same decorator, give every new field a default when you add it to an existing message so
older call sites keep working, and use tuples / Decimal / enums rather than lists / floats.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from engine.clock import Clock

__all__ = [
    "Command",
    "Event",
    "IdSource",
    "Message",
    "RandomIds",
    "SeededIds",
    "new",
    "reply",
]

M = TypeVar("M", bound="Message")

_ID_NAMESPACE = uuid.UUID("6b1c1d2e-7a51-4f4e-9a3c-2d0f9c8e7b10")


def _uuid4_str() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message between actors.

    Attributes:
        message_id: unique id of this message.
        ts: when the message was created, on the engine clock (aware datetime).
        correlation_id: id of the message that caused this one (None for roots).
    """

    message_id: str = field(default_factory=_uuid4_str)
    ts: datetime
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ts, datetime):
            raise TypeError(
                f"{type(self).__name__}.ts must be a datetime, got {type(self.ts).__name__}"
            )
        if self.ts.tzinfo is None:
            raise ValueError(f"{type(self).__name__}.ts {self.ts!r} is naive: use the Clock")
        if not isinstance(self.message_id, str) or not self.message_id:
            raise ValueError(f"{type(self).__name__}.message_id must be a non-empty string")


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Message):
    """A request to do something; named verb-first (``OpenPosition``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(Message):
    """A fact that happened; named in the past tense (``PositionOpened``)."""


class IdSource(Protocol):
    """Produces message ids; ``scope`` is usually the sending role's name."""

    def next_id(self, scope: str) -> str:
        """Return a fresh id for a message created in ``scope``."""
        ...


class RandomIds:
    """uuid4 ids (production default)."""

    def next_id(self, scope: str) -> str:
        """Return a random uuid4 string."""
        return str(uuid.uuid4())


class SeededIds:
    """Deterministic ids: uuid5 of ``"<seed>:<scope>:<n>"`` with a counter per scope.

    Two runs with the same seed, in which every scope creates its messages in the same
    order, produce the same ids. Counters survive actor restarts because they live here.
    """

    def __init__(self, seed: str) -> None:
        if not seed:
            raise ValueError("SeededIds needs a non-empty seed")
        self._seed = seed
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def next_id(self, scope: str) -> str:
        """Return the next deterministic id for ``scope``."""
        with self._lock:
            counter = self._counters.setdefault(scope, itertools.count(1))
            n = next(counter)
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self._seed}:{scope}:{n}"))


def new(
    cls: type[M],
    clock: Clock,
    *,
    ids: IdSource | None = None,
    scope: str = "",
    **fields: Any,
) -> M:
    """Create a message stamped with a fresh id and the clock's current time.

    Args:
        cls: the message class.
        clock: source of ``ts``.
        ids: id source (random uuid4 when None).
        scope: id scope, normally the sender's role name.
        **fields: the message's own fields (and optionally ``correlation_id``).

    Returns:
        The new message.
    """
    if "message_id" in fields or "ts" in fields:
        raise TypeError(f"new({cls.__name__}) stamps message_id and ts itself; do not pass them")
    source = ids if ids is not None else RandomIds()
    return cls(message_id=source.next_id(scope), ts=clock.now(), **fields)


def reply(
    cls: type[M],
    to: Message,
    clock: Clock,
    *,
    ids: IdSource | None = None,
    scope: str = "",
    **fields: Any,
) -> M:
    """Like `new`, but correlated with ``to`` (keeps its correlation id, or uses its id)."""
    correlation = to.correlation_id or to.message_id
    return new(cls, clock, ids=ids, scope=scope, correlation_id=correlation, **fields)
