-- Members as people. Stand-in for the production Supabase table: passpush reads the
-- personalisation fields (first_name), the ZIP for the "local" segment and the time zone.
CREATE TABLE IF NOT EXISTS users (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    first_name TEXT,
    last_name  TEXT,
    email      TEXT,
    zip        TEXT,
    timezone   TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS users_zip_idx ON users (zip);
