//! Escalation routes (`[[escalation.routes]]`): the channels for an escalation its recipe
//! does not route itself (novel, refused, and any recipe without `escalate.to`), chosen by
//! Alertmanager matchers on the alert's labels — first match wins, `escalation.default`
//! last. Pure: labels in, channel names out; it never sends anything.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};

use super::matcher::{MatchOp, Matcher};

/// Label sets tried by [`Routes::unrouted_example`] at most: the search is a lint, bounded
/// so a config with many matchers still checks in milliseconds.
const MAX_EXAMPLES_TRIED: usize = 10_000;

/// One `[[escalation.routes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Alertmanager matchers on the alert's labels, all of which must match
    /// (`severity="critical"`, `team=~"db|infra"`); same syntax and semantics as a
    /// recipe's `match`.
    #[serde(rename = "match", deserialize_with = "de_matchers")]
    pub matchers: Vec<Matcher>,
    /// Channel names, in order.
    pub to: Vec<String>,
    /// `false`: pages of alerts this route matches get no follow-up ("resolved") when
    /// their incident is over. Default `true`.
    #[serde(default = "follow_up_by_default")]
    pub resolve: bool,
}

fn follow_up_by_default() -> bool {
    true
}

fn de_matchers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Matcher>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| Matcher::parse(text).map_err(serde::de::Error::custom))
        .collect()
}

impl Route {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|matcher| matcher.matches(labels))
    }
}

/// The routes in order, then the default.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
    default: Vec<String>,
}

impl Routes {
    pub fn new(routes: Vec<Route>, default: Vec<String>) -> Routes {
        Routes { routes, default }
    }

    /// The channels of the first route whose matchers all match `labels`, else the
    /// default's (possibly none).
    pub fn channels_for(&self, labels: &BTreeMap<String, String>) -> &[String] {
        self.routes
            .iter()
            .find(|route| route.matches(labels))
            .map_or(self.default.as_slice(), |route| route.to.as_slice())
    }

    /// Whether pages of an alert with `labels` are followed up when their incident is
    /// over: the first matching route's `resolve`, else yes (the default route). Decided
    /// by the alert's labels, so a recipe that names its own channels follows the route
    /// its alert matches.
    pub fn follows_up(&self, labels: &BTreeMap<String, String>) -> bool {
        self.routes
            .iter()
            .find(|route| route.matches(labels))
            .is_none_or(|route| route.resolve)
    }

    /// With no default: a label set that no route matches, so its escalation (a novel
    /// alert can carry any labels) would reach no channel. Tries every combination of the
    /// values the matchers name (plus absent and one value none names) for the label names
    /// they name; `None` when the default catches all or every combination tried is routed
    /// (a regex can leave a gap this does not find).
    pub fn unrouted_example(&self) -> Option<BTreeMap<String, String>> {
        if !self.default.is_empty() {
            return None;
        }
        let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for matcher in self.routes.iter().flat_map(|route| &route.matchers) {
            let named = values.entry(matcher.name()).or_default();
            named.insert(String::new());
            match matcher.op() {
                MatchOp::Equal | MatchOp::NotEqual => {
                    named.insert(matcher.value().to_owned());
                }
                // `db|infra` names `db` and `infra` when the alternatives are plain words.
                MatchOp::Regex | MatchOp::NotRegex => named.extend(
                    matcher
                        .value()
                        .split('|')
                        .filter(|word| {
                            word.chars()
                                .all(|c| c.is_alphanumeric() || "-_.:@/ ".contains(c))
                        })
                        .map(str::to_owned),
                ),
            }
        }
        for named in values.values_mut() {
            let unnamed = (0..)
                .map(|n| format!("other{n}"))
                .find(|candidate| !named.contains(candidate))
                .expect("a value no matcher names");
            named.insert(unnamed);
        }
        let names: Vec<&str> = values.keys().copied().collect();
        let choices: Vec<Vec<&String>> = values.values().map(|v| v.iter().collect()).collect();
        // Odometer over the choices: index[i] picks choices[i]'s value for names[i].
        let mut index = vec![0usize; names.len()];
        for _ in 0..MAX_EXAMPLES_TRIED {
            let labels: BTreeMap<String, String> = names
                .iter()
                .zip(&index)
                .zip(&choices)
                .filter(|((_, pick), choice)| !choice[**pick].is_empty())
                .map(|((name, pick), choice)| ((*name).to_owned(), choice[*pick].clone()))
                .collect();
            if !self.routes.iter().any(|route| route.matches(&labels)) {
                return Some(labels);
            }
            let mut position = 0;
            loop {
                if position == index.len() {
                    return None;
                }
                index[position] += 1;
                if index[position] < choices[position].len() {
                    break;
                }
                index[position] = 0;
                position += 1;
            }
        }
        None
    }
}

/// `{severity="warning", team="web"}` (absent labels left out), or `{}`.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(matchers: &[&str], to: &[&str]) -> Route {
        Route {
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            to: to.iter().map(|c| (*c).to_owned()).collect(),
            resolve: true,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matrix() -> Routes {
        Routes::new(
            vec![
                route(&[r#"severity="critical""#], &["pager"]),
                route(&[r#"team=~"db|infra""#], &["dba", "tickets"]),
                route(&[r#"severity="warning""#], &["tickets"]),
            ],
            vec!["oncall".to_owned()],
        )
    }

    #[test]
    fn follow_ups_follow_the_first_matching_route() {
        let mut quiet = route(&[r#"severity="warning""#], &["tickets"]);
        quiet.resolve = false;
        let routes = Routes::new(
            vec![route(&[r#"team="db""#], &["dba"]), quiet],
            vec!["oncall".to_owned()],
        );
        assert!(!routes.follows_up(&labels(&[("severity", "warning")])));
        // The first match wins, as for channels.
        assert!(routes.follows_up(&labels(&[("severity", "warning"), ("team", "db")])));
        // The default follows up.
        assert!(routes.follows_up(&labels(&[("severity", "critical")])));
    }

    #[test]
    fn first_matching_route_wins_and_default_is_last() {
        let routes = matrix();
        let check = |pairs: &[(&str, &str)], expected: &[&str]| {
            assert_eq!(routes.channels_for(&labels(pairs)), expected, "{pairs:?}");
        };
        check(&[("severity", "critical"), ("team", "db")], &["pager"]);
        check(
            &[("severity", "warning"), ("team", "infra")],
            &["dba", "tickets"],
        );
        check(&[("severity", "warning"), ("team", "web")], &["tickets"]);
        check(&[("severity", "info")], &["oncall"]);
        check(&[], &["oncall"]);
        // Anchored as Alertmanager anchors regexes: `db` is not `dbx`.
        check(&[("team", "dbx")], &["oncall"]);
    }

    #[test]
    fn no_default_and_no_route_gives_no_channel() {
        let routes = Routes::new(vec![route(&[r#"severity="critical""#], &["pager"])], vec![]);
        assert!(
            routes
                .channels_for(&labels(&[("severity", "warning")]))
                .is_empty()
        );
    }

    #[test]
    fn an_unrouted_label_set_is_found_only_without_a_default() {
        assert_eq!(matrix().unrouted_example(), None);
        let no_default = Routes::new(
            vec![
                route(&[r#"severity="critical""#], &["pager"]),
                route(&[r#"team=~"db|infra""#], &["tickets"]),
            ],
            vec![],
        );
        let example = no_default.unrouted_example().expect("a gap");
        assert!(no_default.channels_for(&example).is_empty(), "{example:?}");
        assert_eq!(Routes::default().unrouted_example(), Some(BTreeMap::new()));
        assert_eq!(labels_text(&BTreeMap::new()), "{}");
        assert_eq!(
            labels_text(&labels(&[("severity", "warning")])),
            r#"{severity="warning"}"#
        );
    }

    #[test]
    fn routes_that_cover_every_label_set_need_no_default() {
        let covered = Routes::new(
            vec![
                route(&[r#"severity="critical""#], &["pager"]),
                route(&[r#"severity!="critical""#], &["tickets"]),
            ],
            vec![],
        );
        assert_eq!(covered.unrouted_example(), None);
        let regex_cover = Routes::new(
            vec![
                route(&[r#"team=~"db|infra""#], &["pager"]),
                route(&[r#"team!~"db|infra""#], &["tickets"]),
            ],
            vec![],
        );
        assert_eq!(regex_cover.unrouted_example(), None);
    }
}
