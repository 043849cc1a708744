-- PostgreSQL schema, step 2: one index on incidents by fingerprint instead of two.
--
-- `incidents_key` (the keyed rows, unique) and `incidents_by_fingerprint` (every row, for
-- the lookups) led with the same columns, and every row version paid for both: intake
-- writes two per alert (received, then planned). One unique index over every row serves
-- both: a keyed row is unique on (fingerprint, starts_at) — its last column is 0 — and an
-- unkeyed row's own id sets it apart from every other. Its leading columns are those the
-- lookups used, so they keep their plans.
CREATE UNIQUE INDEX incidents_key_all ON incidents
    (fingerprint, starts_at, keyed, (CASE WHEN keyed = 1 THEN 0 ELSE id END));
DROP INDEX incidents_key;
DROP INDEX incidents_by_fingerprint;
ALTER INDEX incidents_key_all RENAME TO incidents_key;
