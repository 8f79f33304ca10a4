-- A campaign's batches as ranges of member ids, in place of a per-recipient batch index.
--
-- Batches are numbered in member order (sql/queries/resolve_audience.sql), so batch N is the rows with
-- batch_no = N between its first and last member id, and a sender reads them through the primary key
-- (campaign_id, member_id) within that range (passpush.sending). The index on (campaign_id, batch_no,
-- status) it read before had an entry per recipient: 1.0 s of a million-member resolution, and one
-- more index entry on every status change while sending (bench/RESULTS.md). This table has a row per
-- batch, written by the same statement that numbers them.
CREATE TABLE IF NOT EXISTS push_campaign_batches (
    campaign_id  UUID NOT NULL REFERENCES push_campaigns (id) ON DELETE CASCADE,
    batch_no     INTEGER NOT NULL,
    first_member TEXT COLLATE "C" NOT NULL,
    last_member  TEXT COLLATE "C" NOT NULL,
    recipients   INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, batch_no),
    CHECK (first_member <= last_member)
);

-- Campaigns still running when this is applied keep their batches readable by range.
INSERT INTO push_campaign_batches (campaign_id, batch_no, first_member, last_member, recipients)
SELECT r.campaign_id, r.batch_no, min(r.member_id), max(r.member_id), count(*)
FROM push_campaign_recipients r
JOIN push_campaigns c ON c.id = r.campaign_id AND c.finished_at IS NULL
WHERE r.batch_no IS NOT NULL
GROUP BY r.campaign_id, r.batch_no
ON CONFLICT DO NOTHING;

DROP INDEX IF EXISTS push_campaign_recipients_batch_idx;
