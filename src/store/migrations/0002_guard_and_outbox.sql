-- 0002: the circuit breaker's run log, breaker resets, and the escalation outbox.

-- When an incident's escalation was queued; NULL while none is. The engine escalates
-- every incident in an escalating state whose escalated_at is NULL, so a crash between
-- the final state and the outbox write is repaired on the next pass.
ALTER TABLE incidents ADD COLUMN escalated_at TEXT;

-- One row per remediation started: what the breaker counts, per (recipe, target).
-- max_runs and window_seconds are the recipe's at the time, so `breaker list` can say
-- whether a breaker is open without the recipe files.
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    incident_id    INTEGER NOT NULL REFERENCES incidents (id),
    recipe         TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    started_at     TEXT    NOT NULL,
    max_runs       INTEGER,
    window_seconds INTEGER NOT NULL
) STRICT;

CREATE INDEX runs_by_key ON runs (recipe, target, started_at);

-- `salve breaker reset`: runs before reset_at no longer count.
CREATE TABLE breaker_resets (
    recipe   TEXT NOT NULL,
    target   TEXT NOT NULL,
    reset_at TEXT NOT NULL,
    PRIMARY KEY (recipe, target)
) STRICT;

-- Escalations are written here before they are sent, and retried until a channel
-- accepts them. One row per (incident, reason, channel): never two tickets for one
-- incident.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    reason          TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sent')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    sent_at         TEXT,
    UNIQUE (incident_id, reason, channel)
) STRICT;

CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
