"""The one list of strategies: adding a strategy means adding a module here, nothing else.

Each strategy module in ``engine/strategies`` declares ``NAME``, ``KNOBS`` (its settings,
with bounds and a description), ``PARAM_KEYS``, ``GRID_SPACE`` (default parameter space for
grid search), a pure ``decide(inp, params) -> Decision`` and a pure
``exit_rule(trade, market, now, params) -> str | None``. The registry lists them in
evaluation order: the scanner runs every enabled one each cycle in that order, the IC
fallback after MDC; the backtester, the API and the CLI accept exactly these names.

``dc_family`` — DC and MDC share one slot limit (``DC_FAMILY_SLOTS``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

__all__ = ["DC_FAMILY", "StrategySpec", "UnknownStrategy", "family_of", "get", "names",
           "specs", "strategy_problem"]

DC_FAMILY = "dc_family"

#: (name, module, family, what its input needs, usable in an end-of-day backtest, fallback of)
_ENTRIES: tuple[tuple[str, str, str | None, str, bool, str | None], ...] = (
    ("CAL_ARB", "engine.strategies.cal_arb", None, "futures", False, None),
    ("DC", "engine.strategies.double_calendar", DC_FAMILY, "options", True, None),
    ("MDC", "engine.strategies.mdc", DC_FAMILY, "options", True, None),
    ("IC", "engine.strategies.iron_condor", None, "options", True, "MDC"),
)


class UnknownStrategy(ValueError):
    """A strategy name that is not registered (the message lists the valid ones)."""


@dataclass(frozen=True, slots=True)
class StrategySpec:
    name: str
    module: ModuleType
    family: str | None       # slot family (dc_family) or None: its own slot limit
    needs: str               # "options" (a MarketView) or "futures" (near/far quotes)
    eod_backtest: bool       # meaningful on end-of-day bhavcopy data
    fallback_of: str | None  # considered only in a cycle where that strategy selected nothing

    @property
    def knobs(self) -> tuple[Any, ...]:
        return tuple(self.module.KNOBS)

    @property
    def param_keys(self) -> tuple[str, ...]:
        return tuple(self.module.PARAM_KEYS)

    @property
    def grid_space(self) -> Mapping[str, tuple[Any, ...]]:
        return self.module.GRID_SPACE

    @property
    def decide(self) -> Callable[..., Any]:
        return self.module.decide

    @property
    def exit_rule(self) -> Callable[..., str | None]:
        return self.module.exit_rule

    @property
    def enabled_key(self) -> str:
        return f"{self.name}_ENABLED"


@cache
def specs() -> tuple[StrategySpec, ...]:
    """Every registered strategy, in evaluation order."""
    return tuple(StrategySpec(name, importlib.import_module(mod), family, needs, eod, fb)
                 for name, mod, family, needs, eod, fb in _ENTRIES)


def names() -> tuple[str, ...]:
    return tuple(name for name, *_ in _ENTRIES)


def get(name: str) -> StrategySpec:
    """The spec of ``name``.

    Raises:
        UnknownStrategy: not registered (names the valid ones).
    """
    for spec in specs():
        if spec.name == name:
            return spec
    raise UnknownStrategy(strategy_problem(name) or f"unknown strategy {name!r}")


def strategy_problem(name: Any) -> str | None:
    """Why ``name`` is not a registered strategy, or None."""
    if isinstance(name, str) and name in names():
        return None
    return f"unknown strategy {name!r}: expected one of {', '.join(names())}"


def family_of(name: str) -> str:
    """The slot family a strategy counts in (its own name when it has no family)."""
    for n, _mod, family, *_ in _ENTRIES:
        if n == name:
            return family or n
    return name
