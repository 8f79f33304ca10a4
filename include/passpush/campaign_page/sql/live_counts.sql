-- Progress of campaigns still running, from the recipient table (push_campaigns gets its counts at the end).
SELECT campaign_id::text AS id,
       count(*)                                                              AS targeted,
       count(*) FILTER (WHERE status = 'SENT')                               AS sent,
       count(*) FILTER (WHERE status = 'FAILED')                             AS failed,
       count(*) FILTER (WHERE status = 'SKIPPED')                            AS skipped,
       count(*) FILTER (WHERE status IN ('PENDING', 'SENDING', 'RETRYABLE')) AS pending
FROM push_campaign_recipients
WHERE campaign_id = ANY(%(ids)s::uuid[])
GROUP BY campaign_id
