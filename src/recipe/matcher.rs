//! Alertmanager label matchers (`name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`) with
//! Alertmanager's parsing and matching semantics. Pure: strings in, booleans out; a matcher
//! never looks at anything but the one map it is given (the alert's labels, or its
//! annotations for a recipe's `match_annotations`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// The four Alertmanager match operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// Why a matcher string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error(
        "bad matcher {0:?}: expected label name, one of = != =~ !~, then a value (e.g. alertname=\"ServiceDown\")"
    )]
    Format(String),
    #[error("bad matcher {0:?}: the value contains an unescaped double quote")]
    UnescapedQuote(String),
    #[error("bad matcher {matcher:?}: invalid regex: {reason}")]
    Regex { matcher: String, reason: String },
}

/// One parsed matcher. Regex matchers hold the regex anchored as Alertmanager anchors it,
/// `^(?:re)$`, so `=~"web"` does not match `web1`.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

/// Alertmanager's classic matcher grammar (`pkg/labels/parse.go`), with label names limited
/// to Prometheus' `[a-zA-Z_][a-zA-Z0-9_]*`. `=~` is tried before `=` so the `~` is not taken
/// as part of the value.
static MATCHER_SYNTAX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|=|!=|!~)\s*((?s).*?)\s*$")
        .expect("static regex")
});

impl Matcher {
    /// Parses one matcher the way Alertmanager's `ParseMatcher` does: surrounding whitespace
    /// is ignored, the value may be double-quoted, and inside it `\"`, `\\` and `\n` are
    /// escapes (any other backslash is literal). An unescaped `"` inside the value is an error.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let captures = MATCHER_SYNTAX
            .captures(text)
            .ok_or_else(|| MatcherError::Format(text.to_owned()))?;
        let name = captures[1].to_owned();
        let op = match &captures[2] {
            "=" => MatchOp::Equal,
            "!=" => MatchOp::NotEqual,
            "=~" => MatchOp::Regex,
            _ => MatchOp::NotRegex,
        };
        let value = unescape_value(&captures[3])
            .ok_or_else(|| MatcherError::UnescapedQuote(text.to_owned()))?;
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|error| {
                    MatcherError::Regex {
                        matcher: text.to_owned(),
                        reason: first_line(&error.to_string()),
                    }
                })?)
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The unescaped value (for regex matchers, the regex without the anchors).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the labels satisfy this matcher. A missing label counts as the empty string,
    /// as in Alertmanager: `foo=""` matches an alert without `foo`, `foo!=""` requires it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => actual == self.value,
            (MatchOp::NotEqual, _) => actual != self.value,
            (MatchOp::Regex, Some(regex)) => regex.is_match(actual),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(actual),
            // Unreachable by construction: regex ops always carry their regex.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    /// Canonical form, `name="value"` with the value escaped as Alertmanager prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op.as_str())?;
        for c in self.value.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                other => write!(f, "{other}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Alertmanager's unescaping of the third token. `None` for an unescaped `"` anywhere but
/// as the closing quote of a quoted value (or a missing closing quote).
fn unescape_value(raw: &str) -> Option<String> {
    let (body, quoted) = match raw.strip_prefix('"') {
        Some(rest) => (rest, true),
        None => (raw, false),
    };
    let mut value = String::with_capacity(body.len());
    let mut closed = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if closed {
            // Anything after the closing quote means the quote was not the last character.
            return None;
        }
        match c {
            '\\' => match chars.next() {
                Some('n') => value.push('\n'),
                Some(escaped @ ('"' | '\\')) => value.push(escaped),
                Some(other) => {
                    // A spurious escape stays a literal backslash, as in Alertmanager.
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            },
            '"' if quoted && chars.peek().is_none() => closed = true,
            '"' => return None,
            other => value.push(other),
        }
    }
    if quoted && !closed {
        return None;
    }
    Some(value)
}

/// The regex crate's errors are multi-line drawings; a problem line needs one sentence.
fn first_line(text: &str) -> String {
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|line| line.starts_with("error:"));
    last.unwrap_or_else(|| text.lines().next().unwrap_or(text))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` is the canonical Display of the parsed matcher, or `Err(fragment)` where the
    /// fragment must occur in the error message.
    fn check(input: &str, expected: Result<&str, &str>) {
        match (Matcher::parse(input), expected) {
            (Ok(matcher), Ok(want)) => assert_eq!(matcher.to_string(), want, "input {input:?}"),
            (Err(error), Err(fragment)) => {
                assert!(
                    error.to_string().contains(fragment),
                    "input {input:?}: {error} lacks {fragment:?}"
                )
            }
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_alertmanager_syntax() {
        check(
            r#"alertname="ServiceDown""#,
            Ok(r#"alertname="ServiceDown""#),
        );
        check("alertname=ServiceDown", Ok(r#"alertname="ServiceDown""#));
        check(r#"  job != "node"  "#, Ok(r#"job!="node""#));
        check(
            r#"instance=~"web[0-9]+:9100""#,
            Ok(r#"instance=~"web[0-9]+:9100""#),
        );
        check(r#"env!~"dev|test""#, Ok(r#"env!~"dev|test""#));
        check("severity=~crit.*", Ok(r#"severity=~"crit.*""#));
        check(r#"foo="""#, Ok(r#"foo="""#));
        check("foo=", Ok(r#"foo="""#));
        check(r#"msg="say \"hi\"""#, Ok(r#"msg="say \"hi\"""#));
        check(r#"path="C:\\dir""#, Ok(r#"path="C:\\dir""#));
        check(r#"text="a\nb""#, Ok(r#"text="a\nb""#));
        // A spurious escape keeps its backslash, as Alertmanager does.
        check(r#"re=~"\d+""#, Ok(r#"re=~"\\d+""#));
        check(r#"a="x=y""#, Ok(r#"a="x=y""#));
        check(r#"_under_score1="v""#, Ok(r#"_under_score1="v""#));
    }

    #[test]
    fn rejects_bad_matchers() {
        check("alertname", Err("bad matcher"));
        check(r#"="x""#, Err("bad matcher"));
        check(r#"1abc="x""#, Err("bad matcher"));
        check(r#"a-b="x""#, Err("bad matcher"));
        check(r#"a:b="x""#, Err("bad matcher"));
        check(r#"a=="x""#, Err("unescaped double quote"));
        check(r#"a="x"y""#, Err("unescaped double quote"));
        check(r#"a="unterminated"#, Err("unescaped double quote"));
        check(r#"a=x""#, Err("unescaped double quote"));
        check(r#"a=~"(""#, Err("invalid regex"));
        check(r#"a!~"[z-a]""#, Err("invalid regex"));
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matches_with_alertmanager_semantics() {
        let alert = labels(&[
            ("alertname", "ServiceDown"),
            ("instance", "web1:9100"),
            ("empty", ""),
        ]);
        let table: &[(&str, bool)] = &[
            (r#"alertname="ServiceDown""#, true),
            (r#"alertname="servicedown""#, false),
            (r#"alertname!="ServiceDown""#, false),
            (r#"alertname!="Other""#, true),
            // Regexes are fully anchored: a substring is not a match.
            (r#"instance=~"web1""#, false),
            (r#"instance=~"web1:.*""#, true),
            (r#"instance=~"a|web1:9100""#, true),
            (r#"instance!~"web1""#, true),
            (r#"instance!~"web.*""#, false),
            // Alternation is grouped before anchoring: `^(?:a|b)$`, not `^a|b$`.
            (r#"alertname=~"Service|Down""#, false),
            // A missing label is the empty string.
            (r#"missing="""#, true),
            (r#"missing!="""#, false),
            (r#"missing=~".*""#, true),
            (r#"missing=~".+""#, false),
            (r#"missing!~".+""#, true),
            (r#"instance!="""#, true),
            (r#"empty="""#, true),
        ];
        for (input, expected) in table {
            let matcher = Matcher::parse(input).unwrap();
            assert_eq!(matcher.matches(&alert), *expected, "matcher {input}");
        }
    }
}
