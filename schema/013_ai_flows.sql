-- 013_ai_flows.sql — the AI flows (engine/ai, issue 19).
-- * ai_llm_calls: one row per call to the LLM port (flows 1 and 2, journal debriefs): what
--   it cost (tokens), how long it took, how it ended. The daily debrief token budget is a sum
--   over it; it never holds the request or the key.
-- * ai_market_analysis: which trigger ran it (scheduled / rerun), the model, and the brief
--   that was sent (what the model saw).
-- * ai_exit_advisories: one row per event — the same trade, reason and action are recorded
--   once a day however many monitor cycles see it.
CREATE TABLE ai_llm_calls (
    id             BIGSERIAL PRIMARY KEY,
    trade_date     date        NOT NULL,
    called_at      timestamptz NOT NULL DEFAULT now(),
    purpose        text        NOT NULL CHECK (purpose IN ('ai_market', 'market_view',
                                                           'breakout_risk', 'debrief')),
    model          text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('ok', 'error', 'timeout')),
    input_tokens   integer     NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens  integer     NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    attempts       integer     NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    latency_ms     integer     NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    error_text     text
);
CREATE INDEX ai_llm_calls_day_idx ON ai_llm_calls (trade_date, purpose);

ALTER TABLE ai_market_analysis
    ADD COLUMN trigger  text  NOT NULL DEFAULT 'scheduled' CHECK (trigger IN ('scheduled', 'rerun')),
    ADD COLUMN model    text,
    ADD COLUMN brief    jsonb;

CREATE UNIQUE INDEX ai_exit_advisories_event_uq
    ON ai_exit_advisories (trade_date, trade_tag, reason, action_taken);
