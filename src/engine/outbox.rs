//! Delivery of queued escalations: takes due outbox rows, hands them to their channels,
//! and records the answer — sent, or failed with the next attempt after an exponential
//! backoff. Rows survive restarts; a row is retried until its channel accepts it.
//! Deliveries run concurrently (bounded), so a slow channel or a flood never holds back
//! another incident's page. A flood — more than `digest_after` escalations for one
//! (channel, reason) within `digest_window` — goes out as one digest listing them all, at
//! most one digest per window; `max_per_minute` bounds what a channel is sent at all.
//! It never drops a row: a row that may not go now stays pending for a later pass.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::{EscalationLabels, Metrics};
use crate::notify::{Channels, Digest, Escalation, EscalationReason, FollowUp, SendError};
use crate::recipe::Routes;
use crate::store::{FollowUpCandidate, FollowUpCause, FollowUpItem, OutboxItem, Store, StoreError};

/// Due rows one pass looks at, beyond those being delivered (which it skips, so rows
/// in flight never hide a new page).
const DUE_SCAN: usize = 2000;
/// Most escalations in one digest; more wait for the next one.
const DIGEST_MAX: usize = 500;
/// The outbox is also checked this often, for rows whose backoff ended.
const OUTBOX_POLL: Duration = Duration::from_millis(500);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// At shutdown, deliveries in flight get this long to finish (an abandoned one is
/// delivered again by the next process: at-least-once).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const MINUTE: Duration = Duration::from_secs(60);
/// After a wake, how long the outbox gathers before its pass.
const WAKE_GATHER: Duration = Duration::from_millis(50);

/// 1 s, 2 s, 4 s … capped at 5 min.
pub fn backoff(failed_attempts: i64) -> Duration {
    let exponent = failed_attempts.clamp(0, 16) as u32;
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_RETRY)
}

/// How the outbox paces deliveries (`[escalation]` and each channel's `max_per_minute`).
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub digest_after: usize,
    pub digest_window: Duration,
    pub max_concurrent: usize,
    /// Channel name → messages it may get per minute.
    pub max_per_minute: BTreeMap<String, u32>,
    /// `[[escalation.routes]]`, for their `resolve` flag: whether a page is followed up.
    pub routes: Routes,
}

impl Default for DeliveryPolicy {
    fn default() -> DeliveryPolicy {
        DeliveryPolicy {
            digest_after: 5,
            digest_window: MINUTE,
            max_concurrent: 8,
            max_per_minute: BTreeMap::new(),
            routes: Routes::default(),
        }
    }
}

impl DeliveryPolicy {
    pub fn from_settings(settings: &crate::config::EscalationSettings) -> DeliveryPolicy {
        DeliveryPolicy {
            digest_after: settings.digest_after,
            digest_window: settings.digest_window,
            max_concurrent: settings.max_concurrent_deliveries.max(1),
            max_per_minute: settings
                .channels
                .iter()
                .filter_map(|(name, channel)| Some((name.clone(), channel.max_per_minute()?)))
                .collect(),
            routes: settings.routes(),
        }
    }
}

/// What one (channel, reason) was sent lately.
#[derive(Debug, Default)]
struct KeyWindow {
    /// When each message (single or digest) started, within the digest window.
    sent: VecDeque<Instant>,
    last_digest: Option<Instant>,
}

/// The pacing decisions, in memory: a restart starts with fresh windows (it may send
/// up to `digest_after` singles again), never with lost rows.
#[derive(Debug, Default)]
struct Pacing {
    keys: HashMap<(String, EscalationReason), KeyWindow>,
    /// Per channel, when each message in the last minute started.
    channels: HashMap<String, VecDeque<Instant>>,
}

/// What a pass decided for one (channel, reason)'s due rows.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Send these rows one message each (the rest wait for a later pass).
    Singles(usize),
    /// Send the first `n` rows as one digest.
    Digest(usize),
    /// Nothing may go before this instant.
    WaitUntil(Instant),
}

impl Pacing {
    fn prune(&mut self, now: Instant, window: Duration) {
        for key in self.keys.values_mut() {
            while key
                .sent
                .front()
                .is_some_and(|&at| now.duration_since(at) >= window)
            {
                key.sent.pop_front();
            }
        }
        for sent in self.channels.values_mut() {
            while sent
                .front()
                .is_some_and(|&at| now.duration_since(at) >= MINUTE)
            {
                sent.pop_front();
            }
        }
    }

    /// How many messages `channel` may still get now, and when the next slot frees.
    fn channel_room(&self, channel: &str, limit: Option<u32>) -> (usize, Option<Instant>) {
        let Some(limit) = limit else {
            return (usize::MAX, None);
        };
        let sent = self.channels.get(channel);
        let used = sent.map_or(0, VecDeque::len);
        let room = (limit as usize).saturating_sub(used);
        let next = sent.and_then(|s| s.front()).map(|&at| at + MINUTE);
        (room, if room == 0 { next } else { None })
    }

    /// The decision for `due` rows of (channel, reason), given the policy.
    fn plan(
        &self,
        key: &(String, EscalationReason),
        due: usize,
        policy: &DeliveryPolicy,
        now: Instant,
    ) -> Plan {
        let (room, next_slot) =
            self.channel_room(&key.0, policy.max_per_minute.get(&key.0).copied());
        if room == 0 {
            return Plan::WaitUntil(next_slot.unwrap_or(now + MINUTE));
        }
        let window = self.keys.get(key);
        let sent = window.map_or(0, |w| w.sent.len());
        let last_digest = window.and_then(|w| w.last_digest);
        let in_flood = last_digest.is_some_and(|at| now.duration_since(at) < policy.digest_window);
        if !in_flood && sent + due <= policy.digest_after {
            return Plan::Singles(due.min(room));
        }
        match last_digest {
            Some(at) if in_flood => Plan::WaitUntil(at + policy.digest_window),
            _ => Plan::Digest(due.min(DIGEST_MAX)),
        }
    }

    /// A message started at `at` was not accepted: it does not count (a refused page
    /// reached no human, so its retry is not a flood).
    fn forget(&mut self, key: &(String, EscalationReason), message: Message, at: Instant) {
        if let Some(window) = self.keys.get_mut(key) {
            if let Some(position) = window.sent.iter().position(|&sent| sent == at) {
                window.sent.remove(position);
            }
            if message == Message::Digest && window.last_digest == Some(at) {
                window.last_digest = None;
            }
        }
        if let Some(sent) = self.channels.get_mut(&key.0)
            && let Some(position) = sent.iter().position(|&sent| sent == at)
        {
            sent.remove(position);
        }
    }

    fn record(&mut self, key: &(String, EscalationReason), message: Message, now: Instant) {
        let window = self.keys.entry(key.clone()).or_default();
        window.sent.push_back(now);
        if message == Message::Digest {
            window.last_digest = Some(now);
        }
        self.channels
            .entry(key.0.clone())
            .or_default()
            .push_back(now);
    }
}

/// What one delivery sent: one incident's page, or a digest of several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    Single,
    Digest,
}

pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub channels: Arc<Channels>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    pub policy: DeliveryPolicy,
}

/// Shared by the outbox loop and its delivery tasks.
struct Shared {
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    metrics: Arc<Metrics>,
    /// Outbox rows being delivered now, so a pass never takes one twice.
    in_flight: Mutex<HashSet<i64>>,
    /// Deliveries in flight per channel: one hung channel may take at most half the
    /// slots, so the others' pages still go.
    per_channel: Mutex<HashMap<String, usize>>,
    /// What each (channel, reason) and channel was sent lately.
    pacing: Mutex<Pacing>,
    /// Follow-up rows being delivered now (ids of the `followups` table).
    follow_ups_in_flight: Mutex<HashSet<i64>>,
}

impl Shared {
    /// Takes a delivery slot for `channel` if it has fewer than `cap` in flight.
    fn take_channel_slot(&self, channel: &str, cap: usize) -> bool {
        let mut per_channel = self.per_channel.lock().expect("per_channel lock");
        let used = per_channel.entry(channel.to_owned()).or_default();
        if *used >= cap {
            return false;
        }
        *used += 1;
        true
    }

    fn release_channel_slot(&self, channel: &str) {
        let mut per_channel = self.per_channel.lock().expect("per_channel lock");
        if let Some(used) = per_channel.get_mut(channel) {
            *used = used.saturating_sub(1);
        }
    }
}

impl Outbox {
    /// Delivers due escalations until `shutdown` is cancelled; deliveries in flight then
    /// get `SHUTDOWN_GRACE` to finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = Arc::new(Shared {
            store: self.store,
            channels: self.channels,
            metrics: self.metrics,
            in_flight: Mutex::new(HashSet::new()),
            per_channel: Mutex::new(HashMap::new()),
            pacing: Mutex::new(Pacing::default()),
            follow_ups_in_flight: Mutex::new(HashSet::new()),
        });
        let slots = Arc::new(Semaphore::new(self.policy.max_concurrent));
        let mut deliveries = JoinSet::new();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while deliveries.try_join_next().is_some() {}
            let next = match pass(&shared, &self.policy, &slots, &mut deliveries).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox pass failed; retrying");
                    None
                }
            };
            if let Err(e) = follow_up_pass(&shared, &self.policy, &slots, &mut deliveries).await {
                tracing::warn!(error = %e, "follow-up pass failed; retrying");
            }
            if let Ok(pending) = shared.store.outbox_pending().await {
                shared.metrics.outbox_pending.set(pending);
            }
            let sleep = next
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(OUTBOX_POLL)
                .min(OUTBOX_POLL);
            tokio::select! {
                // A flood wakes the outbox once per queued escalation: gather a moment
                // so a pass sees many rows at once, not one.
                _ = self.wake.notified() => tokio::time::sleep(WAKE_GATHER).await,
                _ = tokio::time::sleep(sleep) => {}
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
                _ = shutdown.cancelled() => {}
            }
        }
        if !deliveries.is_empty()
            && tokio::time::timeout(SHUTDOWN_GRACE, async {
                while deliveries.join_next().await.is_some() {}
            })
            .await
            .is_err()
        {
            tracing::warn!(
                running = deliveries.len(),
                "escalation deliveries cut off at shutdown; they are sent again at the next start"
            );
            deliveries.shutdown().await;
        }
    }
}

/// One pass: groups the due rows by (channel, reason), decides for each group (singles,
/// a digest, or wait) and starts the deliveries while slots are free. Returns the
/// earliest instant a waiting group may go, if any waits.
async fn pass(
    shared: &Arc<Shared>,
    policy: &DeliveryPolicy,
    slots: &Arc<Semaphore>,
    deliveries: &mut JoinSet<()>,
) -> Result<Option<Instant>, StoreError> {
    // Taken before the read: a delivery in flight now may finish (and mark its row sent)
    // while the read runs, and the read may still show that row pending. Skipping what was
    // in flight before the read, as well as what is now, never sends a row twice; only
    // passes start deliveries, and they run one after another.
    let before_read: HashSet<i64> = shared.in_flight.lock().expect("in_flight lock").clone();
    let due = shared
        .store
        .due_escalations(DUE_SCAN + before_read.len())
        .await?;
    let mut groups: Vec<((String, EscalationReason), Vec<OutboxItem>)> = Vec::new();
    {
        let in_flight = shared.in_flight.lock().expect("in_flight lock");
        for item in due {
            if before_read.contains(&item.id) || in_flight.contains(&item.id) {
                continue;
            }
            let key = (item.channel.clone(), item.reason);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, items)) => items.push(item),
                None => groups.push((key, vec![item])),
            }
        }
    }
    let now = Instant::now();
    // No await below while this is held.
    let mut pacing = shared.pacing.lock().expect("pacing lock");
    pacing.prune(now, policy.digest_window);
    let mut next: Option<Instant> = None;
    let channel_cap = (policy.max_concurrent / 2).max(1);
    for (key, mut items) in groups {
        match pacing.plan(&key, items.len(), policy, now) {
            Plan::WaitUntil(at) => {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            Plan::Singles(n) => {
                for item in items.drain(..n) {
                    if !shared.take_channel_slot(&key.0, channel_cap) {
                        break;
                    }
                    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
                        shared.release_channel_slot(&key.0);
                        return Ok(next);
                    };
                    pacing.record(&key, Message::Single, now);
                    shared
                        .in_flight
                        .lock()
                        .expect("in_flight lock")
                        .insert(item.id);
                    let shared = Arc::clone(shared);
                    deliveries.spawn(async move {
                        let id = item.id;
                        match deliver_one(&shared, &item).await {
                            Ok(true) => {}
                            Ok(false) => shared.pacing.lock().expect("pacing lock").forget(
                                &(item.channel.clone(), item.reason),
                                Message::Single,
                                now,
                            ),
                            Err(e) => {
                                tracing::warn!(incident = %item.incident_id, error = %e, "escalation outcome not recorded; it is tried again");
                            }
                        }
                        shared.in_flight.lock().expect("in_flight lock").remove(&id);
                        shared.release_channel_slot(&item.channel);
                        drop(permit);
                    });
                }
            }
            Plan::Digest(n) => {
                if !shared.take_channel_slot(&key.0, channel_cap) {
                    continue;
                }
                let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
                    shared.release_channel_slot(&key.0);
                    return Ok(next);
                };
                pacing.record(&key, Message::Digest, now);
                let batch: Vec<OutboxItem> = items.drain(..n).collect();
                {
                    let mut in_flight = shared.in_flight.lock().expect("in_flight lock");
                    in_flight.extend(batch.iter().map(|item| item.id));
                }
                let shared = Arc::clone(shared);
                deliveries.spawn(async move {
                    match deliver_digest(&shared, &key.0, key.1, &batch).await {
                        Ok(true) => {}
                        Ok(false) => shared
                            .pacing
                            .lock()
                            .expect("pacing lock")
                            .forget(&key, Message::Digest, now),
                        Err(e) => {
                            tracing::warn!(channel = %key.0, error = %e, "escalation digest outcome not recorded; it is tried again");
                        }
                    }
                    {
                        let mut in_flight = shared.in_flight.lock().expect("in_flight lock");
                        for item in &batch {
                            in_flight.remove(&item.id);
                        }
                    }
                    shared.release_channel_slot(&key.0);
                    drop(permit);
                });
            }
        }
    }
    Ok(next)
}

/// Follow-ups ("resolved" after a page): decides for each sent page whose incident is over
/// whether it gets one — not when its route says `resolve = false`, its channel cannot
/// (a webhook body template without `body_resolved`), or it went out in a digest (a
/// digest has no thread or dedup key of one incident to close) — then starts the due
/// deliveries while slots are free. Follow-ups are not paced: there is at most one per
/// single page sent, and single pages are.
async fn follow_up_pass(
    shared: &Arc<Shared>,
    policy: &DeliveryPolicy,
    slots: &Arc<Semaphore>,
    deliveries: &mut JoinSet<()>,
) -> Result<(), StoreError> {
    let candidates = shared.store.follow_up_candidates(DUE_SCAN).await?;
    if !candidates.is_empty() {
        let decisions = candidates
            .into_iter()
            .map(|candidate| {
                let wanted = wants_follow_up(&shared.channels, &policy.routes, &candidate);
                (candidate, wanted)
            })
            .collect();
        shared.store.decide_follow_ups(decisions).await?;
    }
    // As in `pass`: what was in flight before the read is skipped too, so a delivery that
    // finished during the read is never started again.
    let before_read: HashSet<i64> = shared
        .follow_ups_in_flight
        .lock()
        .expect("follow-ups lock")
        .clone();
    let due = shared
        .store
        .due_follow_ups(DUE_SCAN + before_read.len())
        .await?;
    for item in due {
        {
            let mut in_flight = shared.follow_ups_in_flight.lock().expect("follow-ups lock");
            if before_read.contains(&item.id) || in_flight.contains(&item.id) {
                continue;
            }
            let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
                return Ok(());
            };
            in_flight.insert(item.id);
            let shared = Arc::clone(shared);
            deliveries.spawn(async move {
                if let Err(e) = deliver_follow_up(&shared, &item).await {
                    tracing::warn!(incident = %item.incident_id, error = %e, "follow-up outcome not recorded; it is tried again");
                }
                shared
                    .follow_ups_in_flight
                    .lock()
                    .expect("follow-ups lock")
                    .remove(&item.id);
                drop(permit);
            });
        }
    }
    Ok(())
}

fn wants_follow_up(channels: &Channels, routes: &Routes, candidate: &FollowUpCandidate) -> bool {
    let labels = candidate
        .payload
        .get("labels")
        .cloned()
        .and_then(|labels| serde_json::from_value(labels).ok())
        .unwrap_or_default();
    !candidate.digested && channels.follows_up(&candidate.channel) && routes.follows_up(&labels)
}

async fn deliver_follow_up(shared: &Shared, item: &FollowUpItem) -> Result<(), StoreError> {
    let outcome = match serde_json::from_value::<Escalation>(item.page.clone()) {
        Ok(page) => {
            let follow_up = FollowUp {
                page,
                fixed_by: match item.cause {
                    FollowUpCause::Resolved => None,
                    FollowUpCause::Succeeded(by) => Some(by.0),
                },
                at: Utc::now(),
            };
            shared
                .channels
                .send_follow_up(&item.channel, &follow_up)
                .await
        }
        Err(e) => Err(SendError {
            message: format!("stored page unreadable: {e}"),
            retryable: false,
        }),
    };
    match outcome {
        Ok(()) => {
            shared.store.follow_up_sent(item).await?;
            tracing::info!(incident = %item.incident_id, channel = %item.channel, "follow-up delivered");
        }
        Err(e) => {
            let next = refused(shared, &item.channel, &e, item.attempts, 1);
            shared
                .store
                .follow_up_failed(item, &e.message, next)
                .await?;
        }
    }
    Ok(())
}

fn read_payload(item: &OutboxItem) -> Result<Escalation, SendError> {
    serde_json::from_value(item.payload.clone()).map_err(|e| SendError {
        // Written by this program; only a downgrade could make it unreadable.
        message: format!("stored escalation unreadable: {e}"),
        retryable: false,
    })
}

/// `Ok(true)` when the channel accepted it.
async fn deliver_one(shared: &Shared, item: &OutboxItem) -> Result<bool, StoreError> {
    let outcome = match read_payload(item) {
        Ok(escalation) => shared.channels.send(&item.channel, &escalation).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {
            shared.store.escalation_sent(item).await?;
            count_sent(shared, &item.channel, item.reason, 1);
            tracing::info!(incident = %item.incident_id, channel = %item.channel, reason = %item.reason, "escalation delivered");
            Ok(true)
        }
        Err(e) => {
            let next = refused(shared, &item.channel, &e, item.attempts, 1);
            shared
                .store
                .escalation_failed(item, &e.message, next)
                .await?;
            Ok(false)
        }
    }
}

async fn deliver_digest(
    shared: &Shared,
    channel: &str,
    reason: EscalationReason,
    items: &[OutboxItem],
) -> Result<bool, StoreError> {
    let mut escalations = Vec::with_capacity(items.len());
    let mut readable = Vec::with_capacity(items.len());
    for item in items {
        match read_payload(item) {
            Ok(escalation) => {
                escalations.push(escalation);
                readable.push(item.clone());
            }
            Err(e) => {
                let next = Utc::now()
                    + chrono::Duration::from_std(backoff(item.attempts)).unwrap_or_default();
                shared
                    .store
                    .escalation_failed(item, &e.message, next)
                    .await?;
            }
        }
    }
    if readable.is_empty() {
        return Ok(false);
    }
    let digest_id = shared
        .store
        .new_digest(channel, reason.as_str(), readable.len())
        .await?;
    let digest = Digest::new(digest_id, reason, &escalations, Utc::now());
    match shared.channels.send_digest(channel, &digest).await {
        Ok(()) => {
            shared.store.digest_sent(digest_id, &readable).await?;
            count_sent(shared, channel, reason, readable.len() as u64);
            tracing::info!(
                channel,
                reason = reason.as_str(),
                digest = digest_id,
                incidents = readable.len(),
                "escalation digest delivered"
            );
            Ok(true)
        }
        Err(e) => {
            let attempts = readable
                .iter()
                .map(|i| i.attempts)
                .max()
                .unwrap_or_default();
            let next = refused(shared, channel, &e, attempts, readable.len());
            shared
                .store
                .digest_failed(digest_id, &readable, &e.message, next)
                .await?;
            Ok(false)
        }
    }
}

/// A delivery `channel` refused after `attempts` earlier tries (`messages` escalations in
/// it): logged and counted; returns when to try again.
fn refused(
    shared: &Shared,
    channel: &str,
    error: &SendError,
    attempts: i64,
    messages: usize,
) -> DateTime<Utc> {
    let wait = backoff(attempts);
    log_failure(channel, error, wait, messages);
    count_failed(shared, channel);
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
}

fn count_sent(shared: &Shared, channel: &str, reason: EscalationReason, n: u64) {
    shared
        .metrics
        .escalations
        .get_or_create(&EscalationLabels {
            channel: channel.to_owned(),
            reason: reason.as_str().to_owned(),
        })
        .inc_by(n);
}

fn count_failed(shared: &Shared, channel: &str) {
    shared
        .metrics
        .escalation_delivery_failures
        .get_or_create(&crate::metrics::ChannelLabel {
            channel: channel.to_owned(),
        })
        .inc();
}

fn log_failure(channel: &str, e: &SendError, wait: Duration, incidents: usize) {
    if e.retryable {
        tracing::warn!(channel, incidents, error = %e.message, retry_in = ?wait, "escalation not accepted; will retry");
    } else {
        // Retried all the same (never lost), but this one needs an operator: the
        // channel refused it outright (bad address, credentials, payload).
        tracing::error!(channel, incidents, error = %e.message, retry_in = ?wait, "escalation refused by its channel; check the channel's settings");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(1000), Duration::from_secs(300));
    }

    fn key(channel: &str, reason: &str) -> (String, EscalationReason) {
        (channel.to_owned(), EscalationReason::parse(reason).unwrap())
    }

    #[test]
    fn a_few_go_singly_a_flood_becomes_one_digest_per_window() {
        let policy = DeliveryPolicy::default();
        let mut pacing = Pacing::default();
        let start = Instant::now();
        let novel = key("oncall", "novel");
        // Three at once: singles.
        assert_eq!(pacing.plan(&novel, 3, &policy, start), Plan::Singles(3));
        for _ in 0..3 {
            pacing.record(&novel, Message::Single, start);
        }
        // Three more would make six in the window: one digest of them, now.
        assert_eq!(pacing.plan(&novel, 3, &policy, start), Plan::Digest(3));
        pacing.record(&novel, Message::Digest, start);
        // Later in the window, whatever comes waits for the window's end...
        let later = start + Duration::from_secs(10);
        pacing.prune(later, policy.digest_window);
        assert_eq!(
            pacing.plan(&novel, 1, &policy, later),
            Plan::WaitUntil(start + MINUTE)
        );
        // ...then goes as one digest.
        let end = start + MINUTE;
        pacing.prune(end, policy.digest_window);
        assert_eq!(pacing.plan(&novel, 400, &policy, end), Plan::Digest(400));
        // Another reason on the same channel is counted on its own.
        assert_eq!(
            pacing.plan(&key("oncall", "failed"), 1, &policy, later),
            Plan::Singles(1)
        );
        // A refused message does not count: its retry is not a flood.
        let failed = key("tickets", "novel");
        let mut pacing = Pacing::default();
        for _ in 0..5 {
            pacing.record(&failed, Message::Single, start);
        }
        assert_eq!(pacing.plan(&failed, 1, &policy, start), Plan::Digest(1));
        for _ in 0..5 {
            pacing.forget(&failed, Message::Single, start);
        }
        assert_eq!(pacing.plan(&failed, 5, &policy, start), Plan::Singles(5));
        // A thousand at once: one digest straight away, capped.
        let fresh = Pacing::default();
        assert_eq!(
            fresh.plan(&novel, 5000, &policy, start),
            Plan::Digest(DIGEST_MAX)
        );
    }

    #[test]
    fn max_per_minute_holds_messages_back_never_drops_them() {
        let mut policy = DeliveryPolicy::default();
        policy.max_per_minute.insert("pager".into(), 2);
        let mut pacing = Pacing::default();
        let start = Instant::now();
        let failed = key("pager", "failed");
        assert_eq!(pacing.plan(&failed, 4, &policy, start), Plan::Singles(2));
        pacing.record(&failed, Message::Single, start);
        pacing.record(&failed, Message::Single, start);
        assert_eq!(
            pacing.plan(&key("pager", "novel"), 1, &policy, start),
            Plan::WaitUntil(start + MINUTE)
        );
        let after = start + MINUTE;
        pacing.prune(after, policy.digest_window);
        assert_eq!(pacing.plan(&failed, 2, &policy, after), Plan::Singles(2));
    }
}
