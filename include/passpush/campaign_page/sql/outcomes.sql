-- One campaign's recipients by final or working state and reason (failures, skips, cancellations).
SELECT status, coalesce(reason, '') AS reason, count(*) AS count
FROM push_campaign_recipients
WHERE campaign_id = %(campaign_id)s
GROUP BY status, reason
ORDER BY status, count(*) DESC
