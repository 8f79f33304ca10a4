-- One row per issued wallet pass. Stand-in for the production Supabase table.
-- external_id is the member id the business uses (PassKit's externalId);
-- passkit_internal_id is PassKit's own member id (the Apple serial / Google object id).
CREATE TABLE IF NOT EXISTS passes_master (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    program_id          UUID NOT NULL REFERENCES programs (id),
    user_id             UUID REFERENCES users (id),
    external_id         TEXT NOT NULL,
    passkit_internal_id TEXT,
    status              TEXT NOT NULL DEFAULT 'ACTIVE',
    points_balance      NUMERIC NOT NULL DEFAULT 0,
    tier                TEXT,
    wallet              TEXT CHECK (wallet IN ('apple', 'google')),
    opted_out           BOOLEAN NOT NULL DEFAULT false,
    last_updated        TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (program_id, external_id)
);

CREATE INDEX IF NOT EXISTS passes_master_program_status_idx ON passes_master (program_id, status);
CREATE INDEX IF NOT EXISTS passes_master_user_idx ON passes_master (user_id);
