//! A silence for the life of the fix: when a remediation starts, its alert is silenced in
//! Alertmanager until the fix could at the latest be over; when the incident ends, however
//! it ends, the silence is expired, so the alert's normal route pages a human only if the
//! fix did not work. A silence is a courtesy, never a gate: a failure to make or expire one
//! is journaled and logged, and the fix goes on. After a crash, `expire_orphan_silences`
//! expires the silences of incidents that ended (or were interrupted) meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use crate::incident::{Event, IncidentId, State};
use crate::silence::{OwnSilence, Silencer};
use crate::store::Store;

use super::Remediator;
use super::gates::RunPlan;

/// No silence lasts longer, whatever a recipe's timeouts add up to.
const LONGEST_SILENCE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The silencer and the silences of the fixes running in this process, by incident.
pub(super) struct FixSilences {
    silencer: Arc<Silencer>,
    active: Mutex<HashMap<IncidentId, String>>,
}

impl Remediator {
    /// The same remediator, silencing each fix's alert through `silencer`.
    pub fn with_silences(self, silencer: Arc<Silencer>) -> Remediator {
        Remediator {
            silences: Some(FixSilences {
                silencer,
                active: Mutex::new(HashMap::new()),
            }),
            ..self
        }
    }

    /// Silences the alert of `run` (now `remediating`) until its steps' timeouts, its
    /// verify window and the margin have passed; journals `silenced` or `silence_failed`.
    pub(super) async fn silence_fix(&self, run: &RunPlan) {
        let Some(silences) = &self.silences else {
            return;
        };
        let labels = match self.store.incident(run.id).await {
            Ok(Some(detail)) => detail.incident.labels,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(incident = %run.id, error = %e, "cannot read the incident's labels: not silenced");
                return;
            }
        };
        let plan = &run.plan;
        let longest = plan
            .command_timeout
            .saturating_mul(u32::try_from(plan.commands.len()).unwrap_or(u32::MAX))
            .saturating_add(plan.verify.as_ref().map(|v| v.within).unwrap_or_default())
            .saturating_add(silences.silencer.margin())
            .min(LONGEST_SILENCE);
        let ends_at = Utc::now()
            + chrono::Duration::from_std(longest).expect("a week fits in a chrono duration");
        let comment = silences
            .silencer
            .comment(run.id, run.recipe(), &run.target.name);
        let event = match silences.silencer.create(&labels, ends_at, &comment).await {
            Ok(silence_id) => {
                tracing::info!(incident = %run.id, silence = %silence_id, ends_at = %ends_at, "alert silenced in Alertmanager for the fix");
                silences
                    .active
                    .lock()
                    .expect("silences lock")
                    .insert(run.id, silence_id.clone());
                Event::Silenced {
                    silence_id,
                    ends_at,
                }
            }
            Err(e) => {
                tracing::warn!(incident = %run.id, error = %e, "cannot silence the alert; the fix goes on");
                Event::SilenceFailed {
                    reason: format!("silencing the alert: {e}"),
                }
            }
        };
        self.journal_silence(run.id, event).await;
    }

    /// Expires the silence of `id`'s fix, if this process made one; journals
    /// `silence_expired` or `silence_failed`.
    pub(super) async fn end_silence(&self, id: IncidentId) {
        let Some(silences) = &self.silences else {
            return;
        };
        let Some(silence_id) = silences.active.lock().expect("silences lock").remove(&id) else {
            return;
        };
        let event = expire(&silences.silencer, id, silence_id).await;
        self.journal_silence(id, event).await;
    }

    async fn journal_silence(&self, id: IncidentId, event: Event) {
        if let Err(e) = self.store.append_event(id, event).await {
            tracing::warn!(incident = %id, error = %e, "silence not journaled");
        }
    }
}

/// Expires `silence_id` and says what to journal.
async fn expire(silencer: &Silencer, id: IncidentId, silence_id: String) -> Event {
    match silencer.expire(&silence_id).await {
        Ok(()) => {
            tracing::info!(incident = %id, silence = %silence_id, "silence expired");
            Event::SilenceExpired { silence_id }
        }
        Err(e) => {
            tracing::warn!(incident = %id, silence = %silence_id, error = %e, "cannot expire the silence; it lapses at its end");
            Event::SilenceFailed {
                reason: format!("expiring silence {silence_id}: {e}"),
            }
        }
    }
}

/// At startup, after crash recovery: expires each active silence salve made whose incident
/// in this store is no longer running (it ended, or recovery interrupted or re-queued it),
/// and journals it on that incident. A silence whose incident is not in this store, or
/// whose matchers are not exactly that incident's labels, belongs to another salve and is
/// left alone; so is every silence not `createdBy` salve or without salve's comment.
/// Returns how many were expired; an unreachable Alertmanager is logged, not fatal.
pub async fn expire_orphan_silences(store: &dyn Store, silencer: &Silencer) -> usize {
    let own = match silencer.own_active().await {
        Ok(own) => own,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list salve's silences: orphans lapse at their end");
            return 0;
        }
    };
    let mut expired = 0;
    for OwnSilence {
        id: silence_id,
        incident,
        labels,
    } in own
    {
        let current = match store.incident(incident).await {
            Ok(Some(detail)) => detail.incident,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(incident = %incident, error = %e, "cannot read the incident of a silence");
                continue;
            }
        };
        if matches!(current.state, State::Remediating | State::Verifying) {
            // Another process sharing this store is fixing it now.
            continue;
        }
        let wanted: std::collections::BTreeMap<String, String> = current
            .labels
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
        if labels.as_ref() != Some(&wanted) {
            continue;
        }
        let event = expire(silencer, incident, silence_id).await;
        if matches!(event, Event::SilenceExpired { .. }) {
            expired += 1;
        }
        if let Err(e) = store.append_event(incident, event).await {
            tracing::warn!(incident = %incident, error = %e, "silence not journaled");
        }
    }
    if expired > 0 {
        tracing::warn!(
            expired,
            "expired silences left by a salve that stopped mid-fix"
        );
    }
    expired
}
