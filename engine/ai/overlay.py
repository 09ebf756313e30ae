"""Flow 3 — the breakout-risk exit overlay, and flow 4's sentiment-risk overlay (pure).

:func:`breakout_exit`: an active breakout_risk prediction (``now`` within its horizon) of risk
HIGH with confidence ≥ ``AI_EXIT_MIN_CONFIDENCE`` *covers* every open trade of a short-gamma
strategy (``AI_SHORT_GAMMA_STRATEGIES``) → ``AUTO_CLOSE`` when ``AI_EXIT_OVERLAY_MODE=AUTO_CLOSE``,
otherwise ``ADVISORY_ONLY`` (an alert, nothing closed). Both overlays run only with
``AI_EXIT_OVERLAY_ENABLED`` (:func:`overlay_decisions` is empty without it).

:func:`sentiment_exit`: a sentiment sample no older than ``SENTIMENT_MAX_AGE`` with coverage ≥
``AI_SENTIMENT_MIN_COVERAGE`` and |score| ≥ ``AI_SENTIMENT_EXIT_SCORE`` exposes a short-gamma
trade (either direction) or a bought option against it (a CE on a bearish score, a PE on a
bullish one); same action rule, reason ``AI_SENTIMENT_RISK``.

A trade on hold (waiting for the operator) is never auto-closed: it is advised only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.ai.predictions import active_prediction, short_gamma
from engine.execution.trades import Trade
from engine.messages.legs import Side

__all__ = ["ADVISORY_ONLY", "AUTO_CLOSE", "BREAKOUT", "SENTIMENT", "ExitDecision",
           "breakout_exit", "overlay_decisions", "sentiment_exit"]

AUTO_CLOSE, ADVISORY_ONLY = "AUTO_CLOSE", "ADVISORY_ONLY"
BREAKOUT, SENTIMENT = "AI_BREAKOUT_RISK", "AI_SENTIMENT_RISK"
SENTIMENT_MAX_AGE = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class ExitDecision:
    action: str          # AUTO_CLOSE | ADVISORY_ONLY
    reason: str          # AI_BREAKOUT_RISK | AI_SENTIMENT_RISK
    confidence_pct: Decimal
    text: str


def _action(trade: Trade, settings: Mapping[str, Any]) -> str:
    auto = str(settings.get("AI_EXIT_OVERLAY_MODE", ADVISORY_ONLY)) == AUTO_CLOSE
    return AUTO_CLOSE if auto and not trade.hold else ADVISORY_ONLY


def _short_gamma(trade: Trade, settings: Mapping[str, Any]) -> bool:
    return trade.strategy.upper() in short_gamma(settings.get("AI_SHORT_GAMMA_STRATEGIES",
                                                              "DC,MDC,IC"))


def breakout_exit(prediction: Mapping[str, Any] | None, trade: Trade,
                  settings: Mapping[str, Any], now: datetime) -> ExitDecision | None:
    """The overlay's decision for ``trade`` under ``prediction`` (an ai_predictions row)."""
    if prediction is None or prediction.get("task") != "breakout_risk" \
            or prediction.get("verdict") != "HIGH" or not _short_gamma(trade, settings):
        return None
    if active_prediction([prediction], "breakout_risk", now,
                         settings.get("AI_EXIT_MIN_CONFIDENCE", 70)) is None:
        return None
    conf = Decimal(str(prediction.get("confidence_pct")))
    direction = (prediction.get("payload") or {}).get("direction", "EITHER")
    return ExitDecision(_action(trade, settings), BREAKOUT, conf,
                        f"{BREAKOUT}: HIGH breakout risk ({direction}, {conf} % confidence, "
                        f"prediction #{prediction.get('id')}) covers short-gamma {trade.strategy} "
                        f"trade {trade.tag}")


def _bought_option(trade: Trade) -> str | None:
    if len(trade.legs) == 1 and trade.legs[0].leg.side is Side.BUY \
            and trade.legs[0].leg.option_type is not None:
        return trade.legs[0].leg.option_type.value
    return None


def sentiment_exit(sentiment: Mapping[str, Any] | None, trade: Trade,
                   settings: Mapping[str, Any], now: datetime) -> ExitDecision | None:
    """The sentiment-risk decision for ``trade`` (``sentiment``: an ai_market_sentiment row)."""
    if sentiment is None or now - sentiment["created_at"] > SENTIMENT_MAX_AGE \
            or sentiment["created_at"] > now:
        return None
    if Decimal(str(sentiment.get("coverage_pct") or 0)) < Decimal(
            str(settings.get("AI_SENTIMENT_MIN_COVERAGE", 50))):
        return None
    score = Decimal(str(sentiment["score"]))
    threshold = Decimal(str(settings.get("AI_SENTIMENT_EXIT_SCORE", 60)))
    if abs(score) < threshold:
        return None
    bought = _bought_option(trade)
    if _short_gamma(trade, settings):
        exposed = f"short-gamma {trade.strategy}"
    elif bought == "CE" and score < 0:
        exposed = "a bought CE"
    elif bought == "PE" and score > 0:
        exposed = "a bought PE"
    else:
        return None
    return ExitDecision(_action(trade, settings), SENTIMENT, abs(score),
                        f"{SENTIMENT}: sentiment {score} ({sentiment.get('label')}) against "
                        f"{exposed} trade {trade.tag}")


def overlay_decisions(predictions: Iterable[Mapping[str, Any]],
                      sentiment: Mapping[str, Any] | None, trades: Iterable[Trade],
                      settings: Mapping[str, Any], now: datetime
                      ) -> list[tuple[Trade, ExitDecision]]:
    """Every (trade, decision) of this cycle: breakout first, then sentiment, one per trade
    and reason."""
    if not settings.get("AI_EXIT_OVERLAY_ENABLED"):
        return []
    rows = list(predictions)
    risk = active_prediction(rows, "breakout_risk", now, settings.get("AI_EXIT_MIN_CONFIDENCE", 70))
    out: list[tuple[Trade, ExitDecision]] = []
    for trade in trades:
        for decision in (breakout_exit(risk, trade, settings, now),
                         sentiment_exit(sentiment, trade, settings, now)):
            if decision is not None:
                out.append((trade, decision))
    return out
