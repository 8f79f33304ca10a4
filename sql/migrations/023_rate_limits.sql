-- A global request-rate limiter shared by every send_batch task through the database
-- (GCRA "virtual scheduling"): a task reserves a window of n requests by pushing
-- next_free forward by n / rate, so the sum over all tasks and workers never exceeds the rate.
CREATE TABLE IF NOT EXISTS passpush_rate_limits (
    key       TEXT PRIMARY KEY,
    next_free TIMESTAMPTZ NOT NULL
);
