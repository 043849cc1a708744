-- 0012: what several replicas need, kept in SQLite too so the engine has one path: the
-- replicas (a process that serves), the plan's target as a column, who owns an incident,
-- and who is delivering an outbox or follow-up row. SQLite serves one replica at a time
-- (opening the store as a replica ends every earlier one); PostgreSQL serves several.
CREATE TABLE replicas (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    started_at   TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    lease_until  TEXT    NOT NULL,
    stopped_at   TEXT
) STRICT;

ALTER TABLE incidents ADD COLUMN target TEXT;
ALTER TABLE incidents ADD COLUMN owner INTEGER;
UPDATE incidents SET target = json_extract(plan, '$.target.name') WHERE plan IS NOT NULL;
CREATE INDEX incidents_running_by_target ON incidents (target)
    WHERE state IN ('matched', 'remediating', 'verifying');

ALTER TABLE outbox ADD COLUMN claimed_by INTEGER;
ALTER TABLE outbox ADD COLUMN claimed_until TEXT;
ALTER TABLE followups ADD COLUMN claimed_by INTEGER;
ALTER TABLE followups ADD COLUMN claimed_until TEXT;
