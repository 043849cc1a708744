-- 0007: operator pauses (`salve pause`, the API, the fleet error budget). A pause with no
-- recipe and no host pauses every remediation. Active: not resumed, and `until` NULL
-- (until a human resumes it) or later than now. Rows are kept after they end: who paused
-- what, when, and who resumed it.
CREATE TABLE pauses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipe TEXT,
    host TEXT,
    reason TEXT NOT NULL,
    silent INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    until TEXT,
    resumed_at TEXT,
    resumed_by TEXT
);
CREATE INDEX pauses_not_resumed ON pauses (resumed_at);
