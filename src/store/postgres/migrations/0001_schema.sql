-- PostgreSQL schema, step 1: the SQLite schema of migration 0011 in one step, plus what
-- several replicas need (replicas, ownership of incidents, claims of outbox rows).
--
-- Journal times are the same RFC 3339 UTC text with nine fractional digits as in SQLite
-- (comparing the text compares the times; timestamptz would cut nanoseconds to
-- microseconds), so rows convert with the same code on both stores. Leases are the
-- exception: they are timestamptz and compared with the server's now(), so the replicas'
-- clocks never decide who owns what.

CREATE TABLE replicas (
    -- Also the fencing token: a new process gets a new, larger number, never reused.
    id           BIGSERIAL   PRIMARY KEY,
    name         TEXT        NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until  TIMESTAMPTZ NOT NULL,
    stopped_at   TIMESTAMPTZ
);

CREATE TABLE incidents (
    id            BIGSERIAL PRIMARY KEY,
    source        TEXT      NOT NULL,
    fingerprint   TEXT      NOT NULL,
    starts_at     TEXT      NOT NULL,
    alertname     TEXT,
    alert_status  TEXT      NOT NULL CHECK (alert_status IN ('firing', 'resolved')),
    ends_at       TEXT,
    resolved_at   TEXT,
    labels        TEXT      NOT NULL,
    annotations   TEXT      NOT NULL,
    generator_url TEXT,
    external_url  TEXT,
    state         TEXT      NOT NULL,
    reason        TEXT,
    plan          TEXT,
    first_seen    TEXT      NOT NULL,
    last_seen     TEXT      NOT NULL,
    receive_count BIGINT    NOT NULL CHECK (receive_count >= 1),
    escalated_at  TEXT,
    keyed         BIGINT    NOT NULL DEFAULT 1 CHECK (keyed IN (0, 1)),
    start_assumed BIGINT    NOT NULL DEFAULT 0 CHECK (start_assumed IN (0, 1)),
    -- The plan's target (inventory name), set with the plan: one run per host is checked
    -- on it, under a per-host advisory lock.
    target        TEXT,
    -- The replica that claimed the incident (to run, or to escalate); its writes while the
    -- incident is remediating or verifying require this and a live lease.
    owner         BIGINT
);

-- One incident per alert occurrence whichever replica receives it (DESIGN invariant 8).
CREATE UNIQUE INDEX incidents_key ON incidents (fingerprint, starts_at) WHERE keyed = 1;
CREATE INDEX incidents_by_state ON incidents (state, id);
CREATE INDEX incidents_by_fingerprint ON incidents (fingerprint, starts_at, keyed);
CREATE INDEX incidents_running_by_target ON incidents (target)
    WHERE state IN ('matched', 'remediating', 'verifying');

CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BIGINT    NOT NULL REFERENCES incidents (id),
    at          TEXT      NOT NULL,
    kind        TEXT      NOT NULL,
    detail      TEXT      NOT NULL
);
CREATE INDEX events_by_incident ON events (incident_id, id);

CREATE TABLE runs (
    id             BIGSERIAL PRIMARY KEY,
    incident_id    BIGINT    NOT NULL REFERENCES incidents (id),
    recipe         TEXT      NOT NULL,
    target         TEXT      NOT NULL,
    started_at     TEXT      NOT NULL,
    max_runs       BIGINT,
    window_seconds BIGINT    NOT NULL,
    breaker_key    TEXT      NOT NULL DEFAULT ''
);
CREATE INDEX runs_by_incident ON runs (incident_id);
CREATE INDEX runs_by_breaker_key ON runs (recipe, breaker_key, started_at);

CREATE TABLE breaker_resets (
    recipe      TEXT NOT NULL,
    breaker_key TEXT NOT NULL,
    reset_at    TEXT NOT NULL,
    PRIMARY KEY (recipe, breaker_key)
);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    incident_id     BIGINT    NOT NULL REFERENCES incidents (id),
    reason          TEXT      NOT NULL,
    channel         TEXT      NOT NULL,
    payload         TEXT      NOT NULL,
    status          TEXT      NOT NULL CHECK (status IN ('pending', 'sent')),
    attempts        BIGINT    NOT NULL DEFAULT 0,
    next_attempt_at TEXT      NOT NULL,
    last_error      TEXT,
    created_at      TEXT      NOT NULL,
    sent_at         TEXT,
    follow_up       TEXT CHECK (follow_up IN ('queued', 'none')),
    last_attempt_at TEXT,
    -- The replica delivering it now, until `claimed_until` (server clock): one at a time.
    claimed_by      BIGINT,
    claimed_until   TIMESTAMPTZ,
    UNIQUE (incident_id, reason, channel)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_follow_up_undecided ON outbox (incident_id) WHERE follow_up IS NULL;

CREATE TABLE host_holds (
    host  TEXT NOT NULL PRIMARY KEY,
    until TEXT NOT NULL,
    why   TEXT NOT NULL
);

CREATE TABLE diagnostics_runs (
    recipe      TEXT   NOT NULL,
    target      TEXT   NOT NULL,
    incident_id BIGINT NOT NULL,
    at          TEXT   NOT NULL,
    PRIMARY KEY (recipe, target)
);

CREATE TABLE digests (
    id         BIGSERIAL PRIMARY KEY,
    channel    TEXT      NOT NULL,
    reason     TEXT      NOT NULL,
    size       BIGINT    NOT NULL,
    created_at TEXT      NOT NULL,
    sent_at    TEXT
);

CREATE TABLE pauses (
    id         BIGSERIAL PRIMARY KEY,
    recipe     TEXT,
    host       TEXT,
    reason     TEXT   NOT NULL,
    silent     BIGINT NOT NULL DEFAULT 0,
    created_by TEXT   NOT NULL,
    created_at TEXT   NOT NULL,
    until      TEXT,
    resumed_at TEXT,
    resumed_by TEXT
);
CREATE INDEX pauses_not_resumed ON pauses (resumed_at);

CREATE TABLE approvals (
    incident_id  BIGINT PRIMARY KEY REFERENCES incidents (id),
    plan_digest  TEXT   NOT NULL,
    nonce        TEXT   NOT NULL,
    requested_at TEXT   NOT NULL,
    expires_at   TEXT   NOT NULL,
    decision     TEXT,
    decided_by   TEXT,
    decided_at   TEXT
);
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE decision IS NULL;

CREATE TABLE followups (
    id              BIGSERIAL PRIMARY KEY,
    incident_id     BIGINT    NOT NULL REFERENCES incidents (id),
    channel         TEXT      NOT NULL,
    page_id         BIGINT    NOT NULL REFERENCES outbox (id),
    cause           TEXT      NOT NULL CHECK (cause IN ('resolved', 'succeeded')),
    by_incident     BIGINT    REFERENCES incidents (id),
    status          TEXT      NOT NULL CHECK (status IN ('pending', 'sent')),
    attempts        BIGINT    NOT NULL DEFAULT 0,
    next_attempt_at TEXT      NOT NULL,
    last_error      TEXT,
    created_at      TEXT      NOT NULL,
    sent_at         TEXT,
    claimed_by      BIGINT,
    claimed_until   TIMESTAMPTZ,
    UNIQUE (incident_id, channel)
);
CREATE INDEX followups_due ON followups (status, next_attempt_at);
