"""Flow 2 — market_view / breakout_risk predictions as scan hints (pure).

:func:`hints_for` turns the day's ``ai_predictions`` rows into the :class:`AiHints` a scan
cycle applies: the latest *active* prediction of each task (created at or before ``now`` and
``now`` within its ``horizon_minutes``) with at least ``min_confidence``. With hints enabled,
a HIGH breakout risk blocks new entries of every short-gamma strategy (DC, MDC, IC by
default); the block's reason is the entry pause the scanner hands the strategy, so the
battle log records the hint that applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["AiHints", "active_prediction", "hints_for", "short_gamma"]

TASKS = ("market_view", "breakout_risk")


def short_gamma(text: str) -> frozenset[str]:
    """``AI_SHORT_GAMMA_STRATEGIES`` as a set of names."""
    return frozenset(x.strip().upper() for x in str(text).split(",") if x.strip())


def _horizon(row: Mapping[str, Any]) -> int:
    try:
        return int((row.get("payload") or {}).get("horizon_minutes") or 60)
    except (TypeError, ValueError):
        return 60


def active_prediction(rows: Iterable[Mapping[str, Any]], task: str, now: datetime,
                      min_confidence: Decimal | int = 0) -> Mapping[str, Any] | None:
    """The newest row of ``task`` in force at ``now`` with confidence ≥ ``min_confidence``."""
    best = None
    for row in rows:
        if row.get("task") != task:
            continue
        at = row["created_at"]
        if at > now or now > at + timedelta(minutes=_horizon(row)):
            continue
        if Decimal(str(row.get("confidence_pct") or 0)) < Decimal(str(min_confidence)):
            continue
        if best is None or (at, row.get("id", 0)) >= (best["created_at"], best.get("id", 0)):
            best = row
    return best


@dataclass(frozen=True, slots=True)
class AiHints:
    enabled: bool
    market_view: Mapping[str, Any] | None = None
    breakout_risk: Mapping[str, Any] | None = None
    blocks: Mapping[str, str] = field(default_factory=dict)   # strategy -> why no entry

    def to_json(self) -> dict[str, Any]:
        def brief(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
            if row is None:
                return None
            return {"id": row.get("id"), "verdict": row.get("verdict"),
                    "confidence_pct": str(row.get("confidence_pct")),
                    "created_at": row["created_at"].isoformat(),
                    "horizon_minutes": _horizon(row)}
        return {"enabled": self.enabled, "market_view": brief(self.market_view),
                "breakout_risk": brief(self.breakout_risk), "blocks": dict(self.blocks)}


def hints_for(predictions: Iterable[Mapping[str, Any]], now: datetime, *, enabled: bool = True,
              min_confidence: Decimal | int = 60,
              short_gamma_strategies: Iterable[str] = ("DC", "MDC", "IC")) -> AiHints:
    """The hints in force at ``now`` (see the module docstring); no blocks when disabled."""
    rows = list(predictions)
    view = active_prediction(rows, "market_view", now, min_confidence)
    risk = active_prediction(rows, "breakout_risk", now, min_confidence)
    blocks: dict[str, str] = {}
    if enabled and risk is not None and risk.get("verdict") == "HIGH":
        until = risk["created_at"] + timedelta(minutes=_horizon(risk))
        direction = (risk.get("payload") or {}).get("direction", "EITHER")
        why = (f"AI hint: HIGH breakout risk ({direction}, {risk.get('confidence_pct')} % "
               f"confidence, prediction #{risk.get('id')}) until {until:%H:%M}: no new "
               "short-gamma entry")
        blocks = {name: why for name in sorted(set(short_gamma_strategies))}
    return AiHints(enabled=enabled, market_view=view, breakout_risk=risk, blocks=blocks)
