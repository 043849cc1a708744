-- 0006: a breaker counts runs per (recipe, breaker key) rather than per (recipe, target).
-- The key is the recipe's rendered `[breaker] key`, or the target's inventory name when it
-- has none — which is what every run so far was counted by, so old rows keep their meaning.
ALTER TABLE runs ADD COLUMN breaker_key TEXT NOT NULL DEFAULT '';
UPDATE runs SET breaker_key = target;
DROP INDEX runs_by_key;
CREATE INDEX runs_by_breaker_key ON runs (recipe, breaker_key, started_at);

-- A reset forgets the runs of one (recipe, breaker key); old resets were per target.
ALTER TABLE breaker_resets RENAME COLUMN target TO breaker_key;
