-- The duplicate window's keys by the minute they were made in, then by key (the expression that
-- `jobs::duplicates_in_window!` matches), where migration 0015 had ten seconds: a check searches each bucket of its
-- window, 13 seeks at the default 120 s, and they were a third of the cost of a creation's job insert on the committer
-- (convene-bench). By the minute it is 3. A new key still goes among the last bucket's keys, which were already a
-- page of their own for most creations under load.

DROP INDEX jobs_by_dedupe_window;
CREATE INDEX jobs_by_dedupe_window ON jobs (created_at / 60000, dedupe_key) WHERE dedupe_key IS NOT NULL;
