-- name: local
-- description: Neighbours: active members living in one of the given ZIP codes.
-- param: zips list ["90210"] ZIP codes to include
SELECT p.external_id AS member_id
FROM passes_master p
JOIN users u ON u.id = p.user_id
WHERE p.program_id = %(program_id)s
  AND (p.status = 'ACTIVE' OR upper(btrim(p.status)) = 'ACTIVE')  -- the usual spelling first
  AND u.zip = ANY(%(zips)s)
