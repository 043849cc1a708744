-- 0004: escalation bookkeeping.
-- When a recipe's `attach` diagnostics last ran on a target, and for which incident: an
-- incident that was not run (breaker open, rate limited) collects them at most once per
-- breaker window per (recipe, target), however many such incidents escalate.
CREATE TABLE diagnostics_runs (
    recipe      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    incident_id INTEGER NOT NULL,
    at          TEXT    NOT NULL,
    PRIMARY KEY (recipe, target)
) STRICT;

-- Digests: many escalations for one reason to one channel sent as one message. Each
-- attempt gets a number (journaled on its incidents); sent_at is set once the channel
-- accepted it, in the transaction that marks its outbox rows sent.
CREATE TABLE digests (
    id         INTEGER PRIMARY KEY,
    channel    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    sent_at    TEXT
) STRICT;
