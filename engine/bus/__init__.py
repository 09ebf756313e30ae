"""The engine side of the PostgreSQL bridge: web commands in, live events out."""

from engine.bus.commands import (
    COMMAND_KINDS,
    IDEMPOTENT_KINDS,
    CommandBus,
    CommandError,
    CommandRow,
    enqueue_command,
    validate_command,
)
from engine.bus.events import (
    EVENT_KINDS,
    EVENTS_CHANNEL,
    EventTooLarge,
    build_event,
    publish_event,
    write_heartbeat,
)

__all__ = [
    "COMMAND_KINDS", "EVENTS_CHANNEL", "EVENT_KINDS", "IDEMPOTENT_KINDS", "CommandBus",
    "CommandError", "CommandRow", "EventTooLarge", "build_event", "enqueue_command",
    "publish_event", "validate_command", "write_heartbeat",
]
