"""Events: facts that happened, named in the past tense.

Events never carry secrets (no tokens, PINs, OTPs) and never carry live objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.messages.base import Event
from engine.messages.legs import Leg

__all__ = [
    "ActorEscalated",
    "ActorRestarted",
    "AlertRaised",
    "BacktestFinished",
    "ChildFailed",
    "EntryDenied",
    "MarkedToMarket",
    "OrderRejected",
    "PositionClosed",
    "PositionOpened",
    "RiskPaused",
    "RiskResumed",
    "TokenRefreshFailed",
    "TokenRefreshed",
]


def _empty_mapping() -> Mapping[str, Any]:
    return {}


# --- trading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionOpened(Event):
    """The executor opened a trade (all legs filled)."""

    trade_id: int
    strategy: str
    tag: str
    legs: tuple[Leg, ...]
    stage: str = "paper"
    entry_premium: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionClosed(Event):
    """The executor closed a trade."""

    trade_id: int
    strategy: str
    tag: str
    reason: str = ""
    realized_pnl: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(Event):
    """The broker (or paper broker) rejected an order."""

    strategy: str
    tag: str
    reason: str
    broker_code: str | None = None
    trade_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryDenied(Event):
    """The risk actor refused an entry intent."""

    strategy: str
    tag: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskPaused(Event):
    """New entries are paused."""

    reason: str
    source: str = "risk"
    paused_until: datetime | None = None  # None: until resumed
    stage: str | None = None  # None: every stage; else only that go-live stage's entries


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskResumed(Event):
    """New entries are allowed again."""

    reason: str = ""
    source: str = "risk"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkedToMarket(Event):
    """A mark-to-market of one open trade."""

    trade_id: int
    mtm: Decimal
    spot: Decimal | None = None
    tag: str = ""


# --- token / backtest -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRefreshed(Event):
    """A new broker token is in runtime_state (the token itself is never in the event)."""

    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRefreshFailed(Event):
    """A token refresh attempt failed (reason must not contain secrets)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestFinished(Event):
    """A backtest run or grid job finished."""

    status: str
    run_id: int | None = None
    job_id: int | None = None
    strategy: str = ""
    start: date | None = None
    end: date | None = None
    summary: Mapping[str, Any] = field(default_factory=_empty_mapping)


# --- supervision ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildFailed(Event):
    """A supervised actor died (sent by the child itself to its supervisor)."""

    name: str
    urn: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRestarted(Event):
    """The supervisor started a new incarnation of ``name`` (attempt counts from 1)."""

    name: str
    attempt: int
    urn: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorEscalated(Event):
    """A child exceeded its restart intensity or got stuck.

    Level 1: new entries halted, monitoring continues. Level 2: the process exits.
    """

    name: str
    level: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRaised(Event):
    """Something an operator must know now (market data down, stale instrument master, ...)."""

    source: str
    text: str
