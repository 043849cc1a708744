//! Untrusted text made safe to show a human on a terminal (`salve history`, `gaps`,
//! `simulate`, the human log format): every control character (C0, DEL, C1) and every
//! Unicode control that reorders or splits lines (bidi overrides and isolates, line and
//! paragraph separators) is written as a visible escape (`\n`, `\x1b`, `\u{202e}`), so
//! an alert cannot clear the screen, plant a link, ring the bell or forge a line. Tabs are
//! kept; nothing else is dropped or reordered, so the text stays recognisable. JSON output
//! never goes through here (serde escapes it).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `ch` must not reach a terminal as itself.
pub fn needs_escape(ch: char) -> bool {
    (ch.is_control() && ch != '\t')
        || matches!(
            ch,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every character of [`needs_escape`] escaped; borrowed when there is none.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            ch if !needs_escape(ch) => escaped.push(ch),
            ch if u32::from(ch) < 0x100 => {
                let _ = write!(escaped, "\\x{:02x}", u32::from(ch));
            }
            ch => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(ch));
            }
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_still_recognisable() {
        let cases = [
            ("Disk\u{1b}[2JFull", "Disk\\x1b[2JFull"),
            (
                "\u{1b}]8;;http://evil.test/\u{7}click\u{1b}]8;;\u{7}",
                "\\x1b]8;;http://evil.test/\\x07click\\x1b]8;;\\x07",
            ),
            (
                "ok\r\n2026-12-01 INFO forged line",
                "ok\\r\\n2026-12-01 INFO forged line",
            ),
            (
                "bell\u{7} back\u{8}space del\u{7f}",
                "bell\\x07 back\\x08space del\\x7f",
            ),
            ("c1 csi \u{9b}31m", "c1 csi \\x9b31m"),
            ("\u{202e}gnp.exe", "\\u{202e}gnp.exe"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("nul\u{0}", "nul\\x00"),
        ];
        for (hostile, shown) in cases {
            assert_eq!(escape_controls(hostile), shown, "{hostile:?}");
            assert!(!escape_controls(hostile).chars().any(needs_escape));
        }
    }

    #[test]
    fn ordinary_text_is_untouched_and_not_copied() {
        for text in [
            "nginx",
            "naïve — 日本語 🔥",
            "a\tb",
            "quotes ' \" and \\x1b as text",
            "",
        ] {
            assert!(matches!(escape_controls(text), Cow::Borrowed(t) if t == text));
        }
    }
}
