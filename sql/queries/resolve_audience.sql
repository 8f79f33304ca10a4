-- Resolve a campaign's audience into push_campaign_recipients in one statement.
-- Input: the session's temp table pp_audience(member_id) filled from a segment, custom SQL or CSV,
-- each id once (passpush.audience.fill_audience removes repeats), except that a built-in segment lists a
-- member with several passes once per pass: `chosen` below reduces those to one row.
-- Every requested member gets exactly one row: PENDING (to send, with a batch number),
-- HELD_OUT (the campaign's random, reproducible holdout share of the eligible members) or
-- SKIPPED with the first reason that applies. The slot named "rendered" below is the compiled message
-- template (never name a slot in a comment: a message with a line break would end the comment).
-- Records each batch's range of member ids. Returns the rows written, counted by status, reason and
-- wallet.
WITH joined AS (
    SELECT r.member_id,
           p.id                  AS pass_id,
           p.passkit_internal_id AS passkit_id,
           p.wallet,
           p.opted_out,
           p.last_updated,
           -- statuses as loyalty data spells them ('active', ' ACTIVE '), the usual spelling compared first
           -- (upper and btrim on every row cost 0.2 s per million); NULL is not active, and no flag here is
           -- NULL: DESC would sort an unknown before a true
           coalesce(p.status = 'ACTIVE' OR upper(btrim(p.status)) = 'ACTIVE', false) AS active,
           coalesce(p.status = 'ACTIVE' OR upper(btrim(p.status)) = 'ACTIVE', false) AND p.opted_out IS NOT TRUE
               AS sendable,
           p.points_balance,
           -- unknown zones fall back to the program's; a hashed look-up, not a join, so that the planner
           -- keeps its row estimates (joined to pg_timezone_names, which has no statistics, it expected
           -- five times the rows and compiled the statement with JIT for half a second)
           CASE WHEN u.timezone IN (SELECT name FROM pg_timezone_names) THEN u.timezone
                -- PostgreSQL reads zone names case-insensitively: 'asia/tokyo', ' Asia/Tokyo ' are Tokyo
                WHEN lower(btrim(u.timezone)) IN (SELECT lower(name) FROM pg_timezone_names)
                    THEN btrim(u.timezone)
                ELSE %(program_timezone)s END AS timezone,
           CASE WHEN p.id IS NOT NULL THEN {rendered} END AS rendered
    FROM pp_audience r
    LEFT JOIN passes_master p ON p.program_id = %(program_id)s AND p.external_id = r.member_id
    LEFT JOIN users u ON u.id = p.user_id
),
-- Two passes sharing one PassKit id: the sendable one, else the most recent, keeps it (ties as in
-- `chosen`, so a member's chosen pass is never the one that loses its PassKit id). Sorting by PassKit
-- id also puts the look-ups of `classified` in the order of the delivery index (migration 030).
-- COLLATE "C": byte order, the index's, and cheaper to compare than a linguistic collation.
ranked AS (
    SELECT j.*,
           row_number() OVER (PARTITION BY j.passkit_id COLLATE "C"
                              ORDER BY j.sendable DESC, j.last_updated DESC NULLS LAST, j.member_id COLLATE "C", j.pass_id)
               AS passkit_rank
    FROM joined j
),
classified AS (
    -- only what the rows written need: every byte here is sorted once more, into member order
    SELECT j.member_id, j.pass_id, j.passkit_id, j.wallet, j.sendable, j.last_updated, j.points_balance,
           j.timezone, j.rendered, j.passkit_rank,
        CASE
            WHEN j.pass_id IS NULL THEN 'unknown_member'
            WHEN NOT j.active THEN 'inactive_pass'
            WHEN j.opted_out THEN 'opted_out'
            -- a blank id ('  ', a padded export) is none either: PassKit answers 404
            -- btrim only for an id that starts blank (ascii('') is 0): most ids pay one ascii()
            WHEN j.passkit_id IS NULL OR (ascii(j.passkit_id) IN (0, 9, 10, 13, 32)
                                          AND btrim(j.passkit_id, E' \t\r\n') = '') THEN 'no_passkit_id'
            WHEN j.passkit_rank > 1 THEN 'duplicate_pass'
            -- any delivery within the cap is one when the latest is (this campaign has none yet:
            -- passpush.audience never resolves a campaign again once it has sent)
            WHEN %(cap_seconds)s > 0 AND last.sent_at > now() - make_interval(secs => %(cap_seconds)s)
                THEN 'frequency_cap'
            -- reached by an earlier run of the same recurring campaign: sent, or held out by a run that was
            -- allowed to send (a dry run or a run cancelled before sending draws its holdout too, and each
            -- one used to lock another share out); each EXISTS reads its own partial index by pass
            -- (migrations 026, 036)
            WHEN %(recurring_key)s::text IS NOT NULL AND %(cooldown_seconds)s > 0 AND (EXISTS (
                SELECT 1 FROM push_campaign_recipients s
                JOIN push_campaigns c ON c.id = s.campaign_id
                WHERE s.pass_id = j.pass_id AND s.status IN ('SENT', 'HELD_OUT')
                  AND (s.status = 'SENT' OR (c.confirmed_at IS NOT NULL AND NOT c.dry_run))
                  AND c.recurring_key = %(recurring_key)s AND s.campaign_id <> %(campaign_id)s
                  AND s.updated_at > now() - make_interval(secs => %(cooldown_seconds)s)
            ) OR EXISTS (  -- or a request that may have landed (in doubt): its phone may have buzzed
                SELECT 1 FROM push_campaign_recipients s
                JOIN push_campaigns c ON c.id = s.campaign_id
                WHERE s.pass_id = j.pass_id AND s.reason = 'in_doubt_unverified'
                  AND c.recurring_key = %(recurring_key)s AND s.campaign_id <> %(campaign_id)s
                  AND s.updated_at > now() - make_interval(secs => %(cooldown_seconds)s)
            )) THEN 'cooldown'
            -- counted only for a Google pass updated today at all, which the frequency cap mostly skips
            WHEN j.wallet = 'google' AND last.sent_at > now() - interval '24 hours' AND (
                SELECT count(*) FROM push_campaign_recipients s
                WHERE s.passkit_id COLLATE "C" = j.passkit_id AND s.status = 'SENT'
                  AND s.sent_at > now() - interval '24 hours'
            ) >= %(google_daily_limit)s THEN 'google_daily_limit'
            WHEN last.rendered_message = j.rendered THEN 'already_showing'
            -- the holdout: a stable hash of (campaign, member), so re-resolving keeps the same group
            WHEN %(holdout_basis_points)s > 0  -- no holdout: no md5 per member
                 AND ('x' || substr(md5(%(campaign_id)s::text || ':' || j.member_id), 1, 8))::bit(32)::bigint
                     %% 10000 < %(holdout_basis_points)s THEN 'holdout'
        END AS reason
    FROM ranked j
    -- the pass's latest delivery (by any campaign): one index-only look-up serves the frequency cap,
    -- Google's daily limit and "already shows this text"
    LEFT JOIN LATERAL (
        SELECT s.sent_at, s.rendered_message FROM push_campaign_recipients s
        WHERE s.passkit_id COLLATE "C" = j.passkit_id AND s.status = 'SENT'
        ORDER BY s.sent_at DESC LIMIT 1
    ) last ON true
    OFFSET 0  -- computed once here: inlined, the CASE and its look-ups ran again in each node above
),
-- One row per member: a member id with several passes in the program (a reissued card, say) is
-- reached on its sendable pass, else on the most recently updated one. A member a built-in segment
-- listed once per pass has each pass joined once per listing: identical rows but for passkit_rank, which
-- made one copy a 'duplicate_pass' of the other; the first copy is the one kept.
chosen AS (
    SELECT DISTINCT ON (c.member_id COLLATE "C") c.*
    FROM classified c
    ORDER BY c.member_id COLLATE "C", c.sendable DESC, c.last_updated DESC NULLS LAST, c.pass_id, c.passkit_rank
),
-- Batches in member order: a batch is the next batch_size members of the audience in that order and
-- holds those of them the campaign sends to (fewer where some are skipped). seq is the member's place,
-- a row_number, which holds no rows back; a running count of the eligible members alone kept every row
-- of its window in store, 0.9 s per million (bench/RESULTS.md). The window's ordering is the one chosen
-- was sorted by, so the rows are sorted once.
numbered AS (
    SELECT ch.*,
           row_number() OVER (ORDER BY ch.member_id COLLATE "C", ch.sendable DESC, ch.last_updated DESC NULLS LAST,
                                       ch.pass_id, ch.passkit_rank) AS seq
    FROM chosen ch
),
written AS (
    INSERT INTO push_campaign_recipients
        (campaign_id, member_id, pass_id, passkit_id, wallet, batch_no, rendered_message, status, reason,
         timezone, points_at_resolve)
    SELECT %(campaign_id)s, member_id, pass_id, passkit_id, wallet,
           CASE WHEN reason IS NULL
                -- batches grow past batch_size rather than outnumber max_batches (sized on the requested
                -- count, which bounds the number of places)
                THEN ((seq - 1) / GREATEST(%(batch_size)s, ceil(%(requested)s::numeric / %(max_batches)s)::bigint))::int
           END,
           rendered,
           CASE WHEN reason IS NULL THEN 'PENDING' WHEN reason = 'holdout' THEN 'HELD_OUT' ELSE 'SKIPPED' END,
           reason,
           timezone,
           points_balance
    FROM numbered
    RETURNING member_id, status, reason, wallet, batch_no, length(rendered_message) AS message_length
),
-- What was written, counted as it was written (read back from the table, the rows would be read again
-- through an index whose statistics do not know this campaign yet), in one pass: a row per batch and
-- kind of row, a few hundred, from which the batches and the preview's counts are summed (two passes
-- over the million rows, one per grouping, took 0.3 s more: bench/RESULTS.md).
per_group AS (
    SELECT batch_no, status, reason, wallet, count(*) AS recipients, max(message_length) AS longest_message,
           min(member_id) AS first_member, max(member_id) AS last_member
    FROM written
    GROUP BY batch_no, status, reason, wallet
),
-- Each batch as the range of member ids it spans: senders read their batch through the primary key
-- (migration 032).
batches AS (
    INSERT INTO push_campaign_batches (campaign_id, batch_no, first_member, last_member, recipients)
    SELECT %(campaign_id)s, batch_no, min(first_member), max(last_member), sum(recipients)
    FROM per_group
    WHERE batch_no IS NOT NULL
    GROUP BY batch_no
    RETURNING recipients
)
-- The preview's counts, the longest message anyone will be sent, how many batches and the largest.
SELECT status, reason, wallet, sum(recipients)::bigint AS recipients,
       max(longest_message) FILTER (WHERE status = 'PENDING') AS longest_message,
       (SELECT count(*) FROM batches) AS batches,
       (SELECT max(recipients) FROM batches) AS largest_batch
FROM per_group
GROUP BY status, reason, wallet
