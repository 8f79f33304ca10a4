-- Deliveries per time bucket ('second', 'minute' or 'hour'), empty buckets included, for the chart.
WITH buckets AS (
    SELECT date_trunc(%(unit)s, sent_at) AS t, count(*) AS sent
    FROM push_campaign_recipients
    WHERE campaign_id = %(campaign_id)s AND status = 'SENT' AND sent_at IS NOT NULL
    GROUP BY 1
)
SELECT s.t, coalesce(b.sent, 0) AS sent
FROM generate_series((SELECT min(t) FROM buckets), (SELECT max(t) FROM buckets),
                     make_interval(secs => %(seconds)s)) AS s (t)
LEFT JOIN buckets b ON b.t = s.t
ORDER BY s.t
