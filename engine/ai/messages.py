"""The AI actor's own messages (frozen dataclasses like every engine message)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.messages.base import Command

__all__ = ["AiAnalysed", "AiTick", "RerunAiMarket"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AiTick(Command):
    """The AI actor's own timer: see what is due at the engine clock's now. Told straight to
    the actor (not through the directory), so the engine's event log is unchanged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RerunAiMarket(Command):
    """Run the AI_MARKET analysis again now (``/rerun_ai_market``, OTP-confirmed); adds a
    same-day copy with trigger ``rerun``."""

    requested_by: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class AiAnalysed(Command):
    """Worker -> actor: analysis ``analysis_id`` is stored; ``tradable`` when its verdict
    passed validation (the actor then plans the trade)."""

    analysis_id: int
    tradable: bool
    kind: str = "ai_market"
