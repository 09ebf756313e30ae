"""Slot use per family and strategy, recomputed from the open trades (never stored alone).

``dc_family`` (DC + MDC) shares ``DC_FAMILY_SLOTS``; every other strategy has its own
``<NAME>_SLOTS``. ``runtime_state.strategy_slots`` (the RiskActor) and the strategies'
``StrategyInput.slots`` (the scanner) are both this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.settings.registry import SettingError
from engine.strategies.registry import DC_FAMILY, family_of, specs

__all__ = ["slot_limits", "slots_from", "strategy_slots"]


def slots_from(open_trades: Iterable[Any], limits: Mapping[str, int]
               ) -> dict[str, dict[str, Any]]:
    """Slot use per family/strategy from the open trades: ``{family: {used, limit, tags}}``."""
    out: dict[str, dict[str, Any]] = {k: {"used": 0, "limit": int(v), "tags": []}
                                      for k, v in limits.items()}
    for t in open_trades:
        fam = family_of(t.strategy)
        slot = out.setdefault(fam, {"used": 0, "limit": 0, "tags": []})
        slot["used"] += 1
        slot["tags"].append(t.tag)
    return out


def slot_limits(params: Mapping[str, Any]) -> dict[str, int]:
    """Each family's slot limit from a parameter dict (a backtest's explicit parameters):
    ``DC_FAMILY_SLOTS`` for dc_family, ``<NAME>_SLOTS`` (or ``RISK_MAX_OPEN_POSITIONS``)."""
    return {DC_FAMILY: int(params["DC_FAMILY_SLOTS"])} | {
        s.name: int(params.get(f"{s.name}_SLOTS", params["RISK_MAX_OPEN_POSITIONS"]))
        for s in specs() if s.family is None}


def strategy_slots(trades, settings) -> dict[str, Any]:
    """Slot use per family (dc_family = DC + MDC) and per strategy, from the open trades,
    with each family's limit from settings; the scanner passes the same to strategies."""
    limits = {DC_FAMILY: settings.get("DC_FAMILY_SLOTS")}
    for spec in specs():
        if spec.family is None:
            key = f"{spec.name}_SLOTS"
            try:
                limits[spec.name] = settings.get(key)
            except SettingError:  # a strategy without a slot knob: the global cap applies
                limits[spec.name] = settings.get("RISK_MAX_OPEN_POSITIONS")
    out = slots_from(trades, limits)
    per_strategy: dict[str, int] = {}
    for t in trades:
        per_strategy[t.strategy] = per_strategy.get(t.strategy, 0) + 1
    for slot in out.values():
        slot["tags"] = sorted(slot["tags"])
    out["per_strategy"] = dict(sorted(per_strategy.items()))
    return out
