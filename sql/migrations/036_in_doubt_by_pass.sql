-- The cool-down counts a delivery in doubt as reached (sql/queries/resolve_audience.sql): a request that
-- may have landed, closed by reconcile as FAILED in_doubt_unverified. Looked up per pass like the reached
-- rows of migration 026's index; few rows are ever in doubt, so this index stays small.
CREATE INDEX IF NOT EXISTS push_campaign_recipients_in_doubt_pass_idx
    ON push_campaign_recipients (pass_id, updated_at)
    WHERE reason = 'in_doubt_unverified';
