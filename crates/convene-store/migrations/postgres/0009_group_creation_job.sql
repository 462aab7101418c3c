-- Which creation job made a group (issue 12: the console shows what happened to every participant at creation).
-- NULL for a group Convene found rather than created (the instance was added elsewhere or joined by link).
ALTER TABLE groups ADD COLUMN creation_job_id TEXT;

-- Groups created before this column existed: their job's result names them.
UPDATE groups SET creation_job_id = jobs.id
FROM jobs
WHERE jobs.result IS NOT NULL AND (jobs.result::jsonb ->> 'group_id') = groups.id;
