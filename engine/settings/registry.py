"""The registry of every runtime-tunable knob: key, type, default, bounds or choices.

Only keys listed here may be stored in ``bot_settings``. Every knob is declared in this module
(the ``_SEED`` list), so the engine, the web and the CLI all see the same set whatever they
import. Values are stored as text and coerced on read.
"""

from __future__ import annotations

import re
import threading
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
_STRATEGIES_LOADING = False
_STRATEGIES_LOCK = threading.RLock()


def _strategy_knobs() -> None:
    """Register every strategy's own knobs (declared in its module) on first use; lazily,
    because the strategy modules import this one for ``Knob``. Under a lock, and flagged
    loaded only once every knob is registered: two first callers on two threads (two web
    requests) must both see the strategies' knobs; the same thread re-entering while the
    strategy modules import returns at once."""
    global _STRATEGIES_LOADED, _STRATEGIES_LOADING
    if _STRATEGIES_LOADED:
        return
    with _STRATEGIES_LOCK:
        if _STRATEGIES_LOADED or _STRATEGIES_LOADING:
            return
        _STRATEGIES_LOADING = True
        try:
            from engine.strategies.registry import specs

            for spec in specs():
                for k in spec.knobs:
                    register(k)
            _STRATEGIES_LOADED = True
        finally:
            _STRATEGIES_LOADING = False


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
    Knob("AI_EXIT_OVERLAY_ENABLED", bool, False, "Run the AI exit overlays (breakout risk, "
         "sentiment risk) on open trades; AI_EXIT_OVERLAY_MODE says whether they close trades "
         "or only advise."),
    # AI flows (engine/ai, issue 19); the endpoint, model and key are LLM_* environment variables.
    Knob("LLM_TIMEOUT_S", int, 30, "Seconds one LLM call may take before it is abandoned.", 1, 600),
    Knob("LLM_RETRIES", int, 2, "Retries of an LLM call after a 5xx, a 429 or a connection error "
         "(back-off 1, 2, 4 s; Retry-After honoured up to 30 s).", 0, 5),
    Knob("AI_MAX_OUTPUT_TOKENS", int, 600, "max_tokens asked of the model per call.", 50, 8000),
    Knob("AI_MARKET_ENABLED", bool, True, "Run the daily AI_MARKET analysis (flow 1) when the "
         "LLM port is configured."),
    Knob("AI_MARKET_RUN_TIME", str, "09:30", "IST time after the open of the daily AI_MARKET "
         "analysis.", choices=("09:20", "09:30", "09:45", "10:00", "10:30", "11:00")),
    Knob("AI_MARKET_MIN_CONFIDENCE", int, 60, "Trade an AI_MARKET idea only at this verdict "
         "confidence % or more (below: analysis stored, nothing traded).", 0, 100),
    Knob("AI_MARKET_LOTS", int, 1, "Lots of the AI_MARKET option bought per idea.", 1, 10),
    Knob("AI_MARKET_EXIT_TIME", str, "15:00", "IST time an open AI_MARKET trade is closed.",
         choices=("14:30", "14:45", "15:00", "15:10", "15:15")),
    Knob("AI_MARKET_PROFIT_TARGET_PCT", D, D("1"), "Backstop target of an AI_MARKET trade as a "
         "fraction of its premium (the monitor's generic rule; the model's own target, at most "
         "90 %, normally fires first).", D("0.05"), D("10")),
    Knob("AI_MARKET_STOP_LOSS_PCT", D, D("0.6"), "Backstop stop of an AI_MARKET trade as a "
         "fraction of its premium (the model's own stop, at most 50 %, normally fires first).",
         D("0.05"), D("1")),
    Knob("AI_PREDICT_EVERY_MIN", int, 60, "Minutes between market_view / breakout_risk "
         "predictions in market hours (each task also capped by AI_PREDICT_DAILY_RUN_CAP).",
         15, 390),
    Knob("AI_HINTS_ENABLED", bool, False, "Apply AI predictions as scan hints: a HIGH breakout "
         "risk blocks new entries of the short-gamma strategies."),
    Knob("AI_HINT_MIN_CONFIDENCE", int, 60, "Confidence % a prediction needs to become a hint.",
         0, 100),
    Knob("AI_SHORT_GAMMA_STRATEGIES", str, "DC,MDC,IC", "Strategies the breakout-risk hint and "
         "exit overlay treat as short gamma (comma-separated)."),
    Knob("AI_EXIT_OVERLAY_MODE", str, "ADVISORY_ONLY", "With AI_EXIT_OVERLAY_ENABLED: "
         "AUTO_CLOSE closes the covered trade through the executor, ADVISORY_ONLY alerts only.",
         choices=("AUTO_CLOSE", "ADVISORY_ONLY")),
    Knob("AI_EXIT_MIN_CONFIDENCE", int, 70, "Confidence % a HIGH breakout-risk prediction needs "
         "for the exit overlay.", 0, 100),
    Knob("AI_SENTIMENT_EVERY_MIN", int, 10, "Minutes between deterministic sentiment samples "
         "(ai_market_sentiment) in market hours.", 1, 120),
    Knob("AI_SENTIMENT_EXIT_SCORE", int, 60, "|sentiment score| at which the sentiment-risk "
         "overlay advises (or closes, as the exit overlay) exposed trades.", 1, 100),
    Knob("AI_SENTIMENT_MIN_COVERAGE", int, 50, "Coverage % a sentiment sample needs before the "
         "sentiment-risk overlay uses it.", 0, 100),
    Knob("AI_DEBRIEF_DAILY_TOKEN_BUDGET", int, 20000, "Tokens (input + output) the journal "
         "debriefs may use per day; 0 disables them.", 0, 10000000),
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
    # Reconciliation auto-heal (engine/execution/recon_heal.py).
    Knob("RECON_ADOPT_ORPHANS", bool, True, "Adopt a NIFTY F&O position at the broker that no "
         "trade holds (seen on two reconciliation checks) as a live trade of strategy ADOPTED; "
         "false: alert only."),
    Knob("ADOPTED_STOP_LOSS_PCT", D, D("0.5"), "Stop loss of an adopted position, as a fraction "
         "of its margin proxy.", D("0.01"), D("10")),
    Knob("ADOPTED_PROFIT_TARGET_PCT", D, D("0.3"), "Profit target of an adopted position, as a "
         "fraction of its margin proxy.", D("0.01"), D("10")),
    # Daily backtest-vs-live parity report (engine/backtest/parity.py).
    Knob("PARITY_PRICE_TOLERANCE", D, D("0.05"), "Parity report: a fill more than this many ₹ "
         "per unit from the backtest's modelled fill is flagged.", D("0"), D("1000")),
    Knob("PARITY_RUPEE_TOLERANCE", D, D("1"), "Parity report: a charges or P&L difference above "
         "this many ₹ per trade is flagged.", D("0"), D("1000000")),
    Knob("PARITY_DAILY", bool, True, "Build the day's parity report after the close (a worker "
         "process replays the day's snapshots), store it and send its summary to chat."),
    Knob("PARITY_STRATEGIES", str, "DC,MDC,IC", "Strategies the daily parity report replays "
         "(comma-separated options strategies; CAL_ARB has no recorded futures quotes)."),
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
    # Live operations (BROKER=dhan): preflights, order-rate governor, backstops at the broker.
    Knob("LIVE_MAX_MARGIN_UTIL", D, D("0.8"), "Refuse a live entry whose margin (Dhan's "
         "multi-order calculator for the whole structure, plus the expiry-day margin when "
         "held into it) exceeds this share of the available funds at Dhan.", D("0.05"), D("1")),
    Knob("LIVE_ORDER_RATE_PER_SEC", int, 8, "Orders per second per exchange segment this "
         "process sends (entries, exits, flattens, cancels; exits first), below SEBI's "
         "retail-algo threshold and Dhan's 10/s.", 1, 10),
    Knob("LIVE_IP_ECHO_URL", str, "https://api.ipify.org", "Echo service that answers this "
         "machine's egress IP (plain text or JSON {\"ip\"}) for the static-IP preflight."),
    Knob("LIVE_DAILY_CHECK_TIME", str, "09:00", "IST time of the daily static-IP check and "
         "P&L-exit setting (also run at start).",
         choices=("08:30", "08:45", "09:00", "09:05", "09:10")),
    Knob("LIVE_KILL_SWITCH_ON_ESCALATION", bool, False, "After a supervisor escalation, "
         "activate Dhan's kill switch (no further orders today) once the account is flat."),
    Knob("LIVE_PNL_EXIT_ENABLED", bool, False, "Each trading morning set Dhan's P&L-based exit "
         "at RISK_DAILY_LOSS_CAP: Dhan squares the account off by itself if the engine dies."),
    Knob("LIVE_PNL_EXIT_PROFIT", D, D("10000000"), "Profit (₹) at which Dhan's P&L-based exit "
         "squares off (Dhan requires one; the default is out of reach).", D("1"),
         D("10000000000")),
    Knob("LIVE_PNL_EXIT_KILL_SWITCH", bool, True, "Ask Dhan to activate the kill switch after "
         "its P&L-based exit squared the account off."),
    # Paper execution.
    Knob("PAPER_SLIPPAGE_TICKS", int, 1, "Ticks (₹0.05) of adverse slippage on paper fills.", 0, 100),
]
for _k in _SEED:
    register(_k)
