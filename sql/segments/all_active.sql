-- name: all_active
-- description: Everyone: every active pass of the program.
SELECT p.external_id AS member_id
FROM passes_master p
WHERE p.program_id = %(program_id)s
  AND (p.status = 'ACTIVE' OR upper(btrim(p.status)) = 'ACTIVE')  -- the usual spelling first
