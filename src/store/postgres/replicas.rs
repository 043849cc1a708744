//! Replicas and what they own. A replica is a serving process with a lease on the
//! server's clock (`now()`), renewed by `heartbeat`; its number (a sequence, never reused)
//! is the fencing token on what it claims. An incident a replica runs carries its number
//! (`incidents.owner`): writes to a `remediating`/`verifying` incident need that owner and
//! a live lease (`check_owner`), so a replica whose lease ran out and whose work was taken
//! over can no longer change it.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::incident::{Incident, IncidentId, State};
use crate::store::{Heartbeat, StoreError};

use super::rows::{INCIDENT_COLUMNS, get, incidents_from_rows, sql_limit};
use super::{PgStore, get as get_client, pg_error};

/// SQL: the replicas whose lease runs now.
pub(super) const LIVE_REPLICAS: &str =
    "SELECT id FROM replicas WHERE lease_until > now() AND stopped_at IS NULL";

/// Advisory lock key that makes claim passes take turns across replicas ("claim").
const CLAIM_LOCK: i64 = 0x63_6c_61_69_6d;

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

pub(super) async fn join(store: &PgStore, name: &str, lease: Duration) -> Result<i64, StoreError> {
    let client = store.client().await?;
    let row = client
        .query_one(
            "INSERT INTO replicas (name, lease_until)
             VALUES ($1, now() + make_interval(secs => $2)) RETURNING id",
            &[&name, &seconds(lease)],
        )
        .await
        .map_err(pg_error)?;
    let id: i64 = get(&row, 0)?;
    store
        .replica
        .store(id, std::sync::atomic::Ordering::Relaxed);
    *store.lease.lock().expect("lease lock") = lease;
    tracing::info!(replica = id, name, lease = %humantime::format_duration(lease), "joined the replicas sharing the store");
    Ok(id)
}

pub(super) async fn heartbeat(store: &PgStore) -> Result<Heartbeat, StoreError> {
    let me = store.me();
    let client = get_client(&store.lease_pool).await?;
    // Renewed only while it runs: a lease that ran out is a dead identity.
    let renewed = client
        .execute(
            "UPDATE replicas SET heartbeat_at = now(), lease_until = now() + make_interval(secs => $2)
             WHERE id = $1 AND lease_until > now() AND stopped_at IS NULL",
            &[&me, &seconds(store.lease())],
        )
        .await
        .map_err(pg_error)?;
    let lapsed = renewed == 0;
    if lapsed {
        // Whatever it claimed is anyone's now (its runs are taken over like a dead
        // replica's, maybe by itself): it comes back as a new replica, with a new token.
        let name: Option<String> = client
            .query_opt(
                "UPDATE replicas SET stopped_at = COALESCE(stopped_at, now()) WHERE id = $1 RETURNING name",
                &[&me],
            )
            .await
            .map_err(pg_error)?
            .map(|row| row.get(0));
        let name = name.unwrap_or_else(|| format!("replica {me}, rejoined"));
        let id = join(store, &name, store.lease()).await?;
        tracing::error!(
            old = me,
            new = id,
            "this replica's lease had run out (a stall or a lost database): it rejoined as a new replica; its runs are taken over as a dead replica's"
        );
    }
    let live: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM ({LIVE_REPLICAS}) AS live"),
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(Heartbeat {
        live_replicas: usize::try_from(live).unwrap_or(1).max(1),
        lapsed,
    })
}

pub(super) async fn leave(store: &PgStore) -> Result<(), StoreError> {
    let me = store.me();
    if me == 0 {
        return Ok(());
    }
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "UPDATE replicas SET stopped_at = now(), lease_until = now() WHERE id = $1",
        &[&me],
    )
    .await
    .map_err(pg_error)?;
    let released = tx
        .execute(
            "UPDATE incidents SET owner = NULL WHERE owner = $1 AND state = 'matched'",
            &[&me],
        )
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    tracing::info!(
        replica = me,
        released,
        "left the replicas sharing the store"
    );
    Ok(())
}

pub(super) async fn claim_matched(
    store: &PgStore,
    limit: usize,
    max_hosts: usize,
) -> Result<Vec<Incident>, StoreError> {
    let me = store.me();
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // Claim passes take turns, so each sees the hosts the others own.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])
        .await
        .map_err(pg_error)?;
    let mine: BTreeSet<String> = tx
        .query(
            "SELECT DISTINCT target FROM incidents
             WHERE owner = $1 AND target IS NOT NULL
               AND state IN ('matched', 'remediating', 'verifying')",
            &[&me],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| get(row, 0))
        .collect::<Result<_, _>>()?;
    let candidates = tx
        .query(
            &format!(
                "SELECT id, target FROM incidents
                 WHERE state = 'matched'
                   AND (owner IS NULL OR (owner <> $1 AND owner NOT IN ({LIVE_REPLICAS})))
                   AND (target IS NULL OR target NOT IN (
                        SELECT target FROM incidents
                        WHERE state IN ('matched', 'remediating', 'verifying')
                          AND target IS NOT NULL AND owner IS NOT NULL AND owner <> $1
                          AND owner IN ({LIVE_REPLICAS})))
                 ORDER BY id LIMIT $2
                 FOR UPDATE SKIP LOCKED"
            ),
            &[&me, &sql_limit(limit)],
        )
        .await
        .map_err(pg_error)?;
    let ids = crate::store::pick_within_hosts(
        candidates
            .iter()
            .map(|row| Ok((get::<i64>(row, 0)?, get::<Option<String>>(row, 1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?,
        mine,
        max_hosts,
    );
    tx.execute(
        "UPDATE incidents SET owner = $1 WHERE id = ANY($2)",
        &[&me, &ids],
    )
    .await
    .map_err(pg_error)?;
    let rows = tx
        .query(
            &format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents
                 WHERE state = 'matched' AND owner = $1 ORDER BY id LIMIT $2"
            ),
            &[&me, &sql_limit(limit)],
        )
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    incidents_from_rows(&rows)
}

pub(super) async fn claim_orphans(store: &PgStore) -> Result<Vec<Incident>, StoreError> {
    let me = store.me();
    let client = store.client().await?;
    let rows = client
        .query(
            &format!(
                "UPDATE incidents SET owner = $1 WHERE id IN (
                     SELECT id FROM incidents
                     WHERE state IN ('remediating', 'verifying')
                       AND (owner IS NULL OR owner NOT IN ({LIVE_REPLICAS}))
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {INCIDENT_COLUMNS}"
            ),
            &[&me],
        )
        .await
        .map_err(pg_error)?;
    let mut claimed = incidents_from_rows(&rows)?;
    claimed.sort_by_key(|incident| incident.id);
    Ok(claimed)
}

/// The fence: a write to incident `id` in `state` by this replica. While it is
/// `remediating` or `verifying`, only its owner may write it, and only while its lease
/// runs; `NotOwner` otherwise (nothing is written). Call inside the writing transaction,
/// after locking the incident's row.
pub(super) async fn check_owner(
    client: &impl GenericClient,
    store: &PgStore,
    id: IncidentId,
    state: State,
) -> Result<(), StoreError> {
    if !matches!(state, State::Remediating | State::Verifying) {
        return Ok(());
    }
    let me = store.me();
    let row = client
        .query_one(
            &format!("SELECT owner, $2 IN ({LIVE_REPLICAS}) FROM incidents WHERE id = $1"),
            &[&id.0, &me],
        )
        .await
        .map_err(pg_error)?;
    let owner: Option<i64> = get(&row, 0)?;
    let live: bool = get(&row, 1)?;
    // A process that is no replica (a test, a tool) writes only what no replica owns.
    let allowed = if me == 0 {
        owner.is_none_or(|owner| owner == 0)
    } else {
        owner == Some(me) && live
    };
    if allowed {
        Ok(())
    } else {
        Err(StoreError::NotOwner { id, owner })
    }
}
