//! The canonical alert: what every intake parser produces and everything downstream reads.
//! Nothing here trusts alert text; it only carries it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which monitor sent the alert. Part of the incident key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Alertmanager,
    Grafana,
    Generic,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Alertmanager, Source::Grafana, Source::Generic];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Generic => "generic",
        }
    }

    pub fn parse(text: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<AlertStatus> {
        match text {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// An alert's identity: the hash salve computes from its labels ([`Fingerprint::of_labels`],
/// Alertmanager's own algorithm), never a value a sender supplies, so an alert cannot claim
/// another alert's incident. [`Fingerprint::parse`] only reads identities back from the
/// journal, where incidents stored before schema version 4 may hold a generic sender's own
/// (1–128 printable ASCII characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        if text.is_empty() {
            return Err("fingerprint is empty".into());
        }
        if text.len() > Self::MAX_LEN {
            return Err(format!(
                "fingerprint is longer than {} bytes",
                Self::MAX_LEN
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("fingerprint must be printable ASCII without spaces".into());
        }
        Ok(Fingerprint(text.to_owned()))
    }

    /// The fingerprint Alertmanager itself computes for a label set (Prometheus
    /// `model.LabelSet.Fingerprint`: FNV-1a 64 over sorted `name 0xff value 0xff`), so the
    /// same labels have the same identity whichever route (Alertmanager, Grafana, generic)
    /// brought them. `0xff` never occurs in UTF-8, so no two label sets share an input.
    pub fn of_labels(labels: &BTreeMap<String, String>) -> Fingerprint {
        const OFFSET: u64 = 0xcbf29ce484222325;
        const PRIME: u64 = 0x100000001b3;
        let mut hash = OFFSET;
        let mut add = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        for (name, value) in labels {
            add(name.as_bytes());
            add(&[0xff]);
            add(value.as_bytes());
            add(&[0xff]);
        }
        Fingerprint(format!("{hash:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Fingerprint::parse(&value)
    }
}

impl From<Fingerprint> for String {
    fn from(value: Fingerprint) -> String {
        value.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One alert as received, normalised. Labels and annotations are untrusted text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub source: Source,
    pub fingerprint: Fingerprint,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing, as the monitor says. `None` only for generic alerts
    /// that sent no time: the store then joins the open incident of the same fingerprint.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it resolved; `None` while firing (Alertmanager's `0001-01-01T00:00:00Z`).
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: Option<String>,
    /// The sending monitor's own external URL (Alertmanager `externalURL`), for links.
    pub external_url: Option<String>,
}

impl Alert {
    pub fn alertname(&self) -> Option<&str> {
        self.labels.get("alertname").map(String::as_str)
    }
}

#[cfg(test)]
impl Alert {
    /// A firing generic alert with `labels` and nothing else set: the base of unit tests'
    /// alerts (override fields with `Alert { starts_at: …, ..Alert::firing_generic(labels) }`).
    pub(crate) fn firing_generic(labels: BTreeMap<String, String>) -> Alert {
        Alert {
            source: Source::Generic,
            fingerprint: Fingerprint::of_labels(&labels),
            status: AlertStatus::Firing,
            labels,
            annotations: BTreeMap::new(),
            starts_at: None,
            ends_at: None,
            generator_url: None,
            external_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_alertmanager_for_the_captured_fixture() {
        // labels and fingerprint from ../shared/fixtures/alertmanager-0.25-firing.json
        let labels: BTreeMap<String, String> = [
            ("alertname", "DiskFull"),
            ("instance", "host1:9100"),
            ("job", "node"),
            ("severity", "critical"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(Fingerprint::of_labels(&labels).as_str(), "10fd2ebfb5d5241b");
    }

    #[test]
    fn fingerprints_of_label_sets_that_concatenate_alike_differ() {
        let of = |pairs: &[(&str, &str)]| {
            let labels: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            Fingerprint::of_labels(&labels)
        };
        // The same bytes split differently between names and values are other alerts.
        assert_ne!(of(&[("ab", "c")]), of(&[("a", "bc")]));
        assert_ne!(of(&[("a", "b"), ("c", "d")]), of(&[("a", "bcd")]));
        assert_ne!(of(&[("a", "")]), of(&[]));
        // Order of insertion does not matter: labels are a set.
        assert_eq!(of(&[("a", "1"), ("b", "2")]), of(&[("b", "2"), ("a", "1")]));
        assert_eq!(of(&[("a", "1")]).as_str().len(), 16);
    }

    #[test]
    fn fingerprint_rejects_empty_long_and_spaces() {
        assert!(Fingerprint::parse("").is_err());
        assert!(Fingerprint::parse(&"a".repeat(129)).is_err());
        assert!(Fingerprint::parse("a b").is_err());
        assert!(Fingerprint::parse("10fd2ebfb5d5241b").is_ok());
    }
}
