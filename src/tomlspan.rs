//! Line numbers for TOML problems: turn a byte offset or a key path into the 1-based line a
//! human should look at. Used by the recipe loader and the config check so that every
//! problem reads `file:line: message`. Pure text in, numbers out; it never reads files.

use toml_edit::{Document, Item, Value};

/// The 1-based line that byte `offset` of `text` falls on. Offsets past the end count as the
/// last line; an offset inside a multi-byte character is fine (only `\n` bytes are counted).
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// The 1-based line of the key (or, for array elements, the value) at `path` in the TOML
/// document `text`, e.g. `["verify", "checks", "1", "http"]`. Array indexes are decimal
/// segments and work for inline arrays and arrays of tables (`[[case]]`).
///
/// When the full path does not exist (a missing key is often the problem being reported),
/// the line of the deepest parent that does exist is returned. `None` when `text` is not
/// valid TOML, when `path` is empty, or when not even its first segment exists: callers
/// usually fall back to line 1 then.
pub fn line_of_path(text: &str, path: &[&str]) -> Option<usize> {
    let document = Document::parse(text).ok()?;
    let mut current = document.as_item();
    let mut best_line = None;
    for segment in path {
        let Some((offset, next)) = step(current, segment) else {
            break;
        };
        if let Some(offset) = offset {
            best_line = Some(line_of_offset(text, offset));
        }
        current = next;
    }
    best_line
}

/// One step down the document: the start offset to report for `segment` (the key when it
/// has one, else the value) and the item to continue from.
fn step<'a>(item: &'a Item, segment: &str) -> Option<(Option<usize>, &'a Item)> {
    if let Some(table) = item.as_table_like() {
        let (key, child) = table.get_key_value(segment)?;
        let offset = key.span().or_else(|| child.span()).map(|span| span.start);
        return Some((offset, child));
    }
    // Inline arrays and arrays of tables both index by position.
    let index: usize = segment.parse().ok()?;
    match item {
        Item::ArrayOfTables(_) | Item::Value(Value::Array(_)) => {
            let child = item.get(index)?;
            Some((child.span().map(|span| span.start), child))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"name = "x"
match = [
  'alertname="A"',
  'job="node"',
]

[params.service]
from = "labels.service"

[verify]
within = "60s"
checks = [
  { command = "true" },
  { http = "http://h/", status = 200 },
]

[[case]]
name = "first"

[[case]]
name = "second"
alert = { labels = { a = "b" } }
"#;

    #[test]
    fn offsets_map_to_lines() {
        assert_eq!(line_of_offset("", 0), 1);
        assert_eq!(line_of_offset("a\nb\nc", 0), 1);
        assert_eq!(line_of_offset("a\nb\nc", 2), 2);
        assert_eq!(line_of_offset("a\nb\nc", 4), 3);
        assert_eq!(line_of_offset("a\nb\nc", 999), 3);
        // Inside a multi-byte character: still counts only newlines before it.
        assert_eq!(line_of_offset("é\né", 4), 2);
    }

    fn check(path: &[&str], expected: Option<usize>) {
        assert_eq!(line_of_path(SAMPLE, path), expected, "path {path:?}");
    }

    #[test]
    fn paths_map_to_lines() {
        check(&["name"], Some(1));
        check(&["match"], Some(2));
        check(&["match", "1"], Some(4));
        check(&["params"], Some(7));
        check(&["params", "service"], Some(7));
        check(&["params", "service", "from"], Some(8));
        check(&["verify", "within"], Some(11));
        check(&["verify", "checks", "0"], Some(13));
        check(&["verify", "checks", "1", "http"], Some(14));
        check(&["verify", "checks", "1", "status"], Some(14));
        check(&["case", "0"], Some(17));
        check(&["case", "1", "name"], Some(21));
        check(&["case", "1", "alert", "labels", "a"], Some(22));
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_parent() {
        check(&["verify", "interval"], Some(10));
        check(&["verify", "checks", "7", "http"], Some(12));
        check(&["params", "service", "pattern"], Some(7));
        check(&["nope"], None);
        check(&[], None);
    }

    #[test]
    fn invalid_toml_has_no_lines() {
        assert_eq!(line_of_path("a = ", &["a"]), None);
    }
}
