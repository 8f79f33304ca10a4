-- The least-privilege role audience segments run under (passpush.audience: SET LOCAL ROLE inside the
-- segment's read-only transaction). It may read the loyalty tables and nothing else: not passpush's own
-- tables, not the catalogs behind superuser-only views, no other schema.
--
-- Roles belong to the whole server, grants to one database: the role is created once, and every
-- database this file is applied to grants its own tables. Where the migrating user may not create or
-- grant roles (a managed database), the file only raises a NOTICE; passpush then runs segments as the
-- connection's user (still read-only and time-limited). A runtime user other than the migrating one
-- needs: GRANT passpush_segment_reader TO <that user>.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'passpush_segment_reader') THEN
        CREATE ROLE passpush_segment_reader NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- another database's migration created it at the same moment
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'passpush_segment_reader not created (%): segments run as %', SQLERRM, current_user;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'passpush_segment_reader') THEN
        GRANT USAGE ON SCHEMA public TO passpush_segment_reader;
        GRANT SELECT ON programs, users, passes_master TO passpush_segment_reader;
        REVOKE ALL ON push_campaigns, push_campaign_recipients, passpush_rate_limits FROM passpush_segment_reader;
        -- SET LOCAL ROLE needs membership.
        GRANT passpush_segment_reader TO CURRENT_USER;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'passpush_segment_reader not granted (%): segments run as %', SQLERRM, current_user;
END
$$;

-- Custom segment SQL runs inside this function. SET LOCAL ROLE alone does not contain it: the query
-- can call set_config('role', ...) and take the session user back. Inside a SECURITY DEFINER function
-- Postgres refuses any change of role or session authorization, so the text runs as the reader role
-- from its first row to its last. One statement only (a cursor cannot hold two), never formatted
-- by the caller: the query text arrives as a bound value.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'passpush_segment_reader') THEN
        CREATE OR REPLACE FUNCTION passpush_run_segment(query text, id_column text) RETURNS SETOF text
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $fn$
        BEGIN
            RETURN QUERY EXECUTE format(
                E'SELECT segment.%I::text FROM (\n%s\n) AS segment WHERE segment.%I IS NOT NULL',
                id_column, query, id_column);
        END
        $fn$;
        ALTER FUNCTION passpush_run_segment(text, text) OWNER TO passpush_segment_reader;
        REVOKE ALL ON FUNCTION passpush_run_segment(text, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION passpush_run_segment(text, text) TO CURRENT_USER;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'passpush_run_segment not created (%): custom segments run under SET ROLE only', SQLERRM;
END
$$;
