-- Who allowed a campaign to buzz phones, and for how many. No run sends without it:
-- a confirmed count from the campaign page, the safety cap of a scheduled campaign, or an
-- approval in Airflow's Required Actions.
ALTER TABLE push_campaigns
    ADD COLUMN IF NOT EXISTS confirmed_at    TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS confirmed_count INTEGER,
    ADD COLUMN IF NOT EXISTS confirmed_by    TEXT;  -- 'confirm_recipients' | 'max_recipients' | 'approval'
