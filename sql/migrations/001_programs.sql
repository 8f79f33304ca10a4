-- Loyalty programs. Stand-in for the production Supabase table of the same name:
-- passpush only reads it (the PassKit program id and the default time zone).
CREATE TABLE IF NOT EXISTS programs (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name               TEXT NOT NULL,
    passkit_program_id TEXT NOT NULL,
    passkit_tier_id    TEXT,
    timezone           TEXT NOT NULL DEFAULT 'UTC',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
