//! SQL for the filtered incidents listing (the web UI's and the API's filters): state,
//! alertname, host (the plan's target), recipe (the plan's recipe), first seen since, and
//! the id cursor. Reads only; never decides what a filter means beyond matching it.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::rows::{INCIDENT_COLUMNS, incident_from_row, time_text};
use super::sql_limit;
use crate::incident::Incident;
use crate::store::IncidentFilter;

/// Up to `limit` incidents matching every set field of `filter`, newest first. One query;
/// the values are bound parameters, never spliced into the SQL text.
pub(super) fn incidents_matching(
    conn: &Connection,
    filter: &IncidentFilter,
    limit: usize,
) -> rusqlite::Result<Vec<Incident>> {
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(state) = filter.state {
        conditions.push("state = ?");
        values.push(Value::Text(state.as_str().to_owned()));
    }
    if let Some(alertname) = &filter.alertname {
        conditions.push("alertname = ?");
        values.push(Value::Text(alertname.clone()));
    }
    if let Some(host) = &filter.host {
        conditions.push("json_extract(plan, '$.target.name') = ?");
        values.push(Value::Text(host.clone()));
    }
    if let Some(recipe) = &filter.recipe {
        conditions.push("json_extract(plan, '$.recipe') = ?");
        values.push(Value::Text(recipe.clone()));
    }
    if let Some(since) = filter.since {
        // Fixed-width RFC 3339 text: text order is time order.
        conditions.push("first_seen >= ?");
        values.push(Value::Text(time_text(since)));
    }
    if let Some(before) = filter.before {
        conditions.push("id < ?");
        values.push(Value::Integer(before.0));
    }
    let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    values.push(Value::Integer(sql_limit(limit)));
    conn.prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(values), incident_from_row)?
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use crate::alert::{Alert, AlertStatus, Fingerprint, Source};
    use crate::incident::{IncidentId, State};
    use crate::plan::{Plan, PlanOutcome, PlannedTarget};
    use crate::store::{IncidentFilter, Store};

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn alert(fingerprint: &str, alertname: &str) -> Alert {
        Alert {
            source: Source::Generic,
            fingerprint: Fingerprint::parse(fingerprint).unwrap(),
            status: AlertStatus::Firing,
            labels: BTreeMap::from([("alertname".to_owned(), alertname.to_owned())]),
            annotations: BTreeMap::new(),
            starts_at: Some(time("2026-11-28T10:00:00Z")),
            ends_at: None,
            generator_url: None,
            external_url: None,
        }
    }

    fn plan(recipe: &str, target: &str) -> Plan {
        Plan {
            target: Some(PlannedTarget {
                name: target.to_owned(),
                address: "127.0.0.1".to_owned(),
                port: 22,
                user: None,
            }),
            ..Plan::inert(
                PlanOutcome::Refused,
                Some(recipe.to_owned()),
                "test".to_owned(),
                Vec::new(),
            )
        }
    }

    fn ids(found: &[crate::incident::Incident]) -> Vec<i64> {
        found.iter().map(|incident| incident.id.0).collect()
    }

    #[tokio::test]
    async fn each_filter_field_narrows_the_listing() {
        let (_dir, store) = super::super::tests::temp_store();
        let mut created = Vec::new();
        for (fingerprint, alertname, at) in [
            ("aa", "DiskFull", "2026-11-28T10:00:01Z"),
            ("bb", "DiskFull", "2026-11-28T11:00:01Z"),
            ("cc", "ServiceDown", "2026-11-28T12:00:01Z"),
        ] {
            let ingested = store
                .ingest(vec![alert(fingerprint, alertname)], time(at))
                .await
                .unwrap();
            created.push(ingested[0].id);
        }
        let (aa, bb, cc) = (created[0], created[1], created[2]);
        store
            .record_plan(
                aa,
                State::Received,
                State::Refused,
                &plan("disk-space", "web1"),
            )
            .await
            .unwrap();
        store
            .record_plan(
                bb,
                State::Received,
                State::Refused,
                &plan("disk-space", "web2"),
            )
            .await
            .unwrap();
        let matching = |filter: IncidentFilter| {
            let store = &store;
            async move { ids(&store.incidents_matching(&filter, 10).await.unwrap()) }
        };
        assert_eq!(
            matching(IncidentFilter::default()).await,
            vec![cc.0, bb.0, aa.0]
        );
        let host = |name: &str| IncidentFilter {
            host: Some(name.to_owned()),
            ..IncidentFilter::default()
        };
        assert_eq!(matching(host("web1")).await, vec![aa.0]);
        assert_eq!(matching(host("web")).await, Vec::<i64>::new());
        let recipe = IncidentFilter {
            recipe: Some("disk-space".to_owned()),
            ..IncidentFilter::default()
        };
        assert_eq!(matching(recipe).await, vec![bb.0, aa.0]);
        let state = IncidentFilter {
            state: Some(State::Received),
            ..IncidentFilter::default()
        };
        assert_eq!(matching(state).await, vec![cc.0]);
        let alertname = IncidentFilter {
            alertname: Some("DiskFull".to_owned()),
            ..IncidentFilter::default()
        };
        assert_eq!(matching(alertname).await, vec![bb.0, aa.0]);
        let since = IncidentFilter {
            since: Some(time("2026-11-28T11:00:00Z")),
            ..IncidentFilter::default()
        };
        assert_eq!(matching(since).await, vec![cc.0, bb.0]);
        let page = IncidentFilter {
            alertname: Some("DiskFull".to_owned()),
            before: Some(IncidentId(bb.0)),
            ..IncidentFilter::default()
        };
        assert_eq!(matching(page).await, vec![aa.0]);
        // A value is bound, never SQL: a quote matches nothing and breaks nothing.
        assert_eq!(matching(host("web1' OR '1'='1")).await, Vec::<i64>::new());
        assert_eq!(
            ids(&store
                .incidents_matching(&IncidentFilter::default(), 1)
                .await
                .unwrap()),
            vec![cc.0]
        );
    }
}
