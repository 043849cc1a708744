//! Delivery of queued escalations: takes due outbox rows, hands each to its channel,
//! and records the answer — sent, or failed with the next attempt after an exponential
//! backoff. Rows survive restarts; a row is retried until its channel accepts it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use crate::escalate::{Channels, Escalation};
use crate::metrics::{EscalationLabels, Metrics};
use crate::store::{OutboxItem, Store, StoreError};

/// Rows one pass takes.
const DELIVERY_BATCH: usize = 32;
/// The outbox is also checked this often, for rows whose backoff ended.
const OUTBOX_POLL: Duration = Duration::from_millis(500);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// 1 s, 2 s, 4 s … capped at 5 min.
pub fn backoff(failed_attempts: i64) -> Duration {
    let exponent = failed_attempts.clamp(0, 16) as u32;
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_RETRY)
}

pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub channels: Arc<Channels>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
}

impl Outbox {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.deliver_due().await {
                Ok(n) if n == DELIVERY_BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox pass failed; retrying"),
            }
            if let Ok(pending) = self.store.outbox_pending().await {
                self.metrics.outbox_pending.set(pending);
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(OUTBOX_POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Deliver every due row once; returns how many were tried.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let due = self.store.due_escalations(DELIVERY_BATCH).await?;
        for item in &due {
            self.deliver(item).await?;
        }
        Ok(due.len())
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<(), StoreError> {
        let escalation: Escalation = match serde_json::from_value(item.payload.clone()) {
            Ok(escalation) => escalation,
            Err(e) => {
                // Written by this program; only a downgrade could make it unreadable.
                let error = format!("stored escalation unreadable: {e}");
                return self.failed(item, &error, false).await;
            }
        };
        match self.channels.send(&item.channel, &escalation).await {
            Ok(()) => {
                self.store.escalation_sent(item).await?;
                self.metrics
                    .escalations
                    .get_or_create(&EscalationLabels {
                        channel: item.channel.clone(),
                        reason: item.reason.clone(),
                    })
                    .inc();
                tracing::info!(incident = %item.incident_id, channel = %item.channel, reason = %item.reason, "escalation delivered");
                Ok(())
            }
            Err(e) => self.failed(item, &e.message, e.retryable).await,
        }
    }

    async fn failed(
        &self,
        item: &OutboxItem,
        error: &str,
        retryable: bool,
    ) -> Result<(), StoreError> {
        let wait = backoff(item.attempts);
        let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        if retryable {
            tracing::warn!(incident = %item.incident_id, channel = %item.channel, error, retry_in = ?wait, "escalation not accepted; will retry");
        } else {
            // Retried all the same (never lost), but this one needs an operator: the
            // channel refused it outright (bad address, credentials, payload).
            tracing::error!(incident = %item.incident_id, channel = %item.channel, error, retry_in = ?wait, "escalation refused by its channel; check the channel's settings");
        }
        self.store.escalation_failed(item, error, next).await
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
}
