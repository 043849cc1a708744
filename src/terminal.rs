//! Untrusted text made safe to show a human on a terminal (`salve history`, `gaps`,
//! `simulate`, the human log format): every control character (C0, DEL, C1) and every
//! Unicode control that reorders or splits lines (bidi overrides and isolates, line and
//! paragraph separators) is written as a visible escape (`\n`, `\x1b`, `\u{202e}`), so
//! an alert cannot clear the screen, plant a link, ring the bell or forge a line. Tabs are
//! kept; nothing else is dropped or reordered, so the text stays recognisable. JSON output
//! ([`write_json`]) stays JSON: the same characters become `\uXXXX` escapes, which serde
//! does only for C0 controls.

use std::borrow::Cow;
use std::fmt::Write;
use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

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

/// `value` as pretty JSON into `out`, with every character of [`needs_escape`] (beyond
/// the C0 controls serde escapes: DEL, C1, bidi and line separators) written as `\uXXXX`:
/// the same JSON value, safe to print on a terminal.
pub fn write_json<W: io::Write, T: Serialize + ?Sized>(
    out: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer =
        serde_json::Serializer::with_formatter(out, TerminalJson(PrettyFormatter::new()));
    value.serialize(&mut serializer)
}

/// serde_json's pretty formatter, escaping [`needs_escape`] characters inside strings.
struct TerminalJson<'a>(PrettyFormatter<'a>);

impl Formatter for TerminalJson<'_> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((index, ch)) = rest.char_indices().find(|&(_, ch)| needs_escape(ch)) {
            writer.write_all(&rest.as_bytes()[..index])?;
            // Every character needs_escape accepts is in the Basic Multilingual Plane.
            write!(writer, "\\u{:04x}", u32::from(ch))?;
            rest = &rest[index + ch.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
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
    fn json_for_a_terminal_is_the_same_json_without_raw_controls() {
        let value = serde_json::json!({
            "label": "a\u{1b}[2J\r\n\u{7f}\u{9b}31m\u{202e}txt ünïcode 🔥",
            "list": [1, "x\u{2028}y"],
        });
        let mut out = Vec::new();
        write_json(&mut out, &value).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.chars().any(|c| needs_escape(c) && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("\\u007f\\u009b31m\\u202etxt ünïcode 🔥"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        // Pretty, like serde_json's own.
        assert_eq!(text, {
            let mut plain = serde_json::to_string_pretty(&value).unwrap();
            for (raw, escaped) in [
                ("\u{7f}", "\\u007f"),
                ("\u{9b}", "\\u009b"),
                ("\u{202e}", "\\u202e"),
                ("\u{2028}", "\\u2028"),
            ] {
                plain = plain.replace(raw, escaped);
            }
            plain
        });
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
