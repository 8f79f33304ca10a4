-- name: whale
-- description: Big spenders: active members holding more than N points.
-- param: min_points int 500 Points balance above which a member counts
SELECT p.external_id AS member_id
FROM passes_master p
WHERE p.program_id = %(program_id)s
  AND (p.status = 'ACTIVE' OR upper(btrim(p.status)) = 'ACTIVE')  -- the usual spelling first
  AND p.points_balance > %(min_points)s
