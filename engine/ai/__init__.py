"""The AI flows of issue 19, behind an LLM port that is off until configured.

* ``llm`` — the OpenAI-compatible chat-completions client (the port).
* ``sentiment`` — flow 4, the deterministic SentimentService score (no LLM).
* ``brief`` / ``verdict`` / ``market_flow`` — flow 1, AI_MARKET analysis and its simulated trade.
* ``predictions`` — flow 2, market_view / breakout_risk and the scan hints.
* ``overlay`` — flow 3 exit overlay and the sentiment-risk overlay (decisions).
* ``debrief`` — journal debriefs and the AI verdict outcome.
* ``store`` — every write to the ai_* tables.
* ``wiring`` — what the engine's composition root and command bus call.

Everything but ``store``, ``llm`` and the actor (``engine.actors.ai``) is pure.
"""
