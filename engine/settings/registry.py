"""The registry of every runtime-tunable knob: key, type, default, bounds or choices.

Only keys listed here may be stored in ``bot_settings``. Every knob is declared in this module
(the ``_SEED`` list), so the engine, the web and the CLI all see the same set whatever they
import. Values are stored as text and coerced on read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


class SettingError(ValueError):
    """An unknown key or a value outside what the knob allows."""


@dataclass(frozen=True, slots=True)
class Knob:
    key: str
    type: type            # bool | int | Decimal | str
    default: Any
    description: str
    minimum: Decimal | int | None = None
    maximum: Decimal | int | None = None
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """Human description of what values are accepted."""
        if self.type is bool:
            return "true or false"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kind = {int: "an integer", Decimal: "a decimal number", str: "text"}[self.type]
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} between {self.minimum} and {self.maximum}"
        if self.minimum is not None:
            return f"{kind} of at least {self.minimum}"
        if self.maximum is not None:
            return f"{kind} of at most {self.maximum}"
        return kind

    def coerce(self, raw: str) -> Any:
        """Parse ``raw`` text into this knob's type, or raise SettingError saying what is allowed."""
        text = str(raw).strip()
        bad = SettingError(f"{self.key}={raw!r} refused: expected {self.allowed()}")
        if self.type is bool:
            lowered = text.lower()
            if lowered in {"true", "1", "yes", "on"}:
                return True
            if lowered in {"false", "0", "no", "off"}:
                return False
            raise bad
        if self.type is str:
            if self.choices and text not in self.choices:
                raise bad
            if not text and not self.choices:
                raise bad
            return text
        # plain ASCII notation only: Python would also take "５" (full-width), "1_0" and "1e1"
        pattern = _INT_TEXT if self.type is int else _DECIMAL_TEXT
        if not pattern.fullmatch(text):
            raise bad
        try:
            value: Any = int(text) if self.type is int else Decimal(text)
        except (ValueError, InvalidOperation):
            raise bad from None
        if self.type is Decimal and not value.is_finite():
            raise bad
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise bad
        return value

    def render(self, value: Any) -> str:
        """Canonical text form of a value of this knob."""
        if self.type is bool:
            return "true" if value else "false"
        return str(value)


_REGISTRY: dict[str, Knob] = {}


def register(knob: Knob) -> Knob:
    """Add a knob; registering the same key twice with a different definition is an error."""
    existing = _REGISTRY.get(knob.key)
    if existing is not None and existing != knob:
        raise SettingError(f"setting {knob.key} is registered twice with different definitions")
    if knob.key != knob.key.upper():
        raise SettingError(f"setting key {knob.key!r} must be UPPER_SNAKE_CASE")
    knob.coerce(knob.render(knob.default))  # the default must itself be valid
    _REGISTRY[knob.key] = knob
    return knob


def knob(key: str) -> Knob:
    """The knob for ``key``, or SettingError listing close matches."""
    _strategy_knobs()
    try:
        return _REGISTRY[key]
    except KeyError:
        close = [k for k in _REGISTRY if key.split("_")[0] in k][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SettingError(f"unknown setting {key!r}{hint} (see `python -m engine settings list`)") from None


def all_knobs() -> list[Knob]:
    _strategy_knobs()
    return sorted(_REGISTRY.values(), key=lambda k: k.key)


_STRATEGIES_LOADED = False


def _strategy_knobs() -> None:
    """Register every strategy's own knobs (declared in its module) on first use; lazily,
    because the strategy modules import this one for ``Knob``."""
    global _STRATEGIES_LOADED
    if _STRATEGIES_LOADED:
        return
    _STRATEGIES_LOADED = True
    from engine.strategies.registry import specs

    for spec in specs():
        for k in spec.knobs:
            register(k)


D = Decimal
_SEED = [
    # Strategies: each strategy module declares its own knobs (engine/strategies/registry.py);
    # the slot limit DC and MDC share is the family's.
    Knob("DC_FAMILY_SLOTS", int, 1, "Open dc_family (DC + MDC) positions allowed at once.", 0, 10),
    # Risk envelope.
    Knob("RISK_DAILY_LOSS_CAP", D, D("10000"), "Pause entries when today's P&L falls below -cap (₹).",
         D("0"), D("100000000")),
    Knob("RISK_WEEKLY_LOSS_CAP", D, D("25000"), "Weekly loss cap (₹).", D("0"), D("100000000")),
    Knob("RISK_MONTHLY_LOSS_CAP", D, D("50000"), "Monthly loss cap (₹).", D("0"), D("100000000")),
    Knob("RISK_MAX_LOSS_STREAK", int, 4, "Pause entries after this many losing closes in a row.", 1, 100),
    Knob("RISK_MAX_OPEN_POSITIONS", int, 3, "Open positions allowed across strategies.", 0, 50),
    Knob("RISK_CAPITAL_BASE", D, D("500000"),
         "Capital (₹) the margin caps are shares of: the risk envelope's capital base (one per "
         "stage's book; the same default as STARTING_CAPITAL, which only starts the equity "
         "curve).", D("10000"), D("10000000000")),
    Knob("RISK_MAX_MARGIN_PCT", D, D("0.5"),
         "Refuse an entry whose margin (Dhan's calculator in live, the approximation in paper "
         "and backtest, plus the expiry-day jump when held into it) exceeds this share of "
         "RISK_CAPITAL_BASE.", D("0.01"), D("1")),
    Knob("RISK_MAX_TOTAL_MARGIN_PCT", D, D("0.9"),
         "Refuse an entry when its margin plus the margin of the stage's open positions "
         "exceeds this share of RISK_CAPITAL_BASE.", D("0.01"), D("1")),
    # Monitor.
    Knob("EXPIRY_DAY_EXIT_TIME", str, "15:00", "Close positions expiring today at this IST time.",
         choices=("14:30", "14:45", "15:00", "15:10", "15:15", "15:20")),
    # AI flows (off unless an LLM endpoint is configured).
    Knob("AI_PREDICT_DAILY_RUN_CAP", int, 6, "ai_predictions rows allowed per day.", 0, 100),
    Knob("AI_EXIT_OVERLAY_ENABLED", bool, False, "Let breakout-risk advisories close trades."),
    # Go-live seeds: only read when go_live_state is empty.
    Knob("CAL_ARB_DRY_RUN", bool, True, "Seed: CAL_ARB starts in paper mode on first run."),
    Knob("DC_DRY_RUN", bool, True, "Seed: DC starts in paper mode on first run."),
    Knob("MDC_DRY_RUN", bool, True, "Seed: MDC starts in paper mode on first run."),
    Knob("IC_DRY_RUN", bool, True, "Seed: IC starts in paper mode on first run."),
    Knob("AI_MARKET_DRY_RUN", bool, True, "Seed: AI_MARKET starts in paper mode on first run."),
    # Live reconciliation (BROKER=dhan).
    Knob("RECON_EVERY_CYCLES", int, 4,
         "Reconcile live trades against the broker's positions every this many monitor cycles "
         "(BROKER=dhan only).", 1, 1000),
    # Backtests (engine/backtest): the end-of-day replay's fill model and capital base.
    Knob("BT_DATA", str, "bhavcopy", "Backtest market data: bhavcopy (end-of-day NSE files in "
         "bhavcopy_ohlc), snapshots (the engine's recorded iv_snapshots) or sim (the simulated "
         "market).", choices=("bhavcopy", "snapshots", "sim")),
    Knob("BT_FILL_MODEL", str, "close", "End-of-day backtest fills: close (day d's close ± the "
         "modelled half-spread) or next_close (d+1's close, a sensitivity check).",
         choices=("close", "next_close")),
    Knob("BT_CAPITAL", D, D("500000"), "Capital base (₹) of backtest returns, drawdown %, Sharpe "
         "and Sortino.", D("1000"), D("10000000000")),
    # Chat (engine/chat): which channel gets messages first, and how loud each event is.
    Knob("CHAT_PRIMARY", str, "telegram", "Chat channel tried first (the other enabled one is "
         "the fallback when it is unreachable or fails).", choices=("telegram", "cliq")),
    *[Knob(f"NOTIFY_{name}", str, "on", f"Chat notification of {what}: on, silent (no sound) "
           "or off.", choices=("on", "silent", "off")) for name, what in (
        ("OPENS", "positions opened"), ("CLOSES", "positions closed (P&L, reason)"),
        ("RISK", "risk pauses and resumes"), ("ALERTS", "holds, naked legs and other alerts"),
        ("ORDERS", "rejected orders"), ("TOKEN", "Dhan token refreshes and problems"),
        ("RESTARTS", "actor restarts and escalations"), ("BACKTEST", "finished backtests"),
        ("DAILY_SUMMARY", "the daily summary after the close"))],
    # Paper execution.
    Knob("PAPER_SLIPPAGE_TICKS", int, 1, "Ticks (₹0.05) of adverse slippage on paper fills.", 0, 100),
]
for _k in _SEED:
    register(_k)
