-- The duplicate window's keys by time first (in buckets of 10 s, the expression that `jobs::duplicates_in_window!`
-- matches), then by key. A key is a hash, so in an index by key alone each creation's key went to a page anywhere in
-- an index of every keyed creation ever made: at 100,000 groups most creations wrote a page of their own there, and
-- the checkpoints copied them all. By time first, new keys go to the end, among the last seconds' keys. A lookup
-- searches each bucket of its window (13 at the default 120 s). Jobs without a key are left out.

DROP INDEX jobs_by_dedupe_key;
CREATE INDEX jobs_by_dedupe_window ON jobs ((created_at / 10000), dedupe_key) WHERE dedupe_key IS NOT NULL;
