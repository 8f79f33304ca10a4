-- name: slumber
-- description: Win back sleepers: active members whose pass has not changed for N days.
-- param: days int 30 Days without activity
SELECT p.external_id AS member_id
FROM passes_master p
WHERE p.program_id = %(program_id)s
  AND (p.status = 'ACTIVE' OR upper(btrim(p.status)) = 'ACTIVE')  -- the usual spelling first
  AND p.last_updated < now() - make_interval(days => %(days)s)
