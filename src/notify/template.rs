//! Page templates over an `Escalation`: one-line text (email subjects) and JSON bodies
//! (webhooks). Pure. A JSON body template never splices raw alert text: every `{{ … }}`
//! value is written as JSON (strings quoted and escaped), so a label value cannot add keys
//! or break the document, whatever it contains.

use minijinja::value::Object;
use minijinja::{Environment, ErrorKind, Output, State, UndefinedBehavior, Value};

use super::content::{Escalation, one_line, render_text};

/// Longest subject/title salve renders; the rest is cut (mail clients show far less).
const MAX_LINE_CHARS: usize = 250;

/// JSON text produced by `tojson`, written verbatim by the JSON formatter. Only the
/// filter can make one, so nothing else (not `safe`, not a macro) bypasses the encoding.
#[derive(Debug)]
struct JsonFragment(String);

impl Object for JsonFragment {}

fn to_json(value: &Value) -> Result<String, minijinja::Error> {
    if let Some(fragment) = value.downcast_object_ref::<JsonFragment>() {
        return Ok(fragment.0.clone());
    }
    if value.is_undefined() {
        return Ok("null".to_owned());
    }
    serde_json::to_string(value).map_err(|error| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot write value as JSON: {error}"),
        )
    })
}

/// `{{ value | tojson }}`: the value as JSON. Every `{{ … }}` in a body is JSON anyway;
/// the filter says so explicitly and is what Jinja users reach for.
fn tojson_filter(value: Value) -> Result<Value, minijinja::Error> {
    Ok(Value::from_object(JsonFragment(to_json(&value)?)))
}

fn write_out(out: &mut Output, text: &str) -> Result<(), minijinja::Error> {
    out.write_str(text)
        .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "cannot write template output"))
}

fn json_formatter(
    out: &mut Output,
    _state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    write_out(out, &to_json(value)?)
}

/// Missing values (`none`, undefined) write nothing in text, not the word "none".
fn text_formatter(
    out: &mut Output,
    _state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    match value.as_str() {
        Some(text) => write_out(out, text),
        None => write_out(out, &value.to_string()),
    }
}

fn base_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A missing label must not stop a page at 3 a.m.: `labels.team` on an alert without
    // it is empty (text) or null (JSON), and `target.name` with no target too.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_debug(false);
    env
}

/// The two environments, built once per channel set.
pub(crate) struct PageTemplates {
    text: Environment<'static>,
    json: Environment<'static>,
}

impl PageTemplates {
    pub(crate) fn new() -> PageTemplates {
        let mut text = base_environment();
        text.set_formatter(text_formatter);
        let mut json = base_environment();
        json.set_formatter(json_formatter);
        json.add_filter("tojson", tojson_filter);
        PageTemplates { text, json }
    }

    /// A syntax check (at config load), with minijinja's message.
    pub(crate) fn check_syntax(source: &str) -> Result<(), String> {
        Environment::new()
            .template_from_str(source)
            .map(|_| ())
            .map_err(|error| describe(&error))
    }

    /// One line of text: control characters escaped, cut to `MAX_LINE_CHARS`. Safe for a
    /// mail header: the result holds no CR or LF whatever the alert said.
    pub(crate) fn render_line(
        &self,
        source: &str,
        escalation: &Escalation,
    ) -> Result<String, String> {
        let rendered = self
            .text
            .render_str(source, context(escalation))
            .map_err(|error| describe(&error))?;
        let line = one_line(rendered.trim());
        Ok(truncate_chars(&line, MAX_LINE_CHARS))
    }

    /// A JSON document, parsed to prove it is one.
    pub(crate) fn render_json(
        &self,
        source: &str,
        escalation: &Escalation,
    ) -> Result<serde_json::Value, String> {
        self.render_json_context(source, context(escalation))
    }

    /// A JSON document over `fields` (a digest's), parsed to prove it is one.
    pub(crate) fn render_json_over(
        &self,
        source: &str,
        fields: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        self.render_json_context(source, Value::from(minijinja::value::Serde(fields)))
    }

    fn render_json_context(
        &self,
        source: &str,
        context: Value,
    ) -> Result<serde_json::Value, String> {
        let rendered = self
            .json
            .render_str(source, context)
            .map_err(|error| describe(&error))?;
        serde_json::from_str(&rendered).map_err(|error| {
            format!(
                "the body template did not produce JSON ({error}); write values as \
                 `{{{{ value }}}}` without quotes around them: every value is written as JSON"
            )
        })
    }
}

/// The template context: the escalation's fields plus `text`, the plain-text report.
fn context(escalation: &Escalation) -> Value {
    let mut fields = match serde_json::to_value(escalation) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    fields.insert(
        "text".to_owned(),
        serde_json::Value::String(render_text(escalation)),
    );
    Value::from(minijinja::value::Serde(fields))
}

fn describe(error: &minijinja::Error) -> String {
    match error.line() {
        Some(line) => format!(
            "template line {line}: {}",
            error
                .detail()
                .map_or_else(|| error.kind().to_string(), str::to_owned)
        ),
        None => error.to_string(),
    }
}

/// At most `max` characters, with `…` when cut (never splits a character).
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => {
            let cut = text[..end]
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(end, |(i, _)| i);
            format!("{}…", &text[..cut])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::content::sample;

    #[test]
    fn subject_has_no_line_breaks_and_missing_values_are_empty() {
        let templates = PageTemplates::new();
        let mut e = sample();
        e.alertname = Some("Disk\r\nBcc: x@example.com".into());
        e.target = None;
        let line = templates
            .render_line(
                "[salve] {{ reason }}: {{ alertname }} on {{ target.name }} {{ labels.missing }}",
                &e,
            )
            .unwrap();
        assert_eq!(
            line,
            "[salve] verify_failed: Disk\\r\\nBcc: x@example.com on"
        );
        let long = templates.render_line(&"x".repeat(400), &e).unwrap();
        assert_eq!(long.chars().count(), MAX_LINE_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn json_body_escapes_every_value_and_tojson_is_not_doubled() {
        let templates = PageTemplates::new();
        let mut e = sample();
        e.labels
            .insert("evil".into(), "\", \"routing_key\": \"x\n}".into());
        let body = templates
            .render_json(
                r#"{"a": {{ labels.evil }}, "b": {{ labels.evil | tojson }}, "c": {{ labels.evil | safe }},
                    "n": {{ incident_id }}, "missing": {{ labels.nope }}, "l": {{ labels }}}"#,
                &e,
            )
            .unwrap();
        assert_eq!(body["a"], "\", \"routing_key\": \"x\n}");
        assert_eq!(body["b"], body["a"]);
        assert_eq!(body["c"], body["a"]);
        assert_eq!(body["n"], 42);
        assert!(body["missing"].is_null());
        assert_eq!(body["l"]["service"], "nginx");
        assert!(body.get("routing_key").is_none());
    }

    #[test]
    fn quoted_values_in_a_body_are_reported_as_not_json() {
        let error = PageTemplates::new()
            .render_json(r#"{"title": "Disk on {{ target.name }}"}"#, &sample())
            .unwrap_err();
        assert!(error.contains("did not produce JSON"), "{error}");
        assert!(PageTemplates::check_syntax("{{ oops").is_err());
    }
}
