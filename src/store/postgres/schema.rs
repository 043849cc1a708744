//! Versioned schema migrations for the PostgreSQL store, tracked in `salve_schema`. All
//! pending steps run in one transaction under a transaction-level advisory lock, so
//! replicas starting together migrate once (the others wait, then find nothing to do),
//! and a failed step leaves the database as it was. Steps are only ever appended; a
//! database newer than this binary is never opened.

use crate::store::StoreError;

use super::pg_error;

/// The schema steps in order. Step `i` takes the version from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_schema.sql"),
    include_str!("migrations/0002_one_fingerprint_index.sql"),
];

/// The advisory lock key migrations hold (any constant; "salve" in ASCII).
const MIGRATION_LOCK: i64 = 0x73_61_6c_76_65;

pub(super) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub(super) async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    let latest = latest_version();
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS salve_schema (version BIGINT NOT NULL);
         INSERT INTO salve_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM salve_schema)",
    )
    .await
    .map_err(pg_error)?;
    let version: i64 = tx
        .query_one("SELECT version FROM salve_schema", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    if version > latest {
        return Err(StoreError::Config(format!(
            "database schema version {version} is newer than this salve understands \
             (up to {latest}); run a newer salve or point [store] url at another database"
        )));
    }
    if version < 0 {
        return Err(StoreError::Config(format!(
            "database has schema version {version}; it was not created by salve"
        )));
    }
    for (index, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(step).await.map_err(|e| {
            let StoreError::Unavailable(why) = pg_error(e) else {
                unreachable!("pg_error only answers Unavailable")
            };
            StoreError::Config(format!(
                "migration to schema version {} failed: {why}",
                index + 1
            ))
        })?;
    }
    if version < latest {
        tx.execute("UPDATE salve_schema SET version = $1", &[&latest])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    if version < latest {
        tracing::info!(
            from = version,
            to = latest,
            "store schema migrated (PostgreSQL)"
        );
    }
    Ok(())
}
