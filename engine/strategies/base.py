"""What strategies take and give: pure data, no I/O.

A strategy is a function ``(StrategyInput, params) -> Decision``. The live scanner and the
backtester call the very same functions; parameters are passed in explicitly (a dict of
setting values), never read from global configuration inside strategy code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.messages.legs import Leg


@dataclass(frozen=True, slots=True, kw_only=True)
class FuturesQuote:
    security_id: str
    expiry: Any  # datetime.date
    ltp: Decimal
    bid: Decimal
    ask: Decimal
    lot_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenTradeView:
    """What a strategy may know about one of its own open trades."""

    tag: str
    strategy: str
    opened_at: datetime
    direction: str                      # strategy-defined, e.g. LONG_SPREAD / SHORT_SPREAD
    legs: tuple[Leg, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyInput:
    now: datetime
    spot: Decimal
    near: FuturesQuote | None
    far: FuturesQuote | None
    spread_history: tuple[Decimal, ...] = ()   # oldest first, current contracts only
    open_trades: tuple[OpenTradeView, ...] = ()
    entries_paused_reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the options market view (chains of every listed expiry in reach, DTE, trading time,
    #: events, realized range): see engine.strategies.market_view. None when the source
    #: has no option chains (the futures-only CAL_ARB does not need it).
    market: Any = None
    #: slot use per family/strategy: {"dc_family": {"used": n, "limit": m}, "IC": {...}}
    slots: Mapping[str, Any] = field(default_factory=dict)
    #: market events around now (engine.events.model.MarketEvent), e.g.
    #: ``engine.events.store.events_between(pool, today - 7 days, today + 30 days)``; the
    #: event guard also reads ``market.events`` and ``extra["events"]``
    #: (engine.events.guard.input_events)
    events: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryIntent:
    strategy: str
    tag: str
    legs: tuple[Leg, ...]
    reason: str
    direction: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitIntent:
    strategy: str
    tag: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    strategy: str
    eligible: bool
    entries: tuple[EntryIntent, ...] = ()
    exits: tuple[ExitIntent, ...] = ()
    reasons: tuple[str, ...] = ()           # why ineligible / why no entry
    metrics: Mapping[str, Any] = field(default_factory=dict)
