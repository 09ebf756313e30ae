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
    "CLOSE_MODES",
    "AdoptPosition",
    "BookBrokerClose",
    "BrokerClosedLeg",
    "CheckChildren",
    "ClosePosition",
    "Crash",
    "DownloadBhavcopy",
    "EndOfDayTick",
    "FlattenSurplus",
    "GetStatus",
    "HealPartialExit",
    "HoldTrade",
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
    "SuspendExits",
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
        entry_context: what the trade journal needs from the cycle the entry was decided in
            (``engine.execution.journal.entry_context``: the market, the selection, the
            rejected strategies and variants); kept with the trade, read at close.
    """

    strategy: str
    tag: str
    legs: tuple[Leg, ...]
    reason: str = ""
    stage: str = "paper"
    reply_to: str | None = None
    params: Mapping[str, Any] = field(default_factory=_empty_mapping)
    entry_context: Mapping[str, Any] = field(default_factory=_empty_mapping)

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not self.legs:
            raise ValueError(f"OpenPosition {self.strategy}/{self.tag} has no legs")
        object.__setattr__(self, "legs", tuple(self.legs))


#: How a close is carried out: ``send`` the closing orders (default), or
#: ``record_from_broker`` — send nothing and record the trade closed at the prices of the
#: broker's trade book (the operator closed it at the broker; confirmed by the operator).
CLOSE_MODES = ("send", "record_from_broker")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosePosition(Command):
    """Close an open trade (all legs) by trade id or tag.

    Attributes:
        mode: ``send`` (default) or ``record_from_broker`` (see :data:`CLOSE_MODES`; the
            engine command ``close_trade`` requires ``confirm: true`` for it).
    """

    trade_id: int | None = None
    tag: str | None = None
    reason: str = ""
    reply_to: str | None = None
    mode: str = "send"

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if self.trade_id is None and self.tag is None:
            raise ValueError("ClosePosition needs a trade_id or a tag")
        if self.mode not in CLOSE_MODES:
            raise ValueError(f"ClosePosition mode {self.mode!r}: expected one of "
                             f"{', '.join(CLOSE_MODES)}")


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
    options: Mapping[str, Any] = field(default_factory=_empty_mapping)  # data, rank_by, ...
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


# --- closes the broker makes (engine.execution.broker_closes) ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerClosedLeg:
    """One leg of a trade closed by the broker (a value inside :class:`BookBrokerClose`).

    Attributes:
        leg_index: the leg's position in the trade.
        security_id / quantity: the trade's leg (units).
        price: the exit price: the VWAP of the broker's closing trades, or the settlement
            value at expiry.
        how: ``broker_order`` (the broker's own orders, ``order_ids``) or ``settlement``.
        parts: ``(quantity, price)`` per broker order (charges are per order).
        settlement_spot: the final settlement price (the NIFTY close) of a settled leg.
    """

    leg_index: int
    security_id: str
    quantity: int
    price: Decimal
    how: str
    order_ids: tuple[str, ...] = ()
    parts: tuple[tuple[int, Decimal], ...] = ()
    settlement_spot: Decimal | None = None

    def __post_init__(self) -> None:
        if self.how not in ("broker_order", "settlement"):
            raise ValueError(f"BrokerClosedLeg.how {self.how!r}: expected broker_order or "
                             "settlement")
        if not isinstance(self.price, Decimal):
            raise TypeError(f"BrokerClosedLeg.price must be a Decimal, got {self.price!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BookBrokerClose(Command):
    """Monitor -> executor: the broker closed this live trade by itself (RMS / P&L exit /
    15:20 intraday square-off / expiry settlement): record it closed at the broker's prices,
    sending nothing. Idempotent: a trade no longer open is ignored."""

    tag: str
    reason: str
    kind: str
    legs: tuple[BrokerClosedLeg, ...]

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not self.legs:
            raise ValueError(f"BookBrokerClose of {self.tag} has no legs")
        object.__setattr__(self, "legs", tuple(self.legs))


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldTrade(Command):
    """Monitor -> executor: suspend automatic exits of a trade (part of it was closed at
    the broker, or the netting cannot say whose quantity went); ``reason`` names the
    exposure at the broker."""

    tag: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspendExits(Command):
    """Monitor -> executor: the broker seems to have closed (part of) this trade by itself;
    refuse *automatic* closes of it for ``seconds`` of engine time (an exit sent now would
    open new positions). Sent again on every check while the sighting lasts; a manual close
    is not affected."""

    tag: str
    reason: str
    seconds: int = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class FlattenSurplus(Command):
    """Monitor -> executor: the broker holds short units of a security the books do not
    explain (a confirmed mismatch, no unsettled order on it): buy back ``quantity`` at the
    market through the live broker's operator-order path. ``expected`` / ``broker`` are the
    books' and the broker's net quantities the decision was made on."""

    security_id: str
    product: str
    quantity: int
    expected: int
    broker: int
    reason: str = ""

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) \
                or self.quantity <= 0:
            raise ValueError(f"FlattenSurplus quantity must be a positive int, got "
                             f"{self.quantity!r}")


# --- reconciliation auto-heal (engine.execution.recon_heal) ------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptPosition(Command):
    """Monitor -> executor: adopt a broker position no trade holds (seen on two checks) as
    live trade ``tag`` of strategy ``ADOPTED``; each leg's ``price`` is the broker's average
    price. Idempotent: an open tag, or a security some open trade holds, is ignored."""

    tag: str
    legs: tuple[Leg, ...]
    product: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=_empty_mapping)

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not self.legs or any(leg.price is None for leg in self.legs):
            raise ValueError(f"AdoptPosition {self.tag}: every leg needs the broker's price")
        object.__setattr__(self, "legs", tuple(self.legs))


@dataclass(frozen=True, slots=True, kw_only=True)
class HealPartialExit(Command):
    """Monitor -> executor: part of live trade ``tag`` was closed by hand at the broker, as
    the trade book shows: book that part closed at the broker's prices (``legs``: the units
    closed per leg) and keep the rest open. ``books``: the trade's leg quantities the heal was
    computed on (a heal of a trade that changed since is ignored)."""

    tag: str
    reason: str
    legs: tuple[BrokerClosedLeg, ...]
    books: tuple[int, ...]

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if not self.legs:
            raise ValueError(f"HealPartialExit of {self.tag} has no legs")
        object.__setattr__(self, "legs", tuple(self.legs))
        object.__setattr__(self, "books", tuple(self.books))
