-- A failing channel's retries update their outbox row instead of adding a journal event
-- per attempt (only the first failure is journaled): the row keeps when the last attempt
-- was, beside `attempts`, `last_error` and `next_attempt_at`.
ALTER TABLE outbox ADD COLUMN last_attempt_at TEXT;
