-- Quiet hours: nobody is buzzed at night in their own time zone.
-- A window [start, stop) of local wall-clock time; start > stop wraps midnight (21:00-09:00).
CREATE OR REPLACE FUNCTION passpush_in_quiet_hours(at_time timestamptz, tz text, start_time time, stop_time time)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN start_time = stop_time THEN false
        WHEN start_time < stop_time THEN (at_time AT TIME ZONE tz)::time >= start_time
                                     AND (at_time AT TIME ZONE tz)::time < stop_time
        ELSE (at_time AT TIME ZONE tz)::time >= start_time OR (at_time AT TIME ZONE tz)::time < stop_time
    END
$$;

-- When the quiet window of a member who is in it now ends: the next local stop_time.
CREATE OR REPLACE FUNCTION passpush_quiet_hours_end(at_time timestamptz, tz text, stop_time time)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN (at_time AT TIME ZONE tz)::date + stop_time > (at_time AT TIME ZONE tz)
            THEN ((at_time AT TIME ZONE tz)::date + stop_time) AT TIME ZONE tz
        ELSE ((at_time AT TIME ZONE tz)::date + 1 + stop_time) AT TIME ZONE tz
    END
$$;
