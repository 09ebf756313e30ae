"""What the rest of the engine calls of the AI flows: the actor for the composition root,
the ``rerun_task`` runner for the command bus, and the scan hints for the scanner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine.ai import store
from engine.ai.llm import LlmConfig
from engine.ai.messages import RerunAiMarket
from engine.ai.predictions import AiHints, hints_for, short_gamma
from engine.timeutil import IST

__all__ = ["AI_MARKET_TASK", "AI_ROLE", "rerun", "scan_hints", "task_unavailable",
           "with_ai_actor"]

logger = logging.getLogger(__name__)

AI_ROLE = "ai"
AI_MARKET_TASK = "ai_market"


def with_ai_actor(actors: tuple[tuple[str, type], ...]) -> tuple[tuple[str, type], ...]:
    """``actors`` (the composition root's (role, class) list) plus the AI actor, last."""
    from engine.actors.ai import AiActor

    if any(role == AI_ROLE for role, _ in actors):
        return actors
    return (*actors, (AI_ROLE, AiActor))


def task_unavailable(task: object) -> str | None:
    """Why the engine cannot run ``task`` now (``ai_market``: the LLM port is off), or None."""
    if task != AI_MARKET_TASK:
        return None
    try:
        return LlmConfig.from_env().problem()
    except ValueError as exc:
        return str(exc)


def rerun(send: Callable[..., None], task: str, who: str) -> dict[str, Any]:
    """The command bus's ``rerun_task``: tell the AI actor (``send`` raises CommandError when
    it is not running)."""
    send(AI_ROLE, RerunAiMarket, requested_by=who)
    return {"sent": "RerunAiMarket", "task": task}


def scan_hints(pool: Any, settings: Any, at: datetime) -> AiHints:
    """The hints a scan cycle at ``at`` applies (engine.ai.predictions.hints_for over the
    day's ai_predictions); empty hints when disabled or on any error (a hint must never stop
    a scan)."""
    try:
        enabled = bool(settings.get("AI_HINTS_ENABLED"))
        if not enabled:
            return AiHints(enabled=False)
        rows = store.predictions_of_day(pool, at.astimezone(IST).date())
        return hints_for(rows, at, enabled=True,
                         min_confidence=int(settings.get("AI_HINT_MIN_CONFIDENCE")),
                         short_gamma_strategies=short_gamma(
                             settings.get("AI_SHORT_GAMMA_STRATEGIES")))
    except Exception:
        logger.exception("AI hints not read at %s: none applied", at)
        return AiHints(enabled=False)
