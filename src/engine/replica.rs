//! This process as one replica of several sharing the store: it renews its lease every
//! third of the lease, splits the remediation rate limits across the live replicas, and
//! takes over the runs of replicas whose lease ran out (`recover_interrupted`: each becomes
//! `interrupted`, or runs again when idempotent, and its host is held while a command may
//! still run there). Their queued `matched` incidents need nothing here: the next dispatch
//! pass of any replica claims them (`Store::claim_matched`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::plan::Mode;
use crate::store::Store;

use super::{Remediator, recover_interrupted};

pub struct Replica {
    pub store: Arc<dyn Store>,
    pub mode: Mode,
    /// The lease `join_replicas` was given; renewed every third of it.
    pub lease: Duration,
    pub remediator: Option<Arc<Remediator>>,
    pub metrics: Arc<Metrics>,
    /// Wakes the engine when a takeover made work (incidents to escalate or run again).
    pub wake: Arc<Notify>,
}

impl Replica {
    /// Heartbeat and rate split until `stop`; takeover only until `shutdown` (a draining
    /// replica takes no new work, but its lease must outlive the remediations it lets
    /// finish, so `stop` comes after the engine drained). The lease is then ended by
    /// `Store::leave_replicas`, not here.
    ///
    /// The renewal has a task of its own: a takeover pass (many orphans, each read, held
    /// and moved on a busy database) never delays it. When it did, a live replica's lease
    /// ran out behind a long pass, and its own runs were taken over in turn.
    pub async fn run(self, shutdown: CancellationToken, stop: CancellationToken) {
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let this = Arc::new(self);
        // As before the split: no takeover while this replica's own renewal fails (it may
        // be the one cut off from the database).
        let renewed = Arc::new(AtomicBool::new(true));
        let takeover = tokio::spawn({
            let (this, renewed) = (Arc::clone(&this), Arc::clone(&renewed));
            async move {
                let mut ticks = ticks(every);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        () = shutdown.cancelled() => return,
                    }
                    if renewed.load(Ordering::Relaxed) {
                        let started = tokio::time::Instant::now();
                        this.take_over().await;
                        let took = started.elapsed();
                        if took > every {
                            // Orphans wait this long to be claimed: worth seeing.
                            tracing::warn!(?took, "slow takeover pass");
                        }
                    }
                }
            }
        });
        let mut ticks = ticks(every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            renewed.store(this.heartbeat().await, Ordering::Relaxed);
        }
        // `stop` comes after `shutdown`: the takeover loop has ended or ends after its pass.
        if let Err(e) = takeover.await {
            tracing::error!(error = %e, "the takeover task failed");
        }
    }

    /// Renews the lease and splits the rate limits; `false` when the renewal failed.
    async fn heartbeat(&self) -> bool {
        match self.store.heartbeat().await {
            Ok(heartbeat) => {
                if heartbeat.lapsed {
                    // The store logged the new identity; its old runs are orphans now.
                    tracing::warn!("took a new replica identity after a lapsed lease");
                }
                self.metrics
                    .replicas_live
                    .set(heartbeat.live_replicas as i64);
                if let Some(remediator) = &self.remediator {
                    remediator.set_replicas(heartbeat.live_replicas);
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "replica heartbeat failed; retrying");
                false
            }
        }
    }

    /// One heartbeat and takeover pass.
    pub async fn beat(&self) {
        if self.heartbeat().await {
            self.take_over().await;
        }
    }

    /// Takes over the runs of replicas whose lease ran out, if any.
    async fn take_over(&self) {
        match recover_interrupted(self.store.as_ref(), self.mode, self.remediator.as_deref()).await
        {
            Ok(recovered) if recovered.resumed + recovered.interrupted > 0 => {
                Metrics::saturating_inc_by(
                    &self
                        .metrics
                        .incidents
                        .get_or_create(&crate::metrics::OutcomeLabel {
                            outcome: crate::incident::State::Interrupted.as_str(),
                        }),
                    recovered.interrupted as u64,
                );
                tracing::warn!(
                    resumed = recovered.resumed,
                    interrupted = recovered.interrupted,
                    cut_commands = recovered.cut_commands.len(),
                    "took over the runs of a replica whose lease ran out: idempotent ones run again, the others are escalated as interrupted"
                );
                self.wake.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "takeover pass failed; retrying"),
        }
    }
}

/// Ticks every `every`, the first one `every` from now. One that came late (a stall) is
/// followed by the next a full `every` later, not by a burst.
fn ticks(every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}
