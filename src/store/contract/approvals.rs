//! The contract of approval requests: one decision per request, for the plan it was made
//! for; expiry and a resolved alert end it.

use std::collections::BTreeMap;

use chrono::Utc;

use super::TestStore;
use crate::alert::Alert;
use crate::incident::{IncidentId, State};
use crate::plan::{Mode, Plan, PlanOutcome};
use crate::store::{ApprovalDecision, ApprovalOutcome, ApprovalRefusal, LinkProof};

contract_tests!(
    a_request_is_decided_once_for_its_own_plan_and_nonce,
    a_plan_that_changed_since_the_request_cannot_be_approved,
    expiry_ends_only_requests_past_their_time_and_denial_is_final,
);

/// An incident planned `matched` with an approve-mode plan; returns it and its digest.
async fn waiting_plan(store: &TestStore, n: u32) -> (IncidentId, Plan) {
    let labels = BTreeMap::from([
        ("alertname".to_owned(), "ServiceDown".to_owned()),
        ("n".to_owned(), n.to_string()),
    ]);
    let alert = Alert {
        starts_at: Some(Utc::now()),
        ..Alert::firing_generic(labels)
    };
    let id = store.ingest(vec![alert], Utc::now()).await.unwrap()[0].id;
    let plan = Plan {
        mode: Mode::Enforce,
        approval: true,
        commands: vec!["systemctl restart 'nginx'".into()],
        ..Plan::inert(
            PlanOutcome::Planned,
            Some("service-restart".into()),
            String::new(),
            vec![],
        )
    };
    store
        .record_plan(id, State::Received, State::Matched, &plan)
        .await
        .unwrap();
    (id, plan)
}

async fn request(store: &TestStore, id: IncidentId, plan: &Plan, nonce: &str, minutes: i64) {
    store
        .request_approval(
            id,
            &plan.digest(),
            nonce,
            Utc::now() + chrono::Duration::minutes(minutes),
        )
        .await
        .unwrap();
}

async fn state_of(store: &TestStore, id: IncidentId) -> State {
    store.incident(id).await.unwrap().unwrap().incident.state
}

async fn a_request_is_decided_once_for_its_own_plan_and_nonce(store: &mut TestStore) {
    let (id, plan) = waiting_plan(store, 1).await;
    request(store, id, &plan, "n1", 15).await;
    assert_eq!(state_of(store, id).await, State::AwaitingApproval);

    // A link of an older request (another nonce) or another plan is refused.
    for (digest, nonce) in [(plan.digest(), "n0"), ("0".repeat(64), "n1")] {
        let proof = LinkProof {
            plan_digest: digest,
            nonce: nonce.into(),
        };
        let outcome = store
            .decide_approval(id, ApprovalDecision::Approve, "link", Some(proof))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ApprovalOutcome::Refused(ApprovalRefusal::PlanChanged)
        );
    }
    assert_eq!(state_of(store, id).await, State::AwaitingApproval);

    let proof = LinkProof {
        plan_digest: plan.digest(),
        nonce: "n1".into(),
    };
    let outcome = store
        .decide_approval(id, ApprovalDecision::Approve, "link", Some(proof.clone()))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ApprovalOutcome::Decided {
            plan_digest: plan.digest()
        }
    );
    assert_eq!(state_of(store, id).await, State::Matched);
    let again = store
        .decide_approval(id, ApprovalDecision::Approve, "link", Some(proof))
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            ApprovalOutcome::Refused(ApprovalRefusal::AlreadyDecided { .. })
        ),
        "{again:?}"
    );
    let request = store.approval(id).await.unwrap().unwrap();
    assert_eq!(
        (request.decision.as_deref(), request.decided_by.as_deref()),
        (Some("approved"), Some("link"))
    );
}

async fn a_plan_that_changed_since_the_request_cannot_be_approved(store: &mut TestStore) {
    let (id, plan) = waiting_plan(store, 1).await;
    // The request was made for another plan than the one the incident holds now.
    let mut older = plan.clone();
    older.commands = vec!["systemctl restart 'other'".into()];
    request(store, id, &older, "n1", 15).await;
    let outcome = store
        .decide_approval(id, ApprovalDecision::Approve, "cli:root", None)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ApprovalOutcome::Refused(ApprovalRefusal::PlanChanged)
    );
    assert_eq!(state_of(store, id).await, State::AwaitingApproval);
}

async fn expiry_ends_only_requests_past_their_time_and_denial_is_final(store: &mut TestStore) {
    let (late, late_plan) = waiting_plan(store, 1).await;
    let (fresh, fresh_plan) = waiting_plan(store, 2).await;
    request(store, late, &late_plan, "a", -1).await;
    request(store, fresh, &fresh_plan, "b", 15).await;

    let refused = store
        .decide_approval(late, ApprovalDecision::Approve, "ops", None)
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            ApprovalOutcome::Refused(ApprovalRefusal::Expired(_))
        ),
        "{refused:?}"
    );
    assert_eq!(
        store.expire_approvals(Utc::now()).await.unwrap(),
        vec![late]
    );
    assert_eq!(state_of(store, late).await, State::ApprovalExpired);
    assert_eq!(state_of(store, fresh).await, State::AwaitingApproval);
    assert!(store.expire_approvals(Utc::now()).await.unwrap().is_empty());

    let denied = store
        .decide_approval(
            fresh,
            ApprovalDecision::Deny {
                reason: "freeze".into(),
            },
            "ops",
            None,
        )
        .await
        .unwrap();
    assert!(matches!(denied, ApprovalOutcome::Decided { .. }));
    assert_eq!(state_of(store, fresh).await, State::Denied);
    // Both wait to be paged (escalated_at cleared), once each.
    let to_page: Vec<IncidentId> = store
        .incidents_to_escalate(10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(to_page, vec![late, fresh]);
}
