//! Recipe templating with minijinja: the target template, command templates (remediate,
//! command checks, attach) and HTTP check URLs. Every value a command template emits is
//! exactly one single-quoted shell word; this module never splices raw text into a command.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::Ipv6Addr;
use std::sync::{Arc, LazyLock};

use minijinja::value::{Object, ObjectRepr, Value};
use minijinja::{Environment, ErrorKind, Output, State, UndefinedBehavior};
use regex::Regex;

use super::shell::shell_quote;

/// Percent-encodes every byte except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// so an emitted value can never add a `/`, `?`, `#`, `@` or `:` to a URL's structure.
pub fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// The `host` filter: strips a `:port` suffix from an Alertmanager `instance` label.
/// `web1:9100` → `web1`, `[::1]:9100` → `::1`, `[::1]` → `::1`; a bare IPv6 address (more
/// than one colon, no brackets) and a name without a port are returned unchanged.
pub fn host_of(instance: &str) -> String {
    if let Some(rest) = instance.strip_prefix('[')
        && let Some((inside, after)) = rest.split_once(']')
        && (after.is_empty() || after.starts_with(':'))
    {
        return inside.to_owned();
    }
    match instance.split_once(':') {
        Some((host, port)) if !port.contains(':') => host.to_owned(),
        _ => instance.to_owned(),
    }
}

/// `host` as a minijinja filter; a missing label gets a clearer error than "not a string".
fn host_filter(value: &Value) -> Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            ErrorKind::UndefinedError,
            "`host` got a missing value (is the label set on the alert?)",
        ));
    }
    match value.as_str() {
        Some(text) => Ok(host_of(text)),
        None => Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "`host` expects a string",
        )),
    }
}

/// The three kinds of recipe templates; each has its own variables and output rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// `target`: sees `labels` and `annotations`; its output is only ever compared against
    /// the inventory, so it is rendered as plain text.
    Target,
    /// `remediate.run`, command checks, `escalate.attach`: see params, `target`,
    /// `target_name`; every emitted value becomes one single-quoted shell word.
    Command,
    /// HTTP check URLs: same variables as commands; every emitted value is percent-encoded,
    /// except `target`/`target_name` (inventory data, trusted), which are emitted as hosts.
    Url,
    /// `[breaker] key`: params, `target`, `target_name`; plain text that is only ever
    /// compared and shown (escaped), never part of a command.
    BreakerKey,
}

impl TemplateKind {
    /// The names a template of this kind may use, given the recipe's declared params.
    fn allowed_names(self, params: &BTreeSet<String>) -> BTreeSet<String> {
        match self {
            TemplateKind::Target => ["labels", "annotations"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            TemplateKind::Command | TemplateKind::Url => params
                .iter()
                .cloned()
                .chain(["target", "target_name", "host_labels"].map(str::to_owned))
                .collect(),
            TemplateKind::BreakerKey => params
                .iter()
                .cloned()
                .chain(["target", "target_name"].map(str::to_owned))
                .collect(),
        }
    }
}

/// Why rendering a template failed (the planner refuses the alert then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(String);

/// Validated params plus the resolved inventory host: everything a command or URL template
/// may see. No labels or annotations: raw alert text has no way into a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    pub params: BTreeMap<String, String>,
    /// The host's address (`Host::address`).
    pub target: String,
    /// The host's inventory name.
    pub target_name: String,
    /// The host's inventory labels (`{{ host_labels.NAME }}`): config, read-only, and
    /// emitted like any value (one quoted word; percent-encoded in URLs).
    pub host_labels: BTreeMap<String, crate::inventory::LabelValue>,
}

impl CommandContext {
    /// The template variables: params, `target`, `target_name`, `host_labels` (a text label
    /// is a string, a list label a sequence). `target`/`target_name` are passed in so that
    /// URLs can mark them as hosts.
    fn values(&self, target: Value, target_name: Value) -> Value {
        let mut values: BTreeMap<String, Value> = self
            .params
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(value.clone())))
            .collect();
        values.insert("target".to_owned(), target);
        values.insert("target_name".to_owned(), target_name);
        let labels: BTreeMap<String, Value> = self
            .host_labels
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    crate::inventory::LabelValue::Text(text) => Value::from(text.clone()),
                    crate::inventory::LabelValue::List(items) => Value::from(items.clone()),
                };
                (name.clone(), value)
            })
            .collect();
        values.insert("host_labels".to_owned(), Value::from(labels));
        Value::from(values)
    }
}

/// The target value of a URL context: inventory data, so emitted without encoding. An IPv6
/// address is bracketed so `http://{{ target }}:8080/` stays a valid URL.
#[derive(Debug)]
struct TrustedHost(String);

impl Object for TrustedHost {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value every variable has in a load-time probe render.
const PROBE_VALUE: &str = "probe";

/// A map that has every key (with [`PROBE_VALUE`]): stands in for labels and annotations
/// in the probe render of a target template.
#[derive(Debug)]
struct AnyKey;

impl Object for AnyKey {
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from(PROBE_VALUE))
    }
}

/// The minijinja environments for the three template kinds, built once per recipe set.
/// They differ only in their formatter (the function that writes each `{{ … }}` value);
/// raw template text is recipe text, trusted, and written as is.
pub struct RecipeTemplates {
    target: Environment<'static>,
    command: Environment<'static>,
    url: Environment<'static>,
    breaker_key: Environment<'static>,
}

impl fmt::Debug for RecipeTemplates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecipeTemplates")
    }
}

impl Default for RecipeTemplates {
    fn default() -> Self {
        RecipeTemplates::new()
    }
}

fn base_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(false);
    env
}

fn value_text(value: &Value) -> Cow<'_, str> {
    match value.as_str() {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(value.to_string()),
    }
}

fn write_out(out: &mut Output, text: &str) -> Result<(), minijinja::Error> {
    out.write_str(text)
        .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "cannot write template output"))
}

/// The command formatter. It ignores `|safe` and auto-escape on purpose: whatever the
/// expression, its value leaves as exactly one quoted word.
fn shell_word_formatter(
    out: &mut Output,
    _state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    let quoted = shell_quote(&value_text(value))
        .map_err(|error| minijinja::Error::new(ErrorKind::InvalidOperation, error.to_string()))?;
    write_out(out, &quoted)
}

fn url_formatter(
    out: &mut Output,
    _state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if let Some(host) = value.downcast_object_ref::<TrustedHost>() {
        if host.0.parse::<Ipv6Addr>().is_ok() {
            return write_out(out, &format!("[{}]", host.0));
        }
        return write_out(out, &host.0);
    }
    write_out(out, &percent_encode(&value_text(value)))
}

/// Template tags that reach beyond the one template (other templates, macros from them):
/// a recipe template is self-contained, so these are refused at load time.
const FORBIDDEN_TAGS: [&str; 4] = ["include", "extends", "import", "from"];

impl RecipeTemplates {
    pub fn new() -> RecipeTemplates {
        let mut target = base_environment();
        target.add_filter("host", host_filter);
        let mut command = base_environment();
        command.set_formatter(shell_word_formatter);
        let mut url = base_environment();
        url.set_formatter(url_formatter);
        RecipeTemplates {
            target,
            command,
            url,
            breaker_key: base_environment(),
        }
    }

    fn environment(&self, kind: TemplateKind) -> &Environment<'static> {
        match kind {
            TemplateKind::Target => &self.target,
            TemplateKind::Command => &self.command,
            TemplateKind::Url => &self.url,
            TemplateKind::BreakerKey => &self.breaker_key,
        }
    }

    /// Load-time validation of one template: it must parse, name only the variables its
    /// kind allows (params must be declared), use no include/import/extends, and (commands)
    /// put no `{{ … }}` inside shell quotes. Returns every problem found, as messages.
    pub fn check(
        &self,
        kind: TemplateKind,
        source: &str,
        params: &BTreeSet<String>,
    ) -> Vec<String> {
        let template = match self.environment(kind).template_from_str(source) {
            Ok(template) => template,
            Err(error) => return vec![format!("template does not parse: {}", describe(&error))],
        };
        let mut problems = Vec::new();
        let allowed = kind.allowed_names(params);
        let mut used: Vec<String> = template.undeclared_variables(false).into_iter().collect();
        used.sort();
        for name in used.iter().filter(|name| !allowed.contains(*name)) {
            let known = allowed.iter().cloned().collect::<Vec<_>>().join(", ");
            if kind != TemplateKind::Target && (name == "labels" || name == "annotations") {
                problems.push(format!(
                    "template uses `{name}`: raw alert text may not reach a command, URL or breaker key; \
                     declare a [params.NAME] with a pattern and use that (known: {known})"
                ));
            } else {
                problems.push(format!(
                    "template uses unknown variable `{name}` (known: {known})"
                ));
            }
        }
        let scan = scan_template(source);
        for tag in scan
            .tags
            .iter()
            .filter(|tag| FORBIDDEN_TAGS.contains(&tag.as_str()))
        {
            problems.push(format!("template tag `{tag}` is not allowed in recipes"));
        }
        if problems.is_empty()
            && let Some(message) = self.probe(kind, source, params)
        {
            problems.push(message);
        }
        if kind == TemplateKind::Command && scan.placeholder_in_quotes {
            problems.push(
                "a `{{ … }}` is inside shell quotes or after a backslash; salve already emits each \
                 value as one single-quoted word, so remove the surrounding quotes"
                    .to_owned(),
            );
        }
        if kind == TemplateKind::Command {
            problems.extend(super::nested::nested_script_problems(source));
        }
        problems
    }

    /// Renders the template once with probe values, because minijinja looks filters, tests
    /// and functions up only when rendering: a typo like `| hots` must fail at load time, not
    /// on the first real alert. Only "unknown …" errors count; others depend on real data.
    /// Branches the probe does not take are not checked.
    fn probe(&self, kind: TemplateKind, source: &str, params: &BTreeSet<String>) -> Option<String> {
        let context = match kind {
            TemplateKind::Target => {
                let any = Value::from_object(AnyKey);
                Value::from(
                    [
                        ("labels".to_owned(), any.clone()),
                        ("annotations".to_owned(), any),
                    ]
                    .into_iter()
                    .collect::<BTreeMap<String, Value>>(),
                )
            }
            TemplateKind::Command | TemplateKind::Url | TemplateKind::BreakerKey => {
                let mut values: BTreeMap<String, Value> = params
                    .iter()
                    .map(|name| (name.clone(), Value::from(PROBE_VALUE)))
                    .collect();
                values.insert("target".to_owned(), Value::from(PROBE_VALUE));
                values.insert("target_name".to_owned(), Value::from(PROBE_VALUE));
                values.insert("host_labels".to_owned(), Value::from_object(AnyKey));
                Value::from(values)
            }
        };
        let env = self.environment(kind);
        let result = env
            .template_from_str(source)
            .and_then(|template| template.render(context));
        match result {
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::UnknownFilter
                        | ErrorKind::UnknownTest
                        | ErrorKind::UnknownFunction
                        | ErrorKind::UnknownMethod
                ) =>
            {
                // The detail alone ("filter hots is unknown"): with the kind in front the
                // same fact was said twice ("unknown filter: filter hots is unknown").
                let said = error
                    .detail()
                    .map_or_else(|| error.kind().to_string(), str::to_owned);
                Some(format!("template does not render: {said}"))
            }
            _ => None,
        }
    }

    /// Renders the target template against the alert's labels and annotations.
    pub fn render_target(
        &self,
        source: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<String, RenderError> {
        let context: BTreeMap<String, Value> = [
            ("labels".to_owned(), Value::from(labels.clone())),
            ("annotations".to_owned(), Value::from(annotations.clone())),
        ]
        .into_iter()
        .collect();
        self.render(TemplateKind::Target, source, Value::from(context))
    }

    /// Renders a command template: every emitted value is one shell word.
    pub fn render_command(
        &self,
        source: &str,
        context: &CommandContext,
    ) -> Result<String, RenderError> {
        self.render_with_target(TemplateKind::Command, source, context)
    }

    /// Renders a `[breaker] key` as plain text (params as validated, the target's address
    /// and inventory name).
    pub fn render_breaker_key(
        &self,
        source: &str,
        context: &CommandContext,
    ) -> Result<String, RenderError> {
        self.render_with_target(TemplateKind::BreakerKey, source, context)
    }

    /// Renders `source` as `kind` over the params and the resolved target.
    fn render_with_target(
        &self,
        kind: TemplateKind,
        source: &str,
        context: &CommandContext,
    ) -> Result<String, RenderError> {
        let values = context.values(
            Value::from(context.target.clone()),
            Value::from(context.target_name.clone()),
        );
        self.render(kind, source, values)
    }

    /// Renders an HTTP check URL: params percent-encoded, the target emitted as a host.
    pub fn render_url(
        &self,
        source: &str,
        context: &CommandContext,
    ) -> Result<String, RenderError> {
        let values = context.values(
            Value::from_object(TrustedHost(context.target.clone())),
            Value::from_object(TrustedHost(context.target_name.clone())),
        );
        self.render(TemplateKind::Url, source, values)
    }

    fn render(
        &self,
        kind: TemplateKind,
        source: &str,
        context: Value,
    ) -> Result<String, RenderError> {
        let env = self.environment(kind);
        let template = env
            .template_from_str(source)
            .map_err(|error| RenderError(describe(&error)))?;
        template
            .render(context)
            .map_err(|error| RenderError(describe(&error)))
    }
}

/// A minijinja error as one line, without its `(in <string>:1)` suffix.
fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

/// What a static scan of a template's source found.
#[derive(Debug, Default, PartialEq, Eq)]
struct TemplateScan {
    /// The first word of every `{% … %}` tag.
    tags: Vec<String>,
    /// Some `{{ … }}` sits where the shell is inside quotes or right after a backslash, so
    /// the quoted word salve emits would not be one word (or would be re-interpreted).
    placeholder_in_quotes: bool,
}

static RAW_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\{%-?\s*raw\s*[-+]?%\}").expect("static regex"));
static ENDRAW_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{%-?\s*endraw\s*[-+]?%\}").expect("static regex"));

/// Walks the template's [`pieces`], tracking POSIX shell quoting across the literal text
/// and checking the shell state at every `{{`. Template tags and comments do not change
/// it (string literals inside them may contain `}}`); `{% raw %}` content is literal text.
/// All branches of `{% if %}` are scanned in source order, which is stricter than any
/// single rendering.
fn scan_template(source: &str) -> TemplateScan {
    #[derive(PartialEq)]
    enum Shell {
        Unquoted,
        Single,
        Double,
    }
    let mut scan = TemplateScan::default();
    let mut shell = Shell::Unquoted;
    let mut escaped = false;
    for piece in pieces(source) {
        match piece {
            Piece::Text(text) => {
                for c in text.chars() {
                    if escaped {
                        escaped = false;
                        continue;
                    }
                    match (&shell, c) {
                        (Shell::Unquoted, '\'') => shell = Shell::Single,
                        (Shell::Unquoted, '"') => shell = Shell::Double,
                        (Shell::Unquoted | Shell::Double, '\\') => escaped = true,
                        (Shell::Single, '\'') | (Shell::Double, '"') => shell = Shell::Unquoted,
                        _ => {}
                    }
                }
            }
            // A placeholder is a complete word piece; it does not change the shell state.
            Piece::Expr(_) => {
                if shell != Shell::Unquoted || escaped {
                    scan.placeholder_in_quotes = true;
                }
            }
            Piece::Tag(inner) => scan.tags.push(
                inner
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect(),
            ),
        }
    }
    scan
}

/// One piece of a template's source: literal text, a `{{ … }}` (its expression, trimmed),
/// or a `{% … %}` tag (`{# … #}` comments are dropped; `{% raw %}` bodies are text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    Expr(String),
    Tag(String),
}

/// The template source cut into [`Piece`]s, in order.
pub(super) fn pieces(source: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < source.len() {
        let rest = &source[i..];
        if let Some(m) = RAW_TAG.find(rest) {
            let body_start = i + m.end();
            let (body_end, after) = match ENDRAW_TAG.find(&source[body_start..]) {
                Some(end) => (body_start + end.start(), body_start + end.end()),
                None => (source.len(), source.len()),
            };
            text.push_str(&source[body_start..body_end]);
            i = after;
            continue;
        }
        if rest.starts_with("{{") || rest.starts_with("{%") || rest.starts_with("{#") {
            let close = match &rest[1..2] {
                "{" => "}}",
                "%" => "%}",
                _ => "#}",
            };
            let end = find_tag_end(rest, close);
            let inner = rest[2..end]
                .trim_start_matches(['-', '+'])
                .trim_end_matches(['-', '+'])
                .trim()
                .to_owned();
            if close != "#}" {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(if close == "}}" {
                    Piece::Expr(inner)
                } else {
                    Piece::Tag(inner)
                });
            }
            i += (end + close.len()).min(rest.len());
            continue;
        }
        let c = rest.chars().next().unwrap_or('\0');
        text.push(c);
        i += c.len_utf8();
    }
    pieces.push(Piece::Text(text));
    pieces.retain(|piece| !matches!(piece, Piece::Text(text) if text.is_empty()));
    pieces
}

/// The template's literal text with each `{{ … }}` replaced by
/// [`super::nested::PLACEHOLDER`] and tags dropped: what the shell will see, for analysis.
pub(super) fn template_text_with_placeholders(source: &str) -> String {
    pieces(source)
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(text) => text,
            Piece::Expr(_) => super::nested::PLACEHOLDER.to_string(),
            Piece::Tag(_) => String::new(),
        })
        .collect()
}

/// Where a piece of an HTTP check URL's authority sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlPart {
    UserInfo,
    Host,
    Port,
}

/// The pieces of a URL template's authority (between `://` and the first literal `/`, `?`
/// or `#`), each with its part. Values are percent-encoded when rendered, so only literal
/// text can add `@`, `:` or `/`: the structure is fixed by the literal text. `None` when
/// the template does not start with a literal `scheme://`.
pub(super) fn url_authority(source: &str) -> Option<Vec<(UrlPart, Piece)>> {
    let pieces = pieces(source);
    let Some(Piece::Text(first)) = pieces.first() else {
        return None;
    };
    let start = first.find("://")? + 3;
    let mut authority: Vec<Piece> = Vec::new();
    let mut first_rest = Some(first[start..].to_owned());
    let mut iter = pieces.iter().skip(1);
    loop {
        let piece = match first_rest.take() {
            Some(text) => Piece::Text(text),
            None => match iter.next() {
                Some(piece) => piece.clone(),
                None => break,
            },
        };
        if let Piece::Text(text) = &piece
            && let Some(end) = text.find(['/', '?', '#'])
        {
            authority.push(Piece::Text(text[..end].to_owned()));
            break;
        }
        authority.push(piece);
    }
    // Cut the literal text at the last `@` (userinfo) and the port's `:` (outside `[…]`).
    let mut flat: Vec<(UrlPart, Piece)> = Vec::new();
    let last_at = authority
        .iter()
        .enumerate()
        .filter_map(|(index, piece)| match piece {
            Piece::Text(text) => text.rfind('@').map(|at| (index, at)),
            _ => None,
        })
        .next_back();
    let mut part = if last_at.is_some() {
        UrlPart::UserInfo
    } else {
        UrlPart::Host
    };
    let mut in_brackets = false;
    for (index, piece) in authority.into_iter().enumerate() {
        let Piece::Text(text) = piece else {
            flat.push((part, piece));
            continue;
        };
        let mut current = String::new();
        for (offset, c) in text.char_indices() {
            if part == UrlPart::UserInfo && last_at == Some((index, offset)) {
                flat.push((part, Piece::Text(std::mem::take(&mut current))));
                part = UrlPart::Host;
                continue;
            }
            match c {
                '[' if part == UrlPart::Host => in_brackets = true,
                ']' if part == UrlPart::Host => in_brackets = false,
                ':' if part == UrlPart::Host && !in_brackets => {
                    flat.push((part, Piece::Text(std::mem::take(&mut current))));
                    part = UrlPart::Port;
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        flat.push((part, Piece::Text(current)));
    }
    flat.retain(|(_, piece)| !matches!(piece, Piece::Text(text) if text.is_empty()));
    Some(flat)
}

/// The port text of a rendered URL (`http://h:8080/x` → `8080`), when it names one.
pub fn url_port(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    let port = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.1.strip_prefix(':')?,
        None => host_port.rsplit_once(':')?.1,
    };
    (!port.is_empty()).then_some(port)
}

/// Offset in `tag` (which starts with the opening delimiter) of its closing delimiter,
/// skipping quoted string literals; `tag.len()` if unterminated (minijinja rejects that).
fn find_tag_end(tag: &str, close: &str) -> usize {
    let bytes = tag.as_bytes();
    let mut i = 2;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        match quote {
            Some(_) if bytes[i] == b'\\' => i += 1,
            Some(q) if bytes[i] == q => quote = None,
            Some(_) => {}
            None if close != "#}" && (bytes[i] == b'"' || bytes[i] == b'\'') => {
                quote = Some(bytes[i])
            }
            None if bytes[i..].starts_with(close.as_bytes()) => return i,
            None => {}
        }
        i += 1;
    }
    tag.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::shell::{ShellQuoteError, is_simple_command};

    fn check_quote(input: &str, expected: &str) {
        assert_eq!(shell_quote(input).unwrap(), expected, "input {input:?}");
    }

    #[test]
    fn shell_quote_makes_one_word_of_hostile_values() {
        check_quote("", "''");
        check_quote("nginx", "'nginx'");
        check_quote("a b", "'a b'");
        check_quote("x; rm -rf /", "'x; rm -rf /'");
        check_quote("$(reboot)", "'$(reboot)'");
        check_quote("`id`", "'`id`'");
        check_quote("it's", r"'it'\''s'");
        check_quote("'", r"''\'''");
        check_quote("\"q\"", "'\"q\"'");
        check_quote("line1\nline2", "'line1\nline2'");
        check_quote("back\\slash", "'back\\slash'");
        check_quote("ünïcødé ✓", "'ünïcødé ✓'");
        check_quote("$HOME *.gz ~ &| >x", "'$HOME *.gz ~ &| >x'");
        assert_eq!(shell_quote("a\0b"), Err(ShellQuoteError::Nul));
    }

    #[test]
    fn only_one_program_with_literal_arguments_is_a_simple_command() {
        for simple in [
            "date +%s.%N",
            "systemctl restart 'nginx'",
            r"/usr/bin/printf %s 'it'\''s; $(reboot) `id` *'",
            "journalctl --vacuum-time=7d",
            "apt-get clean",
            "touch /tmp/storm-'web-1'",
            "du -x -d 1 -- /var",
        ] {
            assert!(is_simple_command(simple), "{simple:?}");
        }
        for needs_a_shell in [
            "",
            "  ",
            "df --output=pcent / | tail -n 1",
            "a && b",
            "a; b",
            "a > /tmp/x",
            "rm /tmp/*.log",
            "ls ~",
            "echo $HOME",
            "echo 'a\\nb'",
            "cd /tmp",
            "'cd' /tmp",
            "test -e /x",
            "true",
            "FOO=1 date",
            "-x",
            "date # comment",
            "date\nreboot",
            "date 'unterminated",
            "date \\",
            "a\tb",
            "if",
            "[ -e /x ]",
            "{ date; }",
            "%1",
            "date =x",
        ] {
            assert!(!is_simple_command(needs_a_shell), "{needs_a_shell:?}");
        }
    }

    #[test]
    fn shell_quote_round_trips_through_a_real_shell() {
        // The definitive test: sh must see exactly one argument equal to the input.
        let hostile = [
            "",
            "a b",
            "x; rm -rf /",
            "$(id)",
            "`id`",
            "it's",
            "'",
            "\"",
            "a\nb",
            "\\",
            "é ✓",
            "-n",
        ];
        for value in hostile {
            let script = format!("printf '%s' {}", shell_quote(value).unwrap());
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(output.status.success(), "script {script:?}");
            assert_eq!(
                String::from_utf8(output.stdout).unwrap(),
                value,
                "script {script:?}"
            );
        }
    }

    #[test]
    fn host_filter_strips_ports() {
        for (input, expected) in [
            ("web1:9100", "web1"),
            ("web1", "web1"),
            ("10.0.0.5:22", "10.0.0.5"),
            ("[::1]:9100", "::1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("fe80::1:2", "fe80::1:2"),
            ("", ""),
        ] {
            assert_eq!(host_of(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("abc-._~XYZ09"), "abc-._~XYZ09");
        assert_eq!(percent_encode("a/b?c#d@e:f g"), "a%2Fb%3Fc%23d%40e%3Af%20g");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    fn context(service: &str) -> CommandContext {
        CommandContext {
            params: [("service".to_owned(), service.to_owned())]
                .into_iter()
                .collect(),
            target: "10.0.0.5".to_owned(),
            target_name: "web1".to_owned(),
            host_labels: [
                ("services".to_owned(), "nginx,app".into()),
                (
                    "ports".to_owned(),
                    crate::inventory::LabelValue::List(vec!["80".into(), "8080".into()]),
                ),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn check_command(template: &str, service: &str, expected: &str) {
        let rendered = RecipeTemplates::new()
            .render_command(template, &context(service))
            .unwrap();
        assert_eq!(
            rendered, expected,
            "template {template:?} service {service:?}"
        );
    }

    #[test]
    fn every_emitted_value_is_one_quoted_word() {
        check_command(
            "systemctl restart {{ service }}",
            "nginx",
            "systemctl restart 'nginx'",
        );
        check_command(
            "systemctl restart {{ service }}",
            "x; reboot",
            "systemctl restart 'x; reboot'",
        );
        check_command("echo {{ service }}", "it's", r"echo 'it'\''s'");
        // `safe` and auto-escape do not bypass the formatter.
        check_command("echo {{ service|safe }}", "a b", "echo 'a b'");
        check_command("echo {{ service ~ 'x' }}", "a b", "echo 'a bx'");
        check_command("echo {{ service|upper }}", "$(x)", "echo '$(X)'");
        check_command(
            "echo {% for c in ['a b', service] %}{{ c }} {% endfor %}",
            "z",
            "echo 'a b' 'z' ",
        );
        check_command(
            "echo {% raw %}{{ service }}{% endraw %}",
            "z",
            "echo {{ service }}",
        );
        check_command(
            "echo {% autoescape false %}{{ service }}{% endautoescape %}",
            "a b",
            "echo 'a b'",
        );
        // Captured blocks come back as values and are quoted again: never raw.
        check_command(
            "echo {% filter upper %}{{ service }}{% endfilter %}",
            "a",
            "echo ''\\''A'\\'''",
        );
        check_command(
            "echo {{ target }} {{ target_name }}",
            "a",
            "echo '10.0.0.5' 'web1'",
        );
        check_command("echo {{ '' }}", "a", "echo ''");
        check_command("echo {{ 5 }}", "a", "echo '5'");
    }

    #[test]
    fn nul_values_fail_to_render() {
        let error = RecipeTemplates::new()
            .render_command("echo {{ service }}", &context("a\0b"))
            .unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
    }

    #[test]
    fn url_values_are_percent_encoded_and_the_target_is_a_host() {
        let templates = RecipeTemplates::new();
        let url = templates
            .render_url(
                "http://{{ target }}:8080/x/{{ service }}",
                &context("a/b?c"),
            )
            .unwrap();
        assert_eq!(url, "http://10.0.0.5:8080/x/a%2Fb%3Fc");
        let mut v6 = context("s");
        v6.target = "::1".to_owned();
        assert_eq!(
            templates
                .render_url("http://{{ target }}:80/", &v6)
                .unwrap(),
            "http://[::1]:80/"
        );
        assert_eq!(
            templates
                .render_url("http://{{ target_name }}/", &v6)
                .unwrap(),
            "http://web1/"
        );
    }

    #[test]
    fn host_labels_are_values_like_any_other() {
        let templates = RecipeTemplates::new();
        let context = context("a");
        assert_eq!(
            templates
                .render_command(
                    "echo {{ host_labels.services }} {% for p in host_labels.ports %}{{ p }} {% endfor %}",
                    &context
                )
                .unwrap(),
            "echo 'nginx,app' '80' '8080' "
        );
        assert_eq!(
            templates
                .render_url("http://{{ target }}/{{ host_labels.services }}", &context)
                .unwrap(),
            "http://10.0.0.5/nginx%2Capp"
        );
        let missing = templates
            .render_command("echo {{ host_labels.nope }}", &context)
            .unwrap_err();
        assert!(missing.to_string().contains("undefined"), "{missing}");
    }

    #[test]
    fn url_authority_parts_follow_the_literal_text() {
        use Piece::{Expr, Text};
        use UrlPart::{Host, Port, UserInfo};
        let parts = |source: &str| url_authority(source).unwrap();
        assert_eq!(
            parts("http://{{ target }}:{{ port }}/{{ x }}"),
            [(Host, Expr("target".into())), (Port, Expr("port".into()))]
        );
        assert_eq!(
            parts("https://u:{{ pw }}@[::1]:80?q"),
            [
                (UserInfo, Text("u:".into())),
                (UserInfo, Expr("pw".into())),
                (Host, Text("[::1]".into())),
                (Port, Text("80".into())),
            ]
        );
        assert_eq!(
            parts("http://{{- target -}}.x#{{ y }}"),
            [(Host, Expr("target".into())), (Host, Text(".x".into()))]
        );
        assert_eq!(url_authority("{{ x }}://h/"), None);
        assert_eq!(url_port("http://h:8080/x"), Some("8080"));
        assert_eq!(url_port("http://u:p@h/x:1"), None);
        assert_eq!(url_port("http://[::1]:9/"), Some("9"));
        assert_eq!(url_port("http://h:/"), None);
    }

    #[test]
    fn target_templates_see_labels_and_the_host_filter() {
        let templates = RecipeTemplates::new();
        let labels = [("instance".to_owned(), "web1:9100".to_owned())]
            .into_iter()
            .collect();
        let rendered = templates
            .render_target("{{ labels.instance | host }}", &labels, &BTreeMap::new())
            .unwrap();
        assert_eq!(rendered, "web1");
        assert!(
            templates
                .render_target("{{ labels.missing }}", &labels, &BTreeMap::new())
                .is_err()
        );
    }

    fn check_problems(kind: TemplateKind, source: &str, expected: &[&str]) {
        let params: BTreeSet<String> = ["service".to_owned()].into_iter().collect();
        let problems = RecipeTemplates::new().check(kind, source, &params);
        assert_eq!(
            problems.len(),
            expected.len(),
            "source {source:?}: {problems:?}"
        );
        for (problem, fragment) in problems.iter().zip(expected) {
            assert!(
                problem.contains(fragment),
                "source {source:?}: {problem:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn load_time_checks() {
        use TemplateKind::*;
        check_problems(Command, "systemctl restart {{ service }}", &[]);
        check_problems(
            Command,
            "x {{ target }} {{ target_name }} --unit={{ service }}",
            &[],
        );
        check_problems(Command, "x {{ servce }}", &["unknown variable `servce`"]);
        check_problems(Command, "x {{ labels.service }}", &["raw alert text"]);
        check_problems(Command, "x {{ host_labels.role }} {{ service }}", &[]);
        check_problems(Target, "{{ host_labels.role }}", &["unknown variable"]);
        check_problems(
            Command,
            "sh -c {{ service }}",
            &["inside the script `sh -c` runs"],
        );
        check_problems(
            Command,
            "x '{{ service }}' && sh -c '{{ service }}'",
            &["inside shell quotes", "inside the script `sh -c` runs"],
        );
        check_problems(Command, "x {{ annotations.summary }}", &["raw alert text"]);
        check_problems(Command, "x {{ service", &["does not parse"]);
        check_problems(Command, "x '{{ service }}'", &["inside shell quotes"]);
        check_problems(Command, "x \"{{ service }}\"", &["inside shell quotes"]);
        check_problems(Command, "x \\{{ service }}", &["inside shell quotes"]);
        check_problems(Command, "x 'literal' \"also\" {{ service }} 'it''s'", &[]);
        check_problems(Command, "x {{ \"'\" }} {{ service }}", &[]);
        check_problems(
            Command,
            "x {% raw %}'{% endraw %}{{ service }}",
            &["inside shell quotes"],
        );
        check_problems(Command, "{% include 'x' %}", &["`include` is not allowed"]);
        check_problems(
            Command,
            "echo {% for c in [service] %}{{ c }}{{ loop.index }}{% endfor %}",
            &[],
        );
        check_problems(Url, "http://{{ target }}/{{ service }}", &[]);
        check_problems(Url, "http://{{ labels.host }}/", &["raw alert text"]);
        // Quotes in URLs are not shell quotes.
        check_problems(Url, "http://h/'{{ service }}'", &[]);
        check_problems(Target, "{{ labels.instance | host }}", &[]);
        check_problems(Target, "{{ annotations.host }}", &[]);
        check_problems(Target, "{{ service }}", &["unknown variable `service`"]);
    }
}
