"""Fixtures of the AI tests: the fake chat-completions server and a client on it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.ai.llm import LlmClient, LlmConfig
from tests.ai.fake_llm import FakeLlm, task_of

GOOD_MARKET = {"verdict": "BULLISH", "confidence_pct": 72, "reasoning": "gap holds, puts written",
               "trade_idea": {"option_type": "CE", "strike_offset": 1, "target_pct": 40,
                              "stop_pct": 25, "reasoning": "momentum"}}
ANSWERS: dict[str, Any] = {
    "ai_market": GOOD_MARKET,
    "market_view": {"verdict": "NEUTRAL", "confidence_pct": 55, "horizon_minutes": 60,
                    "reasoning": "range"},
    "breakout_risk": {"risk": "LOW", "direction": "EITHER", "confidence_pct": 65,
                      "horizon_minutes": 60, "reasoning": "quiet"},
    "debrief": {"narrative": "Entered on a calm tape, exited on the rule.", "grade": "B",
                "lesson": "size stays small"},
}


def by_task(body: dict[str, Any]) -> str:
    return json.dumps(ANSWERS.get(task_of(body), {}))


@pytest.fixture
def fake():
    f = FakeLlm(by_task)
    yield f
    f.close()


@pytest.fixture
def llm(fake) -> LlmClient:
    return LlmClient(LlmConfig(base_url=fake.url, model="fake-1", api_key="sk-fake-key-1234"),
                     timeout_s=2, retries=0, backoff=(0.01,))
