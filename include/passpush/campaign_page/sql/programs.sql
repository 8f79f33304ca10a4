-- Programs to choose from, with how many active passes each has.
SELECT p.id::text AS id, p.name, p.timezone,
       count(m.id) FILTER (WHERE m.status = 'ACTIVE' OR upper(btrim(m.status)) = 'ACTIVE') AS active_members
FROM programs p
LEFT JOIN passes_master m ON m.program_id = p.id
GROUP BY p.id
ORDER BY p.created_at DESC, p.name
