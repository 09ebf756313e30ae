-- 010_chat.sql — chat control (Telegram and Zoho Cliq): routing and de-duplication of the
-- chat outbox, the inbound update offsets, pending TOTP confirmations and the follow-ups
-- that answer a chat command once the engine finished it.

-- ---------------------------------------------------------------- outbox routing
-- chat_id: the chat a reply goes to (NULL: the channel's default chat).
-- fallback: true for messages the channel registry may route (primary, then fallback);
--           false for rows bound to one channel (dashboard login codes).
-- delivered_via: the channel that delivered the row (operators see which one did).
-- dedup_key: one row per logical message (an event id, an inbound update), so a retry or a
--            replayed update never sends twice.
-- attempts: deliveries tried; a registry row is retried until MAX attempts, then errored.
-- silent: deliver without a sound (Telegram disable_notification).
ALTER TABLE chat_outbox ADD COLUMN IF NOT EXISTS chat_id text;
ALTER TABLE chat_outbox ADD COLUMN IF NOT EXISTS fallback boolean NOT NULL DEFAULT false;
ALTER TABLE chat_outbox ADD COLUMN IF NOT EXISTS delivered_via text;
ALTER TABLE chat_outbox ADD COLUMN IF NOT EXISTS dedup_key text;
ALTER TABLE chat_outbox ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
ALTER TABLE chat_outbox ADD COLUMN IF NOT EXISTS silent boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX IF NOT EXISTS chat_outbox_dedup_uq ON chat_outbox (dedup_key)
    WHERE dedup_key IS NOT NULL;

-- ---------------------------------------------------------------- inbound
-- Every inbound chat message handled once: (channel, external id) is the key; a replayed
-- Telegram update or a re-sent Cliq call with the same message id is ignored.
CREATE TABLE IF NOT EXISTS chat_inbound (
    channel      text        NOT NULL CHECK (channel IN ('telegram', 'cliq')),
    external_id  text        NOT NULL,
    sender       text        NOT NULL,
    text         text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, external_id)
);

-- ---------------------------------------------------------------- confirmations
-- A dangerous command waiting for the operator's TOTP code (/confirm 123456 within 60 s).
CREATE TABLE IF NOT EXISTS chat_confirmations (
    id           BIGSERIAL PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    channel      text        NOT NULL,
    sender       text        NOT NULL,
    chat_id      text,
    command      text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    resolved_at  timestamptz,
    note         text
);
CREATE INDEX IF NOT EXISTS chat_confirmations_pending_idx
    ON chat_confirmations (channel, sender) WHERE status = 'pending';

-- ---------------------------------------------------------------- follow-ups
-- A queued command (and for /backtest its run) whose outcome is told to the chat that asked.
CREATE TABLE IF NOT EXISTS chat_followups (
    id          BIGSERIAL PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    channel     text        NOT NULL,
    chat_id     text,
    command_id  bigint      NOT NULL,
    run_id      bigint,
    done_at     timestamptz
);
CREATE INDEX IF NOT EXISTS chat_followups_open_idx ON chat_followups (id) WHERE done_at IS NULL;
