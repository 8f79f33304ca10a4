-- Custom segment SQL may not write, even where a READ ONLY transaction lets it.
--
-- PostgreSQL lets some functions write inside a READ ONLY transaction: lo_create(), lo_from_bytea(),
-- lo_put() create and fill large objects that outlive the campaign. passpush_run_segment (migration
-- 024) now refuses a query that wrote anything: nothing runs before the segment in its transaction
-- (passpush.audience._fill_from_query), and the function returns its rows only once the query has
-- finished, before the INSERT into pp_audience writes any, so a transaction id assigned by then was
-- assigned by the query. The error is a read-only violation, reported as "tries to write", and the
-- transaction is rolled back with whatever the query wrote.
DO $$
BEGIN
    IF to_regprocedure('passpush_run_segment(text,text)') IS NOT NULL THEN
        CREATE OR REPLACE FUNCTION passpush_run_segment(query text, id_column text) RETURNS SETOF text
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $fn$
        BEGIN
            RETURN QUERY EXECUTE format(
                E'SELECT segment.%I::text FROM (\n%s\n) AS segment WHERE segment.%I IS NOT NULL',
                id_column, query, id_column);
            IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
                RAISE EXCEPTION 'the segment query wrote to the database (large objects, for example)'
                    USING ERRCODE = 'read_only_sql_transaction';
            END IF;
        END
        $fn$;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'passpush_run_segment not replaced (%): custom segments may write large objects', SQLERRM;
END
$$;
