-- The queue's index holds queued jobs only, and the batches' index jobs of a batch only: every query that reads
-- them asks for `state = 'queued'` or a batch, and a synchronous creation run on its own node (running, then
-- succeeded, in no batch) no longer writes either of them, three times for the queue's (its entry moved with each
-- change of state). The queue's index keeps `state` first: without statistics, SQLite takes it only that way (on
-- `(next_run_at, created_at)` it chose `jobs_by_state` and a sort).

DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (state, next_run_at, created_at) WHERE state = 'queued';
DROP INDEX jobs_by_batch;
CREATE INDEX jobs_by_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;
