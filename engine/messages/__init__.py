"""Messages between actors: commands (verb-first) and events (past tense).

Import from the submodules (`engine.messages.commands`, `engine.messages.events`) or from
here; `base` has `Message`, `Command`, `Event`, `new`, `reply` and the id sources.
"""

from engine.messages.base import Command, Event, IdSource, Message, RandomIds, SeededIds, new, reply
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side

__all__ = [
    "Command",
    "Event",
    "IdSource",
    "InstrumentKind",
    "Leg",
    "Message",
    "OptionType",
    "RandomIds",
    "SeededIds",
    "Side",
    "new",
    "reply",
]
