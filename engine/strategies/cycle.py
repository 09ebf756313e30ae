"""One scan cycle over every registered strategy (pure): what the scanner and the backtester run.

Strategies run in registry order. Within a cycle, an entry one strategy emits counts against
the slots the next ones see (DC and MDC share the dc_family slots) and is visible to them as
an open trade, so DC and MDC never open the same structure in one cycle either. A fallback
(IC) is considered only when the strategy it falls back from (MDC) selected nothing; it is
told why.

The result is exactly what the battle-log row records: every strategy's eligibility and
reasons, ``selected_strategy``, each strategy's metrics (the MDC scores, the IC decision).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.strategies.base import Decision, EntryIntent, ExitIntent, OpenTradeView, StrategyInput
from engine.strategies.registry import StrategySpec, family_of, specs

__all__ = ["CycleResult", "run_cycle"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleResult:
    decisions: Mapping[str, Decision]
    entries: tuple[EntryIntent, ...]
    exits: tuple[ExitIntent, ...]
    selected_strategy: str | None
    eligibility: Mapping[str, bool] = field(default_factory=dict)
    rejections: Mapping[str, list[str]] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)


def _with_entries(inp: StrategyInput, entries: Iterable[EntryIntent]) -> StrategyInput:
    """``inp`` as the next strategy sees it after ``entries`` of this cycle."""
    entries = tuple(entries)
    if not entries:
        return inp
    opened = tuple(OpenTradeView(tag=e.tag, strategy=e.strategy, opened_at=inp.now,
                                 direction=e.direction, legs=e.legs) for e in entries)
    slots = {k: dict(v) for k, v in inp.slots.items()}
    for e in entries:
        fam = family_of(e.strategy)
        slot = slots.setdefault(fam, {"used": 0, "limit": 0, "tags": []})
        slot["used"] = int(slot.get("used", 0)) + 1
        slot["tags"] = [*slot.get("tags", []), e.tag]
    return replace(inp, open_trades=inp.open_trades + opened, slots=slots)


def _selected_nothing(decision: Decision | None) -> str:
    if decision is None:
        return "MDC not run"
    if decision.entries:
        return ""
    return "; ".join(decision.reasons) or "MDC selected nothing"


def run_cycle(inp: StrategyInput, params: Mapping[str, Mapping[str, Any]],
              strategies: Iterable[StrategySpec] | None = None, *,
              paused: Mapping[str, str | None] | None = None) -> CycleResult:
    """Run every strategy in ``strategies`` (default: the registry) on ``inp``.

    Args:
        inp: the cycle's input (``slots`` already counts the open trades).
        params: strategy name -> its parameter values (must include ``<NAME>_ENABLED``).
        strategies: a subset of the registry, in registry order (a backtest of one).
        paused: strategy name -> the entry pause in force for it (its stage's cap pause or
            the global one); default ``inp.entries_paused_reason`` for every strategy.
    """
    decisions: dict[str, Decision] = {}
    entries: list[EntryIntent] = []
    exits: list[ExitIntent] = []
    seen = inp
    for spec in (specs() if strategies is None else tuple(strategies)):
        p = params.get(spec.name, {})
        if paused is not None:
            seen = replace(seen, entries_paused_reason=paused.get(spec.name))
        if not p.get(spec.enabled_key, False):
            decisions[spec.name] = Decision(strategy=spec.name, eligible=False, reasons=(
                f"disabled ({spec.enabled_key}=false)",))
            # its open trades still follow its exit rule (the monitor); no new entries
            continue
        if spec.needs == "options" and (seen.market is None or not seen.market.expiries):
            decisions[spec.name] = Decision(strategy=spec.name, eligible=False, reasons=(
                "no option chains in the market data",))
            continue
        if spec.fallback_of is not None:
            why = _selected_nothing(decisions.get(spec.fallback_of))
            if why:
                decision = spec.decide(seen, p, mdc_selected_nothing=why)
            else:
                chosen = decisions[spec.fallback_of].entries[0].tag
                decision = Decision(strategy=spec.name, eligible=False, reasons=(
                    f"{spec.fallback_of} selected {chosen}: {spec.name} not considered",))
        else:
            decision = spec.decide(seen, p)
        decisions[spec.name] = decision
        exits.extend(decision.exits)
        if decision.entries:
            entries.extend(decision.entries)
            seen = _with_entries(seen, decision.entries)
    selected = next((d.strategy for d in decisions.values() if d.entries), None)
    return CycleResult(
        decisions=decisions, entries=tuple(entries), exits=tuple(exits),
        selected_strategy=selected,
        eligibility={n: d.eligible for n, d in decisions.items()},
        rejections={n: list(d.reasons) for n, d in decisions.items() if d.reasons},
        metrics={n: dict(d.metrics) for n, d in decisions.items() if d.metrics})
