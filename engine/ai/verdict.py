"""The JSON the model must answer, and its validation (pure).

Every answer is one JSON object; a wrong shape raises :class:`AnswerInvalid` naming the field
and what was expected (stored as the row's error text; nothing is traded on it).

AI_MARKET (flow 1)::

    {"verdict": "BULLISH|BEARISH|NEUTRAL", "confidence_pct": 0..100,
     "trade_idea": null | {"option_type": "CE|PE", "strike_offset": -5..5,
                           "target_pct": 5..90, "stop_pct": 5..50, "reasoning": "..."},
     "reasoning": "..."}

``strike_offset`` counts listed strikes from the near expiry's ATM (+1: the next strike up);
``target_pct`` / ``stop_pct`` are the premium's rise / fall in % at which the bought option
is sold. A BULLISH verdict buys a CE, a BEARISH one a PE; NEUTRAL trades nothing.

market_view (flow 2)::

    {"verdict": "BULLISH|BEARISH|NEUTRAL", "confidence_pct": 0..100,
     "horizon_minutes": 15..390, "reasoning": "..."}

breakout_risk (flow 2)::

    {"risk": "LOW|MEDIUM|HIGH", "direction": "UP|DOWN|EITHER", "confidence_pct": 0..100,
     "horizon_minutes": 15..390, "reasoning": "..."}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["AnswerInvalid", "MarketVerdict", "Prediction", "TradeIdea", "parse_json_object",
           "parse_market_verdict", "parse_prediction"]

VERDICTS = ("BULLISH", "BEARISH", "NEUTRAL")
RISKS = ("LOW", "MEDIUM", "HIGH")
DIRECTIONS = ("UP", "DOWN", "EITHER")
MAX_REASONING = 2000
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class AnswerInvalid(ValueError):
    """The model's answer does not match the schema (the message names the field)."""


@dataclass(frozen=True, slots=True)
class TradeIdea:
    option_type: str
    strike_offset: int
    target_pct: Decimal
    stop_pct: Decimal
    reasoning: str


@dataclass(frozen=True, slots=True)
class MarketVerdict:
    verdict: str
    confidence_pct: Decimal
    idea: TradeIdea | None
    reasoning: str
    parsed: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Prediction:
    task: str
    verdict: str                 # market_view: BULLISH..; breakout_risk: LOW/MEDIUM/HIGH
    confidence_pct: Decimal
    horizon_minutes: int
    direction: str | None
    reasoning: str
    parsed: Mapping[str, Any]


def parse_json_object(text: str) -> dict[str, Any]:
    """The one JSON object of ``text`` (a ```json fence around it is tolerated)."""
    if not isinstance(text, str) or not text.strip():
        raise AnswerInvalid("empty answer: expected one JSON object")
    m = _FENCE.match(text)
    body = m.group(1) if m else text
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise AnswerInvalid(f"answer is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, dict):
        raise AnswerInvalid(f"answer is JSON {type(value).__name__}, expected an object")
    return value


def _choice(obj: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or value.strip().upper() not in choices:
        raise AnswerInvalid(f"{where}{key}={value!r}: expected one of {', '.join(choices)}")
    return value.strip().upper()


def _number(obj: Mapping[str, Any], key: str, lo: Decimal, hi: Decimal, where: str = "") -> Decimal:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AnswerInvalid(f"{where}{key}={value!r}: expected a number between {lo} and {hi}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise AnswerInvalid(f"{where}{key}={value!r}: expected a number between {lo} and {hi}") from None
    if not d.is_finite() or d < lo or d > hi:
        raise AnswerInvalid(f"{where}{key}={value!r}: expected a number between {lo} and {hi}")
    return d


def _integer(obj: Mapping[str, Any], key: str, lo: int, hi: int, where: str = "") -> int:
    d = _number(obj, key, Decimal(lo), Decimal(hi), where)
    if d != d.to_integral_value():
        raise AnswerInvalid(f"{where}{key}={obj.get(key)!r}: expected a whole number")
    return int(d)


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AnswerInvalid(f"{key}: expected text, got {type(value).__name__}")
    return value.strip()[:MAX_REASONING]


def parse_market_verdict(text: str) -> MarketVerdict:
    """Flow 1's answer, validated (see the module docstring)."""
    obj = parse_json_object(text)
    verdict = _choice(obj, "verdict", VERDICTS)
    confidence = _number(obj, "confidence_pct", Decimal(0), Decimal(100))
    raw_idea = obj.get("trade_idea")
    idea = None
    if raw_idea is not None:
        if not isinstance(raw_idea, dict):
            raise AnswerInvalid(f"trade_idea: expected an object or null, got {raw_idea!r}")
        w = "trade_idea."
        idea = TradeIdea(option_type=_choice(raw_idea, "option_type", ("CE", "PE"), w),
                         strike_offset=_integer(raw_idea, "strike_offset", -5, 5, w),
                         target_pct=_number(raw_idea, "target_pct", Decimal(5), Decimal(90), w),
                         stop_pct=_number(raw_idea, "stop_pct", Decimal(5), Decimal(50), w),
                         reasoning=_text(raw_idea, "reasoning"))
        wanted = {"BULLISH": "CE", "BEARISH": "PE"}.get(verdict)
        if wanted is None:
            raise AnswerInvalid("trade_idea given with verdict NEUTRAL: expected null")
        if idea.option_type != wanted:
            raise AnswerInvalid(f"trade_idea.option_type {idea.option_type} contradicts verdict "
                                f"{verdict} (expected {wanted})")
    return MarketVerdict(verdict=verdict, confidence_pct=confidence, idea=idea,
                         reasoning=_text(obj, "reasoning"), parsed=obj)


def parse_prediction(task: str, text: str) -> Prediction:
    """A flow 2 answer of ``task`` (market_view or breakout_risk), validated."""
    obj = parse_json_object(text)
    if task == "market_view":
        verdict, direction = _choice(obj, "verdict", VERDICTS), None
    elif task == "breakout_risk":
        verdict, direction = _choice(obj, "risk", RISKS), _choice(obj, "direction", DIRECTIONS)
    else:
        raise ValueError(f"task {task!r}: expected market_view or breakout_risk")
    return Prediction(task=task, verdict=verdict,
                      confidence_pct=_number(obj, "confidence_pct", Decimal(0), Decimal(100)),
                      horizon_minutes=_integer(obj, "horizon_minutes", 15, 390),
                      direction=direction, reasoning=_text(obj, "reasoning"), parsed=obj)
