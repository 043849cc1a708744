-- 0005: one incident per alert occurrence — its fingerprint (computed from the labels),
-- its labels and its start — whichever route (Alertmanager, Grafana, generic) brought it.
-- The source leaves the key, so the old UNIQUE (source, fingerprint, starts_at) must go:
-- SQLite cannot drop a table constraint, so the table is rebuilt with the same columns,
-- rows and ids. Foreign keys stay on (a migration runs in a transaction, where they cannot
-- be switched off): their checks are deferred to the commit, and re-inserting every row
-- satisfies again each journal, run and outbox row the drop orphaned. A later migration
-- that adds a column to incidents before this one (renumbering) must add it here too.

-- Child-side index for the checks below (and for reading an incident's runs).
CREATE INDEX runs_by_incident ON runs (incident_id);

CREATE TABLE incidents_v3_copy AS SELECT * FROM incidents;
PRAGMA defer_foreign_keys = ON;
DROP TABLE incidents;

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
    escalated_at  TEXT,
    -- 1 for the row that holds the unique (fingerprint, starts_at) key. 0 for an alert
    -- whose labels were crafted to collide with another alert's fingerprint and start
    -- (FNV-1a is no cryptographic hash; lookups compare the labels, so it is still its own
    -- incident), and for older rows that duplicated a key across sources (readable;
    -- lookups prefer the keyed row).
    keyed         INTEGER NOT NULL DEFAULT 1 CHECK (keyed IN (0, 1)),
    -- 1 when the sender gave no startsAt and salve used the receive time: such an
    -- incident takes the monitor's own startsAt when the same alert arrives with one.
    start_assumed INTEGER NOT NULL DEFAULT 0 CHECK (start_assumed IN (0, 1))
) STRICT;

INSERT INTO incidents (id, source, fingerprint, starts_at, alertname, alert_status, ends_at,
    resolved_at, labels, annotations, generator_url, external_url, state, reason, plan,
    first_seen, last_seen, receive_count, escalated_at, keyed, start_assumed)
SELECT id, source, fingerprint, starts_at, alertname, alert_status, ends_at,
    resolved_at, labels, annotations, generator_url, external_url, state, reason, plan,
    first_seen, last_seen, receive_count, escalated_at,
    NOT EXISTS (
        SELECT 1 FROM incidents_v3_copy AS older
        WHERE older.fingerprint = incidents_v3_copy.fingerprint
          AND older.starts_at = incidents_v3_copy.starts_at
          AND older.id < incidents_v3_copy.id),
    -- Before this step a generic alert without startsAt was stored with its receive time.
    source = 'generic' AND starts_at = first_seen
FROM incidents_v3_copy;

DROP TABLE incidents_v3_copy;

CREATE INDEX incidents_by_state ON incidents (state, id);
-- The one index keyed by the alert: every lookup (the same fingerprint and labels, by
-- start, keyed or not) and the writer's check that at most one row holds a key
-- (`keyed = 1`; the single writer inserts every row and checks it in the same
-- transaction). One index, not also a UNIQUE partial one: fingerprints are hashes, so each
-- new alert dirties a leaf at a random place in every index keyed by them, and a second
-- such index cost a third of the intake rate (BENCHMARKS.md).
CREATE INDEX incidents_by_fingerprint ON incidents (fingerprint, starts_at, keyed);
