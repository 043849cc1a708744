//! Values shared by the recipe modules' unit tests: a base recipe the tests vary, a
//! one-host inventory, and a readable panic for a list of problems.

use std::collections::BTreeMap;

use super::Problem;
use crate::inventory::{Host, Inventory, LabelValue};

/// A recipe `svc` that restarts the service named by the `service` label of a
/// `ServiceDown` alert on its instance's host, with every optional key left out: the base
/// that tests vary (with `replace`, or by appending tables).
pub(crate) const SERVICE_RESTART: &str = r#"name = "svc"
match = ['alertname="ServiceDown"']
target = "{{ labels.instance | host }}"

[params.service]
from = "labels.service"
pattern = '[a-z]+'

[remediate]
run = ["systemctl restart {{ service }}"]
"#;

/// An inventory of one host `name` (port 22, default address and user) with `labels`.
pub(crate) fn inventory_of(name: &str, labels: BTreeMap<String, LabelValue>) -> Inventory {
    Inventory::new(vec![Host {
        name: name.into(),
        address: None,
        port: 22,
        user: None,
        labels,
    }])
}

/// The value of a load that must succeed; otherwise a panic listing every problem.
#[track_caller]
pub(crate) fn or_panic<T>(result: Result<T, Vec<Problem>>) -> T {
    result.unwrap_or_else(|problems| {
        panic!(
            "{}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}
