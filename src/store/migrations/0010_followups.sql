-- 0010: pages that close. When a paged incident's alert resolves, or a later incident of
-- the same alert is fixed and verified, each channel its page went to is told so, once.

-- Whether a sent page was looked at for a follow-up: NULL while undecided (its alert still
-- firing), 'queued' (a `followups` row exists) or 'none' (the route opted out, the channel
-- cannot follow up, the page went out in a digest). Pages queued before this step are
-- 'none': their mails carried no stable Message-ID to thread under.
ALTER TABLE outbox ADD COLUMN follow_up TEXT CHECK (follow_up IN ('queued', 'none'));
UPDATE outbox SET follow_up = 'none';
-- The engine's scan reads only undecided pages.
CREATE INDEX outbox_follow_up_undecided ON outbox (incident_id) WHERE follow_up IS NULL;

-- One follow-up per (paged incident, channel), whatever told salve (a second resolved
-- notification, a replay after a restart, a later success): never two. Retried until the
-- channel accepts it, like the page (page_id) it follows.
CREATE TABLE followups (
    id              INTEGER PRIMARY KEY,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    channel         TEXT    NOT NULL,
    page_id         INTEGER NOT NULL REFERENCES outbox (id),
    cause           TEXT    NOT NULL CHECK (cause IN ('resolved', 'succeeded')),
    -- For 'succeeded': the later incident of the same alert that was fixed.
    by_incident     INTEGER REFERENCES incidents (id),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sent')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    sent_at         TEXT,
    UNIQUE (incident_id, channel)
) STRICT;

CREATE INDEX followups_due ON followups (status, next_attempt_at);
