//! The inventory: the allow-list of hosts salve may touch. A target that does not
//! resolve here is refused; nothing outside it is ever connected to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::PlannedTarget;

/// One `[[hosts]]` entry of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Inventory name; what a recipe's `target` usually renders to (e.g. `web1`).
    pub name: String,
    /// Address to connect to (IP or DNS name); defaults to `name`.
    #[serde(default)]
    pub address: Option<String>,
    /// SSH port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// SSH user; defaults to `[ssh] user`.
    #[serde(default)]
    pub user: Option<String>,
    /// Operator-written facts about the host, e.g. `services = "nginx,app"` (a text) or
    /// `services = ["nginx", "app"]` (a list): a recipe param's `one_of_host_label` takes
    /// the values salve may act on from here, and command templates read them as
    /// `{{ host_labels.NAME }}` (quoted like any value). Trusted: the inventory is config.
    #[serde(default)]
    pub labels: BTreeMap<String, LabelValue>,
}

/// A host label's value: one text, or a list of texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    Text(String),
    List(Vec<String>),
}

impl LabelValue {
    /// The allowed values this label lists: a list's items as written, or a text's
    /// comma-separated items with surrounding whitespace trimmed; empty items are dropped
    /// (so `""` lists nothing and `"a,,b"` lists `a` and `b`).
    pub fn items(&self) -> Vec<&str> {
        match self {
            LabelValue::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .collect(),
            LabelValue::List(items) => items
                .iter()
                .map(String::as_str)
                .filter(|item| !item.is_empty())
                .collect(),
        }
    }
}

impl From<&str> for LabelValue {
    fn from(text: &str) -> LabelValue {
        LabelValue::Text(text.to_owned())
    }
}

fn default_port() -> u16 {
    22
}

impl Host {
    pub fn address(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.name)
    }

    pub fn planned_target(&self) -> PlannedTarget {
        PlannedTarget {
            name: self.name.clone(),
            address: self.address().to_owned(),
            port: self.port,
            user: self.user.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    hosts: Vec<Host>,
}

impl Inventory {
    pub fn new(hosts: Vec<Host>) -> Inventory {
        Inventory { hosts }
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host a rendered target names: by inventory name first, then by address.
    /// Exact, case-sensitive comparison: no DNS lookup, no pattern, no guessing.
    pub fn resolve(&self, target: &str) -> Option<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name == target)
            .or_else(|| self.hosts.iter().find(|h| h.address() == target))
    }

    /// Problems a config check reports: duplicate names, empty names or addresses.
    /// Each is (index into hosts, message).
    pub fn problems(&self) -> Vec<(usize, String)> {
        let mut problems = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            if host.name.trim().is_empty() {
                problems.push((i, "host name is empty".to_owned()));
            }
            if host.address().trim().is_empty() {
                problems.push((i, "host address is empty".to_owned()));
            }
            if self.hosts[..i].iter().any(|h| h.name == host.name) {
                problems.push((i, format!("duplicate host name {:?}", host.name)));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: Option<&str>) -> Host {
        Host {
            name: name.into(),
            address: address.map(Into::into),
            port: 22,
            user: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn resolves_by_name_then_address_and_nothing_else() {
        let inventory = Inventory::new(vec![host("web1", Some("10.0.0.5")), host("db1", None)]);
        assert_eq!(inventory.resolve("web1").unwrap().name, "web1");
        assert_eq!(inventory.resolve("10.0.0.5").unwrap().name, "web1");
        assert_eq!(inventory.resolve("db1").unwrap().address(), "db1");
        assert!(inventory.resolve("WEB1").is_none());
        assert!(inventory.resolve("web1:22").is_none());
        assert!(inventory.resolve("").is_none());
    }

    #[test]
    fn label_values_list_items_from_text_or_list() {
        assert_eq!(
            LabelValue::from(" nginx, app ,,x.service").items(),
            ["nginx", "app", "x.service"]
        );
        assert!(LabelValue::from("").items().is_empty());
        assert_eq!(
            LabelValue::List(vec!["a,b".into(), "".into(), " c".into()]).items(),
            ["a,b", " c"],
            "list items are taken as written"
        );
        let host: Host = toml::from_str(
            "name = \"web1\"\nlabels = { services = \"nginx,app\", ports = [\"80\", \"8080\"] }",
        )
        .unwrap();
        assert_eq!(host.labels["services"].items(), ["nginx", "app"]);
        assert_eq!(host.labels["ports"].items(), ["80", "8080"]);
        assert!(toml::from_str::<Host>("name = \"w\"\nlabels = { n = 3 }").is_err());
    }

    #[test]
    fn reports_duplicates() {
        let inventory = Inventory::new(vec![host("a", None), host("a", None)]);
        assert_eq!(
            inventory.problems(),
            vec![(1, "duplicate host name \"a\"".to_owned())]
        );
    }
}
