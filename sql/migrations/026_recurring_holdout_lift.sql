-- Recurring campaigns, test sends, holdout groups and the lift report.
ALTER TABLE push_campaigns
    ADD COLUMN IF NOT EXISTS recurring_key   TEXT,     -- the recurring campaign's name in include/campaigns.yaml
    ADD COLUMN IF NOT EXISTS is_test         BOOLEAN NOT NULL DEFAULT false,  -- sent to test_recipients only
    ADD COLUMN IF NOT EXISTS holdout_percent NUMERIC NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS push_campaigns_recurring_idx ON push_campaigns (recurring_key) WHERE recurring_key IS NOT NULL;

-- Snapshots taken when the audience is resolved: the member's local time zone (quiet hours)
-- and points balance (points earned after the campaign, for the lift report).
ALTER TABLE push_campaign_recipients
    ADD COLUMN IF NOT EXISTS timezone          TEXT,
    ADD COLUMN IF NOT EXISTS points_at_resolve NUMERIC,
    ADD COLUMN IF NOT EXISTS not_before        TIMESTAMPTZ;  -- quiet hours: do not send before this time

CREATE INDEX IF NOT EXISTS push_campaign_recipients_member_reached_idx
    ON push_campaign_recipients (pass_id, updated_at) WHERE status IN ('SENT', 'HELD_OUT');

-- Treated vs held-out members over a window after the campaign, one row per campaign and window.
CREATE TABLE IF NOT EXISTS push_campaign_lift (
    campaign_id          UUID NOT NULL REFERENCES push_campaigns (id) ON DELETE CASCADE,
    window_days          INTEGER NOT NULL,
    treated              INTEGER NOT NULL,
    held_out             INTEGER NOT NULL,
    treated_returned     INTEGER NOT NULL,
    held_out_returned    INTEGER NOT NULL,
    treated_return_rate  DOUBLE PRECISION,
    held_out_return_rate DOUBLE PRECISION,
    return_lift          DOUBLE PRECISION,   -- difference in return rates (percentage points / 100)
    return_lift_ci_low   DOUBLE PRECISION,   -- 95 % confidence interval of that difference
    return_lift_ci_high  DOUBLE PRECISION,
    treated_points_mean  DOUBLE PRECISION,   -- points earned per member after the campaign
    held_out_points_mean DOUBLE PRECISION,
    points_lift          DOUBLE PRECISION,
    points_lift_ci_low   DOUBLE PRECISION,
    points_lift_ci_high  DOUBLE PRECISION,
    computed_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, window_days)
);
