-- One row per (campaign, member): the audit trail of who was targeted, what they were sent
-- and how it ended. Final states: SENT, FAILED, SKIPPED, HELD_OUT, CANCELLED.
-- Working states: PENDING (to send), SENDING (claimed; a request may be in flight), RETRYABLE.
CREATE TABLE IF NOT EXISTS push_campaign_recipients (
    campaign_id      UUID NOT NULL REFERENCES push_campaigns (id) ON DELETE CASCADE,
    member_id        TEXT NOT NULL,          -- passes_master.external_id
    pass_id          UUID,                   -- passes_master.id
    passkit_id       TEXT,                   -- passes_master.passkit_internal_id at resolve time
    wallet           TEXT,
    batch_no         INTEGER,
    rendered_message TEXT,
    status           TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'SENDING', 'RETRYABLE', 'SENT', 'FAILED', 'SKIPPED', 'HELD_OUT', 'CANCELLED')),
    reason           TEXT,                   -- why SKIPPED / FAILED / CANCELLED, machine-readable
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    http_status      INTEGER,
    sent_at          TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, member_id)
);

CREATE INDEX IF NOT EXISTS push_campaign_recipients_batch_idx
    ON push_campaign_recipients (campaign_id, batch_no, status);
-- Frequency caps and "already shows this text" look up a member's recent deliveries.
CREATE INDEX IF NOT EXISTS push_campaign_recipients_member_sent_idx
    ON push_campaign_recipients (pass_id, sent_at) WHERE status = 'SENT';
