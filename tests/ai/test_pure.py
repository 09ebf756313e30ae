"""The AI flows' pure parts: sentiment scores on hand-built inputs, the answer schemas, the
scan hints, the exit-overlay decisions, the AI_MARKET plan and the verdict outcome."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal as D

import pytest

from engine.ai.debrief import parse_debrief, verdict_outcome
from engine.ai.market_flow import exit_due, levels
from engine.ai.overlay import (
    ADVISORY_ONLY,
    AUTO_CLOSE,
    BREAKOUT,
    SENTIMENT,
    breakout_exit,
    overlay_decisions,
    sentiment_exit,
)
from engine.ai.predictions import hints_for
from engine.ai.sentiment import SentimentInputs, label_of, score_sentiment
from engine.ai.verdict import AnswerInvalid, parse_market_verdict, parse_prediction
from engine.execution.trades import OpenLeg, Trade
from engine.messages.legs import Leg, OptionType, Side
from engine.timeutil import IST

NOW = datetime(2025, 2, 3, 11, 0, tzinfo=IST)


# ---------------------------------------------------------------- sentiment (flow 4)
def test_sentiment_every_component_at_known_values() -> None:
    s = score_sentiment(SentimentInputs(
        spot=D("23500"), prev_close=D("23265.35"),       # +1.0086 % -> clipped +1
        basis=D("110"), ref_basis=D("100"),              # +10 pts / 20 -> +0.5
        pcr=D("1.25"), ref_pcr=D("1.15"),                # +0.25/0.5 = +0.5 ; +0.1/0.2 = +0.5
        atm_iv=D("14"), ref_atm_iv=D("13"),              # -1/2 -> -0.5
        ce_oi_atm=1000, pe_oi_atm=1600, ref_ce_oi_atm=800, ref_pe_oi_atm=1000,  # (600-200)/800 = .5 -> +1
        vix=D("14.7"), prev_vix=D("14")))                # -5 % / 5 -> -1
    # 0.30*1 + 0.10*.5 + 0.15*.5 + 0.10*.5 + 0.15*(-.5) + 0.15*1 + 0.05*(-1) = 0.50
    assert s.score == D("50.00") and s.label == "BULLISH" and s.strength_pct == D("50.00")
    assert s.coverage_pct == D("100.00")
    c = s.components
    assert c["oi_buildup_atm"]["normalized"] == "1.0000" and c["india_vix"]["normalized"] == "-1.0000"
    assert c["spot_vs_prev_close"]["weight"] == "0.30" and c["_inputs"]["pcr"] == "1.25"


def test_sentiment_uses_only_available_components_and_says_coverage() -> None:
    s = score_sentiment(SentimentInputs(spot=D("22800"), prev_close=D("23000"), pcr=D("0.8")))
    # spot -0.869565 % ; pcr -0.2/0.5 = -0.4 ; (0.30*-0.869565 + 0.15*-0.4) / 0.45 = -0.71304
    assert s.score == D("-71.30") and s.label == "STRONGLY_BEARISH"
    assert s.coverage_pct == D("28.57")
    assert s.components["india_vix"] == {"available": False, "weight": "0.05"}


def test_sentiment_without_data_is_neutral_zero_coverage() -> None:
    s = score_sentiment(SentimentInputs(spot=D("23000")))
    assert (s.score, s.label, s.coverage_pct) == (D("0.00"), "NEUTRAL", D("0.00"))
    assert "no component" in s.note


@pytest.mark.parametrize(("score", "label"), [
    (-100, "STRONGLY_BEARISH"), (-60, "STRONGLY_BEARISH"), (-59.99, "BEARISH"), (-20, "BEARISH"),
    (-19.99, "NEUTRAL"), (19.99, "NEUTRAL"), (20, "BULLISH"), (59.99, "BULLISH"),
    (60, "STRONGLY_BULLISH")])
def test_sentiment_labels(score, label) -> None:
    assert label_of(D(str(score))) == label


# ---------------------------------------------------------------- answer schemas
GOOD = ('{"verdict": "BULLISH", "confidence_pct": 72, "reasoning": "gap up holds",'
        ' "trade_idea": {"option_type": "CE", "strike_offset": 1, "target_pct": 40,'
        ' "stop_pct": 25, "reasoning": "momentum"}}')


def test_market_verdict_valid_and_fenced() -> None:
    v = parse_market_verdict(f"```json\n{GOOD}\n```")
    assert (v.verdict, v.confidence_pct, v.idea.option_type, v.idea.strike_offset) == \
        ("BULLISH", D("72"), "CE", 1)
    assert parse_market_verdict('{"verdict": "NEUTRAL", "confidence_pct": 50, '
                                '"trade_idea": null}').idea is None


@pytest.mark.parametrize(("text", "message"), [
    ("the market looks bullish", "not valid JSON"),
    ("[1, 2]", "expected an object"),
    ('{"verdict": "UP", "confidence_pct": 50}', "verdict='UP'"),
    ('{"verdict": "BULLISH", "confidence_pct": 150}', "confidence_pct=150"),
    ('{"verdict": "BULLISH", "confidence_pct": true}', "confidence_pct=True"),
    (GOOD.replace('"strike_offset": 1', '"strike_offset": 9'), "trade_idea.strike_offset=9"),
    (GOOD.replace('"target_pct": 40', '"target_pct": 400'), "trade_idea.target_pct=400"),
    (GOOD.replace('"CE"', '"PE"'), "contradicts verdict BULLISH"),
    (GOOD.replace("BULLISH", "NEUTRAL"), "expected null"),
])
def test_market_verdict_refusals_name_the_field(text, message) -> None:
    with pytest.raises(AnswerInvalid, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_market_verdict(text)


def test_prediction_schemas() -> None:
    p = parse_prediction("breakout_risk", '{"risk": "high", "direction": "UP", '
                         '"confidence_pct": 80, "horizon_minutes": 60}')
    assert (p.verdict, p.direction, p.horizon_minutes) == ("HIGH", "UP", 60)
    with pytest.raises(AnswerInvalid, match="horizon_minutes=5"):
        parse_prediction("market_view", '{"verdict": "BEARISH", "confidence_pct": 80,'
                         ' "horizon_minutes": 5}')


# ---------------------------------------------------------------- hints (flow 2)
def pred(task, verdict, conf, at, horizon=60, pid=1, direction="EITHER"):
    return {"id": pid, "task": task, "verdict": verdict, "confidence_pct": D(conf),
            "created_at": at, "payload": {"horizon_minutes": horizon, "direction": direction}}


def test_high_breakout_risk_blocks_short_gamma_entries_while_active() -> None:
    rows = [pred("breakout_risk", "HIGH", 80, NOW - timedelta(minutes=10), pid=7),
            pred("market_view", "BEARISH", 65, NOW - timedelta(minutes=5), pid=8)]
    h = hints_for(rows, NOW, min_confidence=60)
    assert set(h.blocks) == {"DC", "MDC", "IC"} and "CAL_ARB" not in h.blocks
    assert "HIGH breakout risk" in h.blocks["IC"] and "#7" in h.blocks["IC"] and "11:50" in h.blocks["IC"]
    assert h.market_view["id"] == 8 and h.to_json()["breakout_risk"]["id"] == 7
    assert hints_for(rows, NOW + timedelta(minutes=51)).blocks == {}      # horizon over
    assert hints_for(rows, NOW, min_confidence=90).blocks == {}           # not confident enough
    assert hints_for(rows, NOW, enabled=False).blocks == {}               # AI_HINTS_ENABLED off
    assert hints_for([pred("breakout_risk", "MEDIUM", 90, NOW)], NOW).blocks == {}
    assert hints_for(rows, NOW - timedelta(minutes=11)).blocks == {}      # not yet made


# ---------------------------------------------------------------- overlays (flow 3, 4)
def trade(strategy="IC", tag="IC-1", legs=None, hold=None) -> Trade:
    legs = legs or (OpenLeg(Leg(security_id="1", side=Side.SELL, quantity=75,
                                option_type=OptionType.CE, expiry=date(2025, 2, 6),
                                strike=D("23500")), D("100"), D("20")),)
    return Trade(tag=tag, strategy=strategy, mode="paper", trade_date=NOW.date(),
                 opened_at=NOW - timedelta(hours=1), legs=legs, hold=hold)


SETTINGS = {"AI_EXIT_OVERLAY_ENABLED": True, "AI_EXIT_OVERLAY_MODE": "AUTO_CLOSE",
            "AI_EXIT_MIN_CONFIDENCE": 70, "AI_SHORT_GAMMA_STRATEGIES": "DC,MDC,IC",
            "AI_SENTIMENT_EXIT_SCORE": 60, "AI_SENTIMENT_MIN_COVERAGE": 50}
HIGH = pred("breakout_risk", "HIGH", 85, NOW - timedelta(minutes=5), pid=3)


def test_breakout_overlay_auto_close() -> None:
    d = breakout_exit(HIGH, trade(), SETTINGS, NOW)
    assert (d.action, d.reason, d.confidence_pct) == (AUTO_CLOSE, BREAKOUT, D("85"))
    assert "IC-1" in d.text and "#3" in d.text


def test_breakout_overlay_advisory_only() -> None:
    d = breakout_exit(HIGH, trade(), {**SETTINGS, "AI_EXIT_OVERLAY_MODE": "ADVISORY_ONLY"}, NOW)
    assert d.action == ADVISORY_ONLY
    assert breakout_exit(HIGH, trade(hold="operator"), SETTINGS, NOW).action == ADVISORY_ONLY


def test_breakout_overlay_does_not_apply() -> None:
    assert breakout_exit(HIGH, trade("CAL_ARB"), SETTINGS, NOW) is None            # no gamma
    assert breakout_exit({**HIGH, "confidence_pct": D(69)}, trade(), SETTINGS, NOW) is None
    assert breakout_exit({**HIGH, "verdict": "MEDIUM"}, trade(), SETTINGS, NOW) is None
    assert breakout_exit(HIGH, trade(), SETTINGS, NOW + timedelta(hours=2)) is None  # expired
    assert overlay_decisions([HIGH], None, [trade()], {**SETTINGS, "AI_EXIT_OVERLAY_ENABLED": False},
                             NOW) == []


def test_sentiment_risk_overlay() -> None:
    strong = {"created_at": NOW - timedelta(minutes=3), "score": D("-72"),
              "label": "STRONGLY_BEARISH", "coverage_pct": D("71.43")}
    ce = OpenLeg(Leg(security_id="9", side=Side.BUY, quantity=75, option_type=OptionType.CE,
                     expiry=date(2025, 2, 6), strike=D("23500")), D("120"), D("20"))
    d = sentiment_exit(strong, trade("AI_MARKET", "AI-1", (ce,)), SETTINGS, NOW)
    assert (d.action, d.reason, d.confidence_pct) == (AUTO_CLOSE, SENTIMENT, D("72"))
    assert sentiment_exit(strong, trade(), SETTINGS, NOW).reason == SENTIMENT  # short gamma
    pe = OpenLeg(Leg(security_id="8", side=Side.BUY, quantity=75, option_type=OptionType.PE,
                     expiry=date(2025, 2, 6), strike=D("23500")), D("120"), D("20"))
    assert sentiment_exit(strong, trade("AI_MARKET", "AI-2", (pe,)), SETTINGS, NOW) is None
    assert sentiment_exit({**strong, "coverage_pct": D(40)}, trade(), SETTINGS, NOW) is None
    assert sentiment_exit({**strong, "score": D(-59)}, trade(), SETTINGS, NOW) is None
    assert sentiment_exit(strong, trade(), SETTINGS, NOW + timedelta(hours=1)) is None  # stale
    both = overlay_decisions([HIGH], strong, [trade()], SETTINGS, NOW)
    assert [d.reason for _, d in both] == [BREAKOUT, SENTIMENT]


# ---------------------------------------------------------------- AI_MARKET trade and outcome
def test_levels_and_exit_rules() -> None:
    assert levels(D("120.10"), D("40"), D("25")) == (D("168.15"), D("90.05"))
    t, s = D("168.15"), D("90.05")
    at = NOW.replace(hour=11)
    assert exit_due(bid=D("168.15"), target=t, stop=s, now=at, exit_time=time(15)).startswith(
        "AI_MARKET target")
    assert exit_due(bid=D("90"), target=t, stop=s, now=at, exit_time=time(15)).startswith(
        "AI_MARKET stop")
    assert exit_due(bid=D("130"), target=t, stop=s, now=at, exit_time=time(15)) is None
    assert "time exit" in exit_due(bid=None, target=t, stop=s, now=NOW.replace(hour=15),
                                   exit_time=time(15))


def test_verdict_outcome_and_debrief_schema() -> None:
    assert verdict_outcome("BULLISH", D("23000"), D("23100")).startswith("RIGHT")
    assert verdict_outcome("BEARISH", D("23000"), D("23100")).startswith("WRONG")
    assert verdict_outcome("NEUTRAL", D("23000"), D("23010")).startswith("RIGHT")
    assert verdict_outcome(None, D("23000"), D("23010")) is None
    narrative, parsed = parse_debrief('{"narrative": "Held well.", "grade": "B"}')
    assert narrative == "Held well." and parsed["grade"] == "B"
    with pytest.raises(AnswerInvalid, match="grade='Z'"):
        parse_debrief('{"narrative": "x", "grade": "Z"}')
