//! Maintenance windows (`[[maintenance]]`): which hosts and recipes a window covers and
//! whether it is open at an instant, in the window's own explicit time zone. Pure: values
//! in, values out; it never reads a clock, the store or the host's time zone.

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// One `[[maintenance]]` table as written. Either `start`/`end` (RFC 3339 with an offset)
/// or a weekly schedule (`days`, `from`, `to`, `timezone`), never both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// Shown in `salve pause list` and journaled on each incident the window pauses.
    #[serde(default)]
    pub name: String,
    /// Inventory host names the window covers; `*` in a name matches any run of
    /// characters (`db-*`). Empty or absent: every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Recipe names, with the same `*` globs. Empty or absent: every recipe.
    #[serde(default)]
    pub recipes: Vec<String>,
    /// A one-off window: RFC 3339 with an explicit offset, e.g. `2026-12-05T02:00:00+01:00`.
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// A weekly window: the days it opens on (`mon` … `sun`).
    #[serde(default)]
    pub days: Vec<String>,
    /// Local opening time `HH:MM` in `timezone`. A `to` at or before `from` closes the
    /// next day (`from = "22:00"`, `to = "02:00"`).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    /// IANA zone name (`Europe/Berlin`, `UTC`): required, never the host's local time.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Paused incidents are journaled but not escalated.
    #[serde(default)]
    pub silent: bool,
}

/// A validated maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub name: String,
    pub hosts: Vec<String>,
    pub recipes: Vec<String>,
    pub schedule: Schedule,
    pub silent: bool,
}

/// When a window is open.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// From `start` (inclusive) to `end` (exclusive).
    Once {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// Each of `days`, from `from` to `to` on the wall clock of `zone` (DST included: a
    /// 02:00–04:00 window is shorter on the night the clocks go forward).
    Weekly {
        days: Vec<Weekday>,
        from: NaiveTime,
        to: NaiveTime,
        zone: Tz,
    },
}

/// A window as `salve pause list` and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowView {
    pub name: String,
    pub hosts: Vec<String>,
    pub recipes: Vec<String>,
    /// `2026-12-05T01:00:00Z – 2026-12-05T03:00:00Z` or `sat,sun 02:00–04:00 Europe/Berlin`.
    pub schedule: String,
    pub silent: bool,
}

impl MaintenanceSettings {
    /// The window, or each problem with the key it is about.
    pub fn window(&self) -> Result<MaintenanceWindow, Vec<(&'static str, String)>> {
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        if self.name.trim().is_empty() {
            problems.push(("name", "needs a name".into()));
        }
        for (key, patterns) in [("hosts", &self.hosts), ("recipes", &self.recipes)] {
            if patterns.iter().any(|p| p.trim().is_empty()) {
                problems.push((key, format!("{key} has an empty name")));
            }
        }
        let once = self.start.is_some() || self.end.is_some();
        let weekly = !self.days.is_empty()
            || self.from.is_some()
            || self.to.is_some()
            || self.timezone.is_some();
        let schedule = match (once, weekly) {
            (true, true) => {
                problems.push((
                    "start",
                    "give either start/end or days/from/to/timezone, not both".into(),
                ));
                None
            }
            (false, false) => {
                problems.push((
                    "name",
                    "needs start/end (RFC 3339) or a weekly days/from/to/timezone".into(),
                ));
                None
            }
            (true, false) => self.once(&mut problems),
            (false, true) => self.weekly(&mut problems),
        };
        match schedule {
            Some(schedule) if problems.is_empty() => Ok(MaintenanceWindow {
                name: self.name.clone(),
                hosts: self.hosts.clone(),
                recipes: self.recipes.clone(),
                schedule,
                silent: self.silent,
            }),
            _ => Err(problems),
        }
    }

    fn once(&self, problems: &mut Vec<(&'static str, String)>) -> Option<Schedule> {
        let mut instant = |key: &'static str, text: &Option<String>| match text {
            None => {
                problems.push((key, format!("{key} is missing")));
                None
            }
            Some(text) => match DateTime::parse_from_rfc3339(text.trim()) {
                Ok(time) => Some(time.with_timezone(&Utc)),
                Err(e) => {
                    problems.push((
                        key,
                        format!("{key} {text:?} is not RFC 3339 with an offset (2026-12-05T02:00:00+01:00): {e}"),
                    ));
                    None
                }
            },
        };
        let (start, end) = (instant("start", &self.start), instant("end", &self.end));
        let (start, end) = (start?, end?);
        if end <= start {
            problems.push(("end", "end must be after start".into()));
            return None;
        }
        Some(Schedule::Once { start, end })
    }

    fn weekly(&self, problems: &mut Vec<(&'static str, String)>) -> Option<Schedule> {
        let mut days = Vec::new();
        if self.days.is_empty() {
            problems.push(("days", "days is missing (e.g. [\"sat\", \"sun\"])".into()));
        }
        for day in &self.days {
            match parse_day(day) {
                Some(day) if !days.contains(&day) => days.push(day),
                Some(_) => {}
                None => problems.push((
                    "days",
                    format!("unknown day {day:?} (mon, tue, wed, thu, fri, sat, sun)"),
                )),
            }
        }
        let mut clock = |key: &'static str, text: &Option<String>| match text {
            None => {
                problems.push((key, format!("{key} is missing (HH:MM)")));
                None
            }
            Some(text) => match NaiveTime::parse_from_str(text.trim(), "%H:%M") {
                Ok(time) => Some(time),
                Err(_) => {
                    problems.push((key, format!("{key} {text:?} is not a time HH:MM")));
                    None
                }
            },
        };
        let (from, to) = (clock("from", &self.from), clock("to", &self.to));
        let zone = match &self.timezone {
            None => {
                problems.push((
                    "timezone",
                    "timezone is missing: name an IANA zone (Europe/Berlin, UTC); salve never assumes the host's".into(),
                ));
                None
            }
            Some(name) => match name.trim().parse::<Tz>() {
                Ok(zone) => Some(zone),
                Err(_) => {
                    problems.push((
                        "timezone",
                        format!("unknown time zone {name:?} (an IANA name like Europe/Berlin)"),
                    ));
                    None
                }
            },
        };
        let (from, to, zone) = (from?, to?, zone?);
        if from == to {
            problems.push((
                "to",
                "from and to are the same time: the window would be empty".into(),
            ));
            return None;
        }
        (!days.is_empty()).then_some(Schedule::Weekly {
            days,
            from,
            to,
            zone,
        })
    }
}

fn parse_day(text: &str) -> Option<Weekday> {
    let day = match text.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    };
    Some(day)
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

/// `name` matches `pattern`: exactly, or with each `*` standing for any run of characters.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

fn any_matches(patterns: &[String], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| name_matches(p, name))
}

impl MaintenanceWindow {
    /// The window is open at `now` and covers `recipe` on `host`.
    pub fn covers(&self, recipe: &str, host: &str, now: DateTime<Utc>) -> bool {
        any_matches(&self.hosts, host) && any_matches(&self.recipes, recipe) && self.is_open(now)
    }

    /// The window is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        match &self.schedule {
            Schedule::Once { start, end } => *start <= now && now < *end,
            Schedule::Weekly {
                days,
                from,
                to,
                zone,
            } => {
                let local = now.with_timezone(zone);
                let (today, time) = (local.weekday(), local.time());
                if from < to {
                    days.contains(&today) && *from <= time && time < *to
                } else {
                    // Past midnight: open from `from` on a listed day to `to` the next day.
                    let yesterday = (local - ChronoDuration::days(1)).weekday();
                    (days.contains(&today) && *from <= time)
                        || (days.contains(&yesterday) && time < *to)
                }
            }
        }
    }

    pub fn view(&self) -> WindowView {
        let schedule = match &self.schedule {
            Schedule::Once { start, end } => format!(
                "{} – {}",
                start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Schedule::Weekly {
                days,
                from,
                to,
                zone,
            } => format!(
                "{} {}–{} {}",
                days.iter()
                    .map(|d| day_name(*d))
                    .collect::<Vec<_>>()
                    .join(","),
                from.format("%H:%M"),
                to.format("%H:%M"),
                zone.name()
            ),
        };
        WindowView {
            name: self.name.clone(),
            hosts: self.hosts.clone(),
            recipes: self.recipes.clone(),
            schedule,
            silent: self.silent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn weekly(days: &[&str], from: &str, to: &str, zone: &str) -> MaintenanceWindow {
        MaintenanceSettings {
            name: "w".into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            from: Some(from.into()),
            to: Some(to.into()),
            timezone: Some(zone.into()),
            ..MaintenanceSettings::default()
        }
        .window()
        .unwrap()
    }

    fn check(window: &MaintenanceWindow, cases: &[(&str, bool)]) {
        for (instant, open) in cases {
            assert_eq!(window.is_open(at(instant)), *open, "{instant}");
        }
    }

    #[test]
    fn a_weekly_window_follows_its_zone_not_utc() {
        // Saturday 02:00–04:00 in Berlin is 01:00–03:00 UTC in winter (CET, +01:00).
        let window = weekly(&["sat"], "02:00", "04:00", "Europe/Berlin");
        check(
            &window,
            &[
                ("2026-12-05T00:59:59Z", false),
                ("2026-12-05T01:00:00Z", true),
                ("2026-12-05T02:59:59Z", true),
                ("2026-12-05T03:00:00Z", false),
                // The same UTC hours a day later are Sunday in Berlin.
                ("2026-12-06T01:30:00Z", false),
            ],
        );
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_opens() {
        let window = weekly(&["fri"], "22:00", "02:00", "UTC");
        check(
            &window,
            &[
                ("2026-12-04T21:59:00Z", false), // Friday before
                ("2026-12-04T22:00:00Z", true),  // Friday night
                ("2026-12-05T01:59:00Z", true),  // Saturday early
                ("2026-12-05T02:00:00Z", false),
                ("2026-12-05T22:30:00Z", false), // Saturday night: not listed
                ("2026-12-04T01:00:00Z", false), // Friday early: Thursday not listed
            ],
        );
    }

    #[test]
    fn the_local_day_decides_near_midnight_in_a_zone_ahead_of_utc() {
        // Monday 00:00–01:00 in Tokyo (+09:00) is Sunday 15:00–16:00 UTC.
        let window = weekly(&["mon"], "00:00", "01:00", "Asia/Tokyo");
        check(
            &window,
            &[
                ("2026-12-06T15:30:00Z", true),
                ("2026-12-07T00:30:00Z", false),
            ],
        );
    }

    #[test]
    fn summer_time_moves_the_window_in_utc() {
        // Berlin is +02:00 in July: Saturday 02:00–04:00 is 00:00–02:00 UTC.
        let window = weekly(&["sat"], "02:00", "04:00", "Europe/Berlin");
        check(
            &window,
            &[
                ("2026-07-04T00:00:00Z", true),
                ("2026-07-04T02:00:00Z", false),
            ],
        );
        // On 2026-03-29 (a Sunday) Berlin skips 02:00–03:00: the window is one hour long.
        let dst = weekly(&["sun"], "02:00", "04:00", "Europe/Berlin");
        check(
            &dst,
            &[
                ("2026-03-29T00:59:59Z", false), // 01:59:59 CET
                ("2026-03-29T01:00:00Z", true),  // 03:00 CEST
                ("2026-03-29T02:00:00Z", false), // 04:00 CEST
            ],
        );
    }

    #[test]
    fn a_one_off_window_is_open_from_start_to_end() {
        let window = MaintenanceSettings {
            name: "once".into(),
            start: Some("2026-12-05T02:00:00+01:00".into()),
            end: Some("2026-12-05T04:00:00+01:00".into()),
            ..MaintenanceSettings::default()
        }
        .window()
        .unwrap();
        check(
            &window,
            &[
                ("2026-12-05T00:59:59Z", false),
                ("2026-12-05T01:00:00Z", true),
                ("2026-12-05T03:00:00Z", false),
            ],
        );
    }

    #[test]
    fn bad_windows_name_each_problem_by_key() {
        let problems = |settings: MaintenanceSettings| -> Vec<&'static str> {
            settings
                .window()
                .unwrap_err()
                .into_iter()
                .map(|(key, _)| key)
                .collect()
        };
        let named = |settings: MaintenanceSettings| MaintenanceSettings {
            name: "n".into(),
            ..settings
        };
        assert_eq!(
            problems(named(MaintenanceSettings {
                days: vec!["sat".into()],
                from: Some("02:00".into()),
                to: Some("04:00".into()),
                ..MaintenanceSettings::default()
            })),
            ["timezone"]
        );
        assert_eq!(
            problems(named(MaintenanceSettings {
                days: vec!["caturday".into()],
                from: Some("2am".into()),
                to: Some("04:00".into()),
                timezone: Some("Mars/Olympus".into()),
                ..MaintenanceSettings::default()
            })),
            ["days", "from", "timezone"]
        );
        assert_eq!(
            problems(named(MaintenanceSettings {
                start: Some("2026-12-05 02:00".into()),
                end: Some("2026-12-05T04:00:00Z".into()),
                ..MaintenanceSettings::default()
            })),
            ["start"]
        );
        assert_eq!(
            problems(named(MaintenanceSettings {
                start: Some("2026-12-05T04:00:00Z".into()),
                end: Some("2026-12-05T02:00:00Z".into()),
                ..MaintenanceSettings::default()
            })),
            ["end"]
        );
        assert_eq!(problems(named(MaintenanceSettings::default())), ["name"]);
    }

    #[test]
    fn names_match_exactly_or_by_star() {
        for (pattern, name, matches) in [
            ("web1", "web1", true),
            ("web1", "web10", false),
            ("web*", "web10", true),
            ("*-db", "eu-db", true),
            ("*-db", "eu-db2", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("*", "", true),
        ] {
            assert_eq!(name_matches(pattern, name), matches, "{pattern} {name}");
        }
        let window = MaintenanceWindow {
            hosts: vec!["db*".into()],
            recipes: vec![],
            ..weekly(
                &["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "00:00",
                "23:59",
                "UTC",
            )
        };
        let noon = at("2026-12-05T12:00:00Z");
        assert!(window.covers("any-recipe", "db1", noon));
        assert!(!window.covers("any-recipe", "web1", noon));
    }
}
