-- Past and running campaigns, newest first; preview rows of the campaign page are not campaigns.
SELECT c.id::text           AS id,
       c.name,
       c.program_id::text   AS program_id,
       p.name               AS program_name,
       c.target_query       AS audience,
       -- to describe a custom SQL audience or a test send without its SQL or member ids (history.py)
       c.audience->>'mode'  AS audience_mode,
       CASE WHEN jsonb_typeof(c.options->'test_recipients') = 'array'
            THEN jsonb_array_length(c.options->'test_recipients') ELSE 0 END AS test_recipients,
       c.status,
       c.dry_run,
       c.recipient_count    AS targeted,
       c.sent_count         AS sent,
       c.failed_count       AS failed,
       c.skipped_count      AS skipped,
       c.created_at,
       c.started_at,
       c.finished_at,
       c.dag_id,
       c.dag_run_id,
       c.abort_reason,
       count(*) OVER ()     AS total
FROM push_campaigns c
LEFT JOIN programs p ON p.id = c.program_id
WHERE c.dag_id IS DISTINCT FROM %(preview_dag_id)s
  AND (%(program_id)s::uuid IS NULL OR c.program_id = %(program_id)s::uuid)
ORDER BY c.created_at DESC, c.id
LIMIT %(limit)s OFFSET %(offset)s
