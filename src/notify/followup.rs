//! What a follow-up says: the short "resolved" message sent, once per channel, after a
//! page whose incident is over (its alert resolved, or a later incident of the same alert
//! was fixed and verified). Pure: values in, text and JSON out; it never sends.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::content::{Escalation, one_line};
use super::webhook::generic_body;

/// A follow-up of one page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowUp {
    /// The page as it was sent (shown through `Escalation::for_humans`).
    pub page: Escalation,
    /// `None`: the alert resolved. `Some(id)`: incident `id` of the same alert was fixed
    /// and verified.
    pub fixed_by: Option<i64>,
    pub at: DateTime<Utc>,
}

impl FollowUp {
    /// This follow-up as a human may be shown it (see `Escalation::for_humans`).
    pub fn for_humans(&self) -> FollowUp {
        FollowUp {
            page: self.page.for_humans(),
            ..self.clone()
        }
    }

    /// One line: `resolved: <the page's summary>`.
    pub fn summary_line(&self) -> String {
        format!("resolved: {}", self.page.summary_line())
    }

    /// Why the page is over, in one sentence.
    pub fn resolution(&self) -> String {
        match self.fixed_by {
            None => "The alert resolved.".to_owned(),
            Some(id) => {
                format!("Incident #{id} for the same alert was remediated and verified by salve.")
            }
        }
    }
}

/// The plain text of a follow-up: short, pointing back at the page.
pub fn render_follow_up_text(follow_up: &FollowUp) -> String {
    let page = &follow_up.page;
    let mut out = String::new();
    let _ = writeln!(out, "{}", one_line(&follow_up.summary_line()));
    let _ = writeln!(
        out,
        "Incident #{} ({}), paged at {}, is over at {}.",
        page.incident_id,
        page.reason.as_str(),
        page.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        follow_up.at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(out, "{}", follow_up.resolution());
    if let Some(target) = &page.target {
        let _ = writeln!(out, "Target: {}", one_line(&target.name));
    }
    out
}

/// The generic preset's follow-up: the page's fields with `event = "resolved"`,
/// `resolved_at`, `fixed_by` (an incident id or null), `resolution` and `text` (this
/// follow-up's). A page carries `event = "triggered"`.
pub fn generic_resolved_body(follow_up: &FollowUp) -> Value {
    let mut body = generic_body(&follow_up.page);
    if let Value::Object(fields) = &mut body {
        fields.insert("event".into(), Value::String("resolved".into()));
        fields.insert("resolved_at".into(), json!(follow_up.at.to_rfc3339()));
        fields.insert("fixed_by".into(), json!(follow_up.fixed_by));
        fields.insert("resolution".into(), Value::String(follow_up.resolution()));
        fields.insert(
            "text".into(),
            Value::String(render_follow_up_text(follow_up)),
        );
    }
    body
}

/// An Events API v2 `resolve` for the page's `dedup_key`: PagerDuty closes the alert the
/// page opened.
pub fn pagerduty_resolve_body(routing_key: &str, follow_up: &FollowUp) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": super::webhook::incident_dedup_key(follow_up.page.incident_id),
        "client": "salve",
    })
}

/// A follow-up of `content::sample()`, for template checks at startup and for tests.
pub fn sample() -> FollowUp {
    let page = super::content::sample();
    FollowUp {
        at: page.created_at + chrono::Duration::minutes(10),
        page,
        fixed_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::content::sample;

    fn follow_up(fixed_by: Option<i64>) -> FollowUp {
        FollowUp {
            page: sample(),
            fixed_by,
            at: DateTime::parse_from_rfc3339("2026-11-28T03:10:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn pagerduty_resolve_closes_the_pages_dedup_key() {
        let body = pagerduty_resolve_body("key", &follow_up(None));
        assert_eq!(
            body,
            json!({
                "routing_key": "key",
                "event_action": "resolve",
                "dedup_key": "salve-incident-42",
                "client": "salve",
            })
        );
        let trigger = crate::notify::webhook::pagerduty_body("key", &sample());
        assert_eq!(trigger["dedup_key"], body["dedup_key"]);
    }

    #[test]
    fn generic_resolved_event_keeps_the_page_and_says_why() {
        let resolved = generic_resolved_body(&follow_up(None));
        assert_eq!(resolved["event"], "resolved");
        assert_eq!(resolved["incident_id"], 42);
        assert_eq!(resolved["fixed_by"], Value::Null);
        assert_eq!(resolved["resolved_at"], "2026-11-28T03:10:00+00:00");
        assert_eq!(resolved["resolution"], "The alert resolved.");
        let text = resolved["text"].as_str().unwrap();
        assert!(text.starts_with("resolved: ServiceDown on web1"), "{text}");
        assert!(text.contains("Incident #42 (verify_failed)"), "{text}");

        let fixed = generic_resolved_body(&follow_up(Some(57)));
        assert_eq!(fixed["fixed_by"], 57);
        assert!(
            fixed["resolution"]
                .as_str()
                .unwrap()
                .contains("Incident #57"),
            "{fixed}"
        );
        assert_eq!(
            crate::notify::webhook::generic_body(&sample())["event"],
            "triggered"
        );
    }
}
