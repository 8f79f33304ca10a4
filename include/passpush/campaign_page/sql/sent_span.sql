-- First and last delivery of a campaign: the chart's time range.
SELECT min(sent_at) AS first_sent, max(sent_at) AS last_sent
FROM push_campaign_recipients
WHERE campaign_id = %(campaign_id)s AND status = 'SENT'
