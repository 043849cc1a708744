//! Verification: after the steps, every check of the plan is polled each `interval` until
//! all pass in one poll (`succeeded`) or `within` has passed (`verify_failed`, with the
//! last result of every check). Every poll is journaled (`check_poll`). The window is
//! measured on tokio's clock.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::incident::event::VerifyWindow;
use crate::incident::{Event, State};
use crate::store::StoreError;
use crate::verify::CheckResult;

use super::gates::RunPlan;
use super::{Remediator, round_to_ms};

impl Remediator {
    /// From `remediating` to `verifying`, then the final state: the checks' verdict, or
    /// `succeeded` at once for a recipe without checks.
    pub(super) async fn verify(&self, run: &RunPlan) -> Result<(), StoreError> {
        let (id, recipe) = (run.id, run.plan.recipe.as_deref());
        let started_event = Event::VerifyStarted {
            checks: run
                .plan
                .verify
                .as_ref()
                .map_or(0, |verify| verify.checks.len()),
            window: run.plan.verify.as_ref().map(|verify| VerifyWindow {
                within: verify.within,
                interval: verify.interval,
            }),
        };
        self.store
            .transition(
                id,
                State::Remediating,
                State::Verifying,
                None,
                started_event,
            )
            .await?;
        let Some(verify) = &run.plan.verify else {
            let ending = Event::Succeeded {
                results: None,
                reason: "commands succeeded; the recipe defines no checks".into(),
            };
            return self.finish(id, State::Verifying, recipe, ending).await;
        };
        let started = Instant::now();
        let deadline = started + verify.within;
        let mut poll = 0u32;
        loop {
            poll += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            // A poll never outlives `within` by more than one short bound.
            let bound = self
                .check_timeout
                .min(remaining.max(Duration::from_secs(1)));
            let results: Vec<CheckResult> = join_all(verify.checks.iter().map(|check| {
                self.verifier
                    .run(self.runner.as_ref(), &run.target, check, bound)
            }))
            .await;
            let passed = results.iter().all(|r| r.passed);
            self.store
                .append_event(
                    id,
                    Event::CheckPoll {
                        poll,
                        passed,
                        results: results.clone(),
                    },
                )
                .await?;
            if passed {
                let reason = format!(
                    "verified: all {} check(s) passed on poll {poll}, {} after the fix",
                    results.len(),
                    humantime::format_duration(round_to_ms(started.elapsed()))
                );
                let ending = Event::Succeeded {
                    results: Some(results),
                    reason,
                };
                return self.finish(id, State::Verifying, recipe, ending).await;
            }
            let now = Instant::now();
            if now >= deadline {
                let failing: Vec<String> = results
                    .iter()
                    .filter(|r| !r.passed)
                    .map(|r| format!("{}: {}", r.check, r.detail))
                    .collect();
                let reason = format!(
                    "checks still failing after {} ({poll} polls): {}",
                    humantime::format_duration(verify.within),
                    failing.join("; ")
                );
                let ending = Event::VerifyFailed { results, reason };
                return self.finish(id, State::Verifying, recipe, ending).await;
            }
            tokio::time::sleep(verify.interval.min(deadline - now)).await;
        }
    }
}
