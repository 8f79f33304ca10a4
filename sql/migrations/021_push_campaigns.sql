-- One row per campaign, as specified for the notification manager; every original
-- column is kept. The columns after created_at are what the engine needs to run and audit it.
CREATE TABLE IF NOT EXISTS push_campaigns (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    program_id UUID NOT NULL,
    name TEXT NOT NULL,
    message_text TEXT NOT NULL, -- The text on the lock screen
    target_query TEXT, -- Description of who (e.g., "All Active Members")
    csv_upload_url TEXT, -- If manual CSV used
    status TEXT DEFAULT 'PENDING', -- PENDING, PROCESSING, COMPLETED
    sent_count INTEGER DEFAULT 0,
    failed_count INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

ALTER TABLE push_campaigns
    ADD COLUMN IF NOT EXISTS recipient_count INTEGER NOT NULL DEFAULT 0,  -- targeted: every audience row
    ADD COLUMN IF NOT EXISTS skipped_count   INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cancelled_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS audience        JSONB,      -- the audience spec as triggered (mode, segment, params)
    ADD COLUMN IF NOT EXISTS options         JSONB,      -- delivery/safety settings of the run (no secrets)
    ADD COLUMN IF NOT EXISTS dry_run         BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS preview         JSONB,      -- counts by outcome and rendered samples
    ADD COLUMN IF NOT EXISTS dag_id          TEXT,
    ADD COLUMN IF NOT EXISTS dag_run_id      TEXT,
    ADD COLUMN IF NOT EXISTS abort_reason    TEXT,       -- set when a fatal error (401/403) stops the campaign
    ADD COLUMN IF NOT EXISTS started_at      TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS finished_at     TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS updated_at      TIMESTAMPTZ NOT NULL DEFAULT now();

-- A retried "create campaign" task must find its campaign, not create a second one.
CREATE UNIQUE INDEX IF NOT EXISTS push_campaigns_dag_run_uidx ON push_campaigns (dag_id, dag_run_id);
CREATE INDEX IF NOT EXISTS push_campaigns_program_created_idx ON push_campaigns (program_id, created_at DESC);
