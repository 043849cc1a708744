-- 0004: one incident per (fingerprint, starts_at), whichever route (Alertmanager, Grafana,
-- generic) brought the alert; fingerprints are computed from the labels from now on.
-- The old UNIQUE (source, fingerprint, starts_at) stays: SQLite cannot drop it without
-- rebuilding the table, and the new key implies it.

-- 0 for the rare older rows that already shared a (fingerprint, starts_at) with an older
-- row from another source: they stay readable, but only the oldest holds the key, so the
-- unique index below can exist and a new alert joins exactly one incident.
ALTER TABLE incidents ADD COLUMN keyed INTEGER NOT NULL DEFAULT 1 CHECK (keyed IN (0, 1));

-- 1 when the sender gave no startsAt and salve used the receive time: such an incident
-- takes the monitor's own startsAt when the same alert arrives with one.
ALTER TABLE incidents ADD COLUMN start_assumed INTEGER NOT NULL DEFAULT 0
    CHECK (start_assumed IN (0, 1));

UPDATE incidents SET keyed = 0
WHERE EXISTS (
    SELECT 1 FROM incidents AS older
    WHERE older.fingerprint = incidents.fingerprint
      AND older.starts_at = incidents.starts_at
      AND older.id < incidents.id
);

-- Before this step a generic alert without startsAt was stored with its receive time.
UPDATE incidents SET start_assumed = 1 WHERE source = 'generic' AND starts_at = first_seen;

CREATE UNIQUE INDEX incidents_by_alert ON incidents (fingerprint, starts_at) WHERE keyed = 1;
