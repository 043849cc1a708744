//! Versioned schema migrations for the SQLite store, tracked in `PRAGMA user_version`.
//! Migrations are only ever appended; a shipped step is never edited, and a database
//! newer than this binary is never opened (an older binary could corrupt it silently).

use rusqlite::{Connection, TransactionBehavior};

use crate::store::StoreError;

/// The schema steps in order. Step `i` takes `user_version` from `i` to `i + 1`.
/// Later features (remediation steps, escalation outbox, breakers) append here.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_incidents.sql"),
    include_str!("../migrations/0002_guard_and_outbox.sql"),
    include_str!("../migrations/0003_host_holds.sql"),
    include_str!("../migrations/0004_escalation_digests.sql"),
    include_str!("../migrations/0005_alert_key.sql"),
    include_str!("../migrations/0006_breaker_key.sql"),
    include_str!("../migrations/0007_pauses.sql"),
    include_str!("../migrations/0008_approvals.sql"),
    include_str!("../migrations/0010_followups.sql"),
    include_str!("../migrations/0011_retention.sql"),
    include_str!("../migrations/0012_replicas.sql"),
];

/// The schema version this binary writes and understands.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Bring the database up to `latest_version`, one transaction per step so a failed
/// step leaves the database at the previous version rather than half-migrated.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let latest = latest_version();
    loop {
        // IMMEDIATE takes the write lock before reading the version, so two processes
        // opening the same new file cannot both run step 1.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::Unavailable(format!("cannot start migration: {e}")))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| StoreError::Unavailable(format!("cannot read schema version: {e}")))?;
        if version > latest {
            return Err(StoreError::Config(format!(
                "database schema version {version} is newer than this salve understands \
                 (up to {latest}); run a newer salve or point [store] url at another database"
            )));
        }
        if version < 0 {
            return Err(StoreError::Config(format!(
                "database has user_version {version}; it was not created by salve"
            )));
        }
        if version == latest {
            return Ok(());
        }
        let step = MIGRATIONS[version as usize];
        tx.execute_batch(step).map_err(|e| {
            StoreError::Config(format!(
                "migration to schema version {} failed: {e}",
                version + 1
            ))
        })?;
        // user_version lives in the database header, so it commits with the step.
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(|e| StoreError::Unavailable(format!("cannot set schema version: {e}")))?;
        tx.commit().map_err(|e| {
            StoreError::Unavailable(format!("cannot commit schema version {}: {e}", version + 1))
        })?;
        tracing::info!(version = version + 1, "store schema migrated");
    }
}
