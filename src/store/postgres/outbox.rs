//! Escalations: claiming incidents to escalate, the outbox and its digests, follow-ups.
//! A row being delivered is claimed by one replica at a time (`claimed_by`,
//! `claimed_until` on the server's clock).

use chrono::{DateTime, Utc};

use crate::incident::{EscalationReason, Incident, IncidentId};
use crate::store::{FollowUpCandidate, FollowUpItem, OutboxItem, StoreError};

use super::PgStore;
use super::core::not_ported;

pub(super) async fn incidents_to_escalate(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<Incident>, StoreError> {
    let _ = (store, limit);
    not_ported!("incidents_to_escalate")
}

pub(super) async fn enqueue_escalation(
    store: &PgStore,
    id: IncidentId,
    reason: EscalationReason,
    channels: &[String],
    payload: &serde_json::Value,
) -> Result<(), StoreError> {
    let _ = (store, id, reason, channels, payload);
    not_ported!("enqueue_escalation")
}

pub(super) async fn due_escalations(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let _ = (store, limit);
    not_ported!("due_escalations")
}

pub(super) async fn escalation_sent(store: &PgStore, item: &OutboxItem) -> Result<(), StoreError> {
    let _ = (store, item);
    not_ported!("escalation_sent")
}

pub(super) async fn escalation_failed(
    store: &PgStore,
    item: &OutboxItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let _ = (store, item, error, next_attempt_at);
    not_ported!("escalation_failed")
}

pub(super) async fn outbox_pending(store: &PgStore) -> Result<i64, StoreError> {
    let _ = store;
    not_ported!("outbox_pending")
}

pub(super) async fn new_digest(
    store: &PgStore,
    channel: &str,
    reason: &str,
    size: usize,
) -> Result<i64, StoreError> {
    let _ = (store, channel, reason, size);
    not_ported!("new_digest")
}

pub(super) async fn digest_sent(
    store: &PgStore,
    digest: i64,
    items: &[OutboxItem],
) -> Result<(), StoreError> {
    let _ = (store, digest, items);
    not_ported!("digest_sent")
}

pub(super) async fn digest_failed(
    store: &PgStore,
    digest: i64,
    items: &[OutboxItem],
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let _ = (store, digest, items, error, next_attempt_at);
    not_ported!("digest_failed")
}

pub(super) async fn follow_up_candidates(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<FollowUpCandidate>, StoreError> {
    let _ = (store, limit);
    not_ported!("follow_up_candidates")
}

pub(super) async fn decide_follow_ups(
    store: &PgStore,
    decisions: Vec<(FollowUpCandidate, bool)>,
) -> Result<(), StoreError> {
    let _ = (store, decisions);
    not_ported!("decide_follow_ups")
}

pub(super) async fn due_follow_ups(
    store: &PgStore,
    limit: usize,
) -> Result<Vec<FollowUpItem>, StoreError> {
    let _ = (store, limit);
    not_ported!("due_follow_ups")
}

pub(super) async fn follow_up_sent(store: &PgStore, item: &FollowUpItem) -> Result<(), StoreError> {
    let _ = (store, item);
    not_ported!("follow_up_sent")
}

pub(super) async fn follow_up_failed(
    store: &PgStore,
    item: &FollowUpItem,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let _ = (store, item, error, next_attempt_at);
    not_ported!("follow_up_failed")
}
