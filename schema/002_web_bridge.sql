-- 002_web_bridge.sql — the bridge between the web process and the engine (durable command
-- rows + NOTIFY), the chat outbox, and the dashboard's authentication state.

-- ---------------------------------------------------------------- commands web -> engine
-- The web inserts a row and NOTIFYs 'engine_commands'; the engine's CommandBus claims each
-- pending row exactly once (FOR UPDATE SKIP LOCKED), runs it and writes the result back.
CREATE TABLE IF NOT EXISTS engine_commands (
    id               BIGSERIAL PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    kind             text        NOT NULL CHECK (kind IN ('close_trade', 'pause_entries',
                                     'resume_entries', 'set_go_live_stage', 'run_backtest',
                                     'run_grid', 'rerun_task')),
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'claimed', 'done', 'error')),
    claimed_by       text,
    claimed_at       timestamptz,
    finished_at      timestamptz,
    result           jsonb,
    error            text,
    requested_by     text        NOT NULL DEFAULT 'unknown',
    idempotency_key  text        UNIQUE,
    CHECK (status <> 'claimed' OR (claimed_by IS NOT NULL AND claimed_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS engine_commands_pending_idx
    ON engine_commands (id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS engine_commands_claimed_idx
    ON engine_commands (claimed_at) WHERE status = 'claimed';

-- ---------------------------------------------------------------- chat outbox
-- Messages for the NotifierActor to deliver (NOTIFY 'chat_outbox' wakes it). A dashboard
-- login code exists in clear only in the text of such a row.
CREATE TABLE IF NOT EXISTS chat_outbox (
    id          BIGSERIAL PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    channel     text        NOT NULL CHECK (channel IN ('telegram', 'cliq', 'log')),
    text        text        NOT NULL,
    sent_at     timestamptz,
    error       text
);
CREATE INDEX IF NOT EXISTS chat_outbox_unsent_idx ON chat_outbox (id) WHERE sent_at IS NULL;

-- ---------------------------------------------------------------- dashboard auth
-- Server-side sessions: only the sha256 of the random session token is stored.
CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash     text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL DEFAULT now(),
    client_ip   text,
    method      text        NOT NULL CHECK (method IN ('totp', 'chat'))
);
CREATE INDEX IF NOT EXISTS web_sessions_expires_idx ON web_sessions (expires_at);

-- One-time login codes sent through chat: sha256(salt || code), 5 minutes, single use.
CREATE TABLE IF NOT EXISTS web_login_codes (
    id          BIGSERIAL PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    salt        text        NOT NULL,
    code_hash   text        NOT NULL,
    used_at     timestamptz,
    client_ip   text
);
CREATE INDEX IF NOT EXISTS web_login_codes_live_idx
    ON web_login_codes (expires_at) WHERE used_at IS NULL;

-- TOTP time steps already used for a login (a code works once).
CREATE TABLE IF NOT EXISTS web_totp_used (
    step     bigint      PRIMARY KEY,
    used_at  timestamptz NOT NULL DEFAULT now()
);

-- Failed-login counters with exponential lock-out, per client IP ('ip:<addr>') and 'global'.
CREATE TABLE IF NOT EXISTS web_auth_throttle (
    scope            text        PRIMARY KEY,
    failures         integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until     timestamptz,
    last_failure_at  timestamptz
);
