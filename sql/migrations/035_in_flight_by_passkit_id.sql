-- The sender checks the frequency cap again as it claims rows (passpush.sending.CLAIM_SQL): does another
-- campaign have this pass on the wire or waiting for a retry? Few rows are ever in these states, so the
-- index stays small; keyed like push_campaign_recipients_delivered_passkit_idx (migration 030).
CREATE INDEX IF NOT EXISTS push_campaign_recipients_in_flight_passkit_idx
    ON push_campaign_recipients (passkit_id COLLATE "C")
    WHERE status IN ('SENDING', 'RETRYABLE');
