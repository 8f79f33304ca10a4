-- The columns of push_campaign_lift when such a table or view exists (another feature may add it).
SELECT a.attname AS name
FROM pg_attribute a
WHERE a.attrelid = to_regclass(%(relation)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
