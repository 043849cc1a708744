-- 0008: approval requests of approve-mode recipes. One row per incident: the plan it is
-- for (digest), the nonce its links carry (a new request replaces it, so older links stop
-- working), when it expires, and the one decision (approved, denied, expired, resolved)
-- with who made it. A decided row is never decided again: links are single-use.
CREATE TABLE approvals (
    incident_id  INTEGER PRIMARY KEY REFERENCES incidents (id),
    plan_digest  TEXT    NOT NULL,
    nonce        TEXT    NOT NULL,
    requested_at TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    decision     TEXT,
    decided_by   TEXT,
    decided_at   TEXT
) STRICT;

-- The engine looks for undecided requests past their time.
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE decision IS NULL;
