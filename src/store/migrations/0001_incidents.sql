-- 0001: incidents and their journal.
-- Times are RFC 3339 UTC text with exactly nine fractional digits
-- (2026-01-02T03:04:05.000000000Z), so comparing the text compares the times.
-- JSON columns hold serde_json text. `state` has no CHECK constraint on purpose:
-- later migrations add states, and SQLite cannot alter a CHECK without a table rebuild.

CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    starts_at     TEXT    NOT NULL,
    alertname     TEXT,
    alert_status  TEXT    NOT NULL CHECK (alert_status IN ('firing', 'resolved')),
    ends_at       TEXT,
    resolved_at   TEXT,
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    generator_url TEXT,
    external_url  TEXT,
    state         TEXT    NOT NULL,
    reason        TEXT,
    plan          TEXT,
    first_seen    TEXT    NOT NULL,
    last_seen     TEXT    NOT NULL,
    receive_count INTEGER NOT NULL CHECK (receive_count >= 1),
    -- The incident key (DESIGN.md invariant 8): one row per alert occurrence, however
    -- many re-sends and HA copies arrive.
    UNIQUE (source, fingerprint, starts_at)
) STRICT;

-- The engine polls incidents by state, oldest first.
CREATE INDEX incidents_by_state ON incidents (state, id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at          TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    detail      TEXT    NOT NULL
) STRICT;

CREATE INDEX events_by_incident ON events (incident_id, id);
