-- Deliveries are claimed before they are attempted (issue 14), so that two nodes never send one delivery at once:
-- a claim moves next_attempt_at to the end of the claim (when another node may take it over, should this one die
-- mid-attempt) and names the dispatcher pass that claimed it.
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
