"""Commands: requests to an actor, named verb-first.

``reply_to`` fields hold a *role name* (resolved through the directory when the answer is
sent), never an ``ActorRef``: refs change when the supervisor restarts an actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.messages.base import Command
from engine.messages.legs import Leg

__all__ = [
    "CheckChildren",
    "ClosePosition",
    "Crash",
    "DownloadBhavcopy",
    "EndOfDayTick",
    "GetStatus",
    "MonitorTick",
    "OpenPosition",
    "PauseEntries",
    "Ping",
    "Probe",
    "PruneTick",
    "RefreshToken",
    "ResetEscalation",
    "ResolveIntents",
    "ResolveOrder",
    "RestartChild",
    "ResumeEntries",
    "RunBacktest",
    "RunGrid",
    "ScanTick",
    "SetGoLiveStage",
    "Tick",
    "TokenCheckTick",
]


def _empty_mapping() -> Mapping[str, Any]:
    return {}


# --- trading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenPosition(Command):
    """An entry intent: scanner -> risk -> executor.

    Attributes:
        strategy: strategy name.
        tag: the trade tag / client reference that identifies this entry.
        legs: the legs to open, in the order they should be placed.
        reason: why the strategy wants this entry (shown in the battle log).
        stage: go-live stage the entry runs in ("paper", "shadow", "live").
        reply_to: role that wants the outcome events (``EntryDenied`` etc.).
        params: strategy parameters / context to keep with the trade (treat as read-only).
    """

    strategy: str
    tag: str
    legs: tuple[Leg, ...]
    reason: str = ""
    stage: str = "paper"
    reply_to: str | None = None
    params: Mapping[str, Any] = field(default_factory=_empty_mapping)

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not self.legs:
            raise ValueError(f"OpenPosition {self.strategy}/{self.tag} has no legs")
        object.__setattr__(self, "legs", tuple(self.legs))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosePosition(Command):
    """Close an open trade (all legs) by trade id or tag."""

    trade_id: int | None = None
    tag: str | None = None
    reason: str = ""
    reply_to: str | None = None

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if self.trade_id is None and self.tag is None:
            raise ValueError("ClosePosition needs a trade_id or a tag")


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseEntries(Command):
    """Stop new entries (open positions stay monitored)."""

    reason: str
    source: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeEntries(Command):
    """Allow new entries again."""

    reason: str = ""
    source: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetGoLiveStage(Command):
    """Move a strategy between go-live stages ("paper", "shadow", "live")."""

    strategy: str
    stage: str
    reason: str = ""


# --- token / backtest -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshToken(Command):
    """Refresh the broker token (for example after a 401 reported by another actor)."""

    reason: str = ""
    force: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunBacktest(Command):
    """Run one backtest."""

    strategy: str
    start: date
    end: date
    params: Mapping[str, Any] = field(default_factory=_empty_mapping)
    run_id: int | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunGrid(Command):
    """Run a grid search: one backtest per parameter dict."""

    strategy: str
    start: date
    end: date
    grid: tuple[Mapping[str, Any], ...]
    job_id: int | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadBhavcopy(Command):
    """Fetch NSE bhavcopy files for a date range."""

    start: date
    end: date


# --- ticks (from the scheduler) ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(Command):
    """A scheduler tick; ``at`` is the planned clock time of the tick."""

    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanTick(Tick):
    """Run one scan cycle (market hours only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorTick(Tick):
    """Run one monitor cycle over open positions (market hours only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCheckTick(Tick):
    """Check the broker token's validity / expiry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneTick(Tick):
    """Delete rows of ``table`` older than ``keep_days`` (sent to the table's owner)."""

    table: str
    keep_days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfDayTick(Tick):
    """The trading day's session has closed."""

    trading_day: date


# --- supervision / infrastructure -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartChild(Command):
    """Supervisor-internal: start a new incarnation of child ``name``."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckChildren(Command):
    """Supervisor-internal: run the liveness check now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetEscalation(Command):
    """Tell the supervisor the operator has handled an escalation (level back to 0)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness probe: every `SupervisedActor` answers ``"pong"`` to ``ask(Ping())``."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Settle probe: a `SupervisedActor` answers with its processed-message count."""


@dataclass(frozen=True, slots=True)
class GetStatus:
    """Ask the supervisor for a status snapshot (dict per child)."""


@dataclass(frozen=True, slots=True)
class Crash:
    """Fault injection (chaos tests, ``engine chaos``): the receiving actor raises on it,
    exactly as an unexpected bug would, so supervision and recovery can be exercised."""

    reason: str = "crash injected"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveIntents(Command):
    """Executor to itself (from its back-off timer): look the unsettled order intents up
    again and finish what they started (record, unwind, roll an exit forward)."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveOrder(Command):
    """The operator's decision on an unresolved order (engine command ``resolve_order``).

    Attributes:
        correlation_id: the order intent (``order_intents.correlation_id``).
        action: ``filled`` (at ``price``, for ``quantity`` units, default the whole order),
            ``not_filled``, or ``flatten`` (send an opposite MARKET order of ``quantity``
            units of the intent's security, then treat the intent as not filled).
        by: who decided.
    """

    correlation_id: str
    action: str
    price: Decimal | None = None
    quantity: int | None = None
    by: str = "operator"
