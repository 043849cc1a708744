//! Email channels: one plain-text mail per escalation over SMTP (lettre, tokio, rustls),
//! plain, STARTTLS or implicit TLS, optional AUTH and a private CA. It never disables
//! certificate verification, never sends a password over an unencrypted connection, and
//! never puts a CR or LF from alert data into a header.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::content::{Digest, Escalation, render_digest_text, render_text};
use super::followup::{FollowUp, render_follow_up_text};
use super::template::{PageTemplates, truncate_chars};
use super::{SendError, redact};
use crate::duration::de_duration;
use crate::secret::{Secret, secret_from};

/// An email channel (`kind = "email"`): each escalation is one plain-text mail.
///
/// ```toml
/// [escalation.channels.oncall-email]
/// kind = "email"
/// smtp_url = "smtp://mail.example.com:587"   # tls defaults to "starttls"
/// username = "salve"
/// password_file = "/etc/salve/smtp-password"
/// from = "salve <salve@example.com>"
/// to = ["oncall@example.com"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// `smtp://HOST[:PORT]` or `smtps://HOST[:PORT]`; HOST is also the name the server's
    /// certificate must carry. No user, password or query in the URL: use the keys below.
    pub smtp_url: String,
    /// `starttls` (upgrade a plain connection; the default for `smtp://`, port 587),
    /// `tls` (implicit TLS from the first byte; the default for `smtps://`, port 465), or
    /// `none` (plain text, port 25: only for a relay on loopback or a trusted network, and
    /// never with a password). With `starttls` a server that does not offer STARTTLS is an
    /// error, never a silent downgrade.
    pub tls: Option<SmtpTls>,
    /// SMTP AUTH user (PLAIN or LOGIN, whichever the server offers).
    pub username: Option<String>,
    /// SMTP AUTH password. Prefer `password_file` or the environment
    /// (`SALVE_ESCALATION__CHANNELS__<NAME>__PASSWORD`) over writing it here.
    pub password: Option<Secret>,
    /// File holding the password (a trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// PEM file with one or more CA certificates trusted in addition to the system's, for
    /// a relay with a private CA. Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// The sender, `addr@example.com` or `Name <addr@example.com>`.
    pub from: String,
    /// Recipients; at least one.
    pub to: Vec<String>,
    /// Subject template (minijinja) over the escalation's fields (`reason`, `alertname`,
    /// `summary`, `labels`, `target`, `recipe`, `incident_id`, …). Missing values render
    /// empty; line breaks are escaped; cut at 250 characters.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Bound for one delivery: connect, TLS, AUTH and the whole SMTP dialogue.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// At most this many messages (single escalations or digests) per minute to this
    /// channel; more wait in the outbox (never dropped). No limit when unset.
    #[serde(default)]
    pub max_per_minute: Option<u32>,
}

/// How an email channel protects its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

pub const DEFAULT_SUBJECT: &str = "[salve] {{ reason }}: {{ alertname or \"alert\" }}{% if target %} on {{ target.name }}{% endif %}";

fn default_subject() -> String {
    DEFAULT_SUBJECT.to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The parsed `smtp_url` + `tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    tls: SmtpTls,
}

fn endpoint(channel: &EmailChannel) -> Result<Endpoint, (&'static str, String)> {
    // Not quoted back: a URL that fails to parse may still hold `user:password@`.
    let url = reqwest::Url::parse(&channel.smtp_url)
        .map_err(|error| ("smtp_url", format!("not a valid URL: {error}")))?;
    let implied = match url.scheme() {
        "smtp" => SmtpTls::Starttls,
        "smtps" => SmtpTls::Tls,
        other => {
            return Err((
                "smtp_url",
                format!("scheme {other:?}: expected smtp:// or smtps://"),
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            "smtp_url",
            "credentials in the URL are not accepted: use username and password_file".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err((
            "smtp_url",
            "expected only smtp[s]://HOST[:PORT]: set TLS with the `tls` key".into(),
        ));
    }
    // IPv6 hosts come bracketed; TLS and connect want the bare address.
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(("smtp_url", "no host".into())),
    }
    .to_owned();
    let tls = match (implied, channel.tls) {
        (SmtpTls::Tls, Some(tls)) if tls != SmtpTls::Tls => {
            return Err((
                "tls",
                "smtps:// is implicit TLS; use smtp:// for starttls or none".into(),
            ));
        }
        (implied, None) => implied,
        (_, Some(tls)) => tls,
    };
    let port = url.port().unwrap_or(match tls {
        SmtpTls::None => 25,
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
    });
    Ok(Endpoint { host, port, tls })
}

/// Problems found without touching the network (a password file is only checked to
/// exist; the CA file is read and parsed).
/// Each is `(key, message)`; the caller adds the channel and the file:line.
pub(crate) fn problems(channel: &EmailChannel) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match endpoint(channel) {
        Ok(endpoint) => {
            let has_password = channel.password.is_some() || channel.password_file.is_some();
            if endpoint.tls == SmtpTls::None && (has_password || channel.username.is_some()) {
                problems.push((
                    "tls",
                    "tls = \"none\" with credentials would send the password in clear text; \
                     use starttls or tls"
                        .into(),
                ));
            }
            if endpoint.tls == SmtpTls::None && channel.ca_file.is_some() {
                problems.push((
                    "ca_file",
                    "ca_file needs tls = \"starttls\" or \"tls\"".into(),
                ));
            }
        }
        Err(problem) => problems.push(problem),
    }
    match (
        &channel.username,
        channel.password.is_some() || channel.password_file.is_some(),
    ) {
        (Some(_), false) => problems.push(("password", "username is set but no password".into())),
        (None, true) => problems.push(("username", "a password is set but no username".into())),
        _ => {}
    }
    // password and password_file (both set, unreadable, blank) are checked once, where the
    // config reads the secret (`config::channel_problems`).
    // Not a secret: read it now, so `salve check` and startup refuse a CA that TLS would.
    if let Some(path) = &channel.ca_file
        && let Err(message) = ca_certificate(path)
    {
        problems.push(("ca_file", message));
    }
    if let Err(error) = channel.from.parse::<Mailbox>() {
        problems.push((
            "from",
            format!("{:?} is not an email address: {error}", channel.from),
        ));
    }
    if channel.to.is_empty() {
        problems.push(("to", "at least one recipient is needed".into()));
    }
    for to in &channel.to {
        if let Err(error) = to.parse::<Mailbox>() {
            problems.push(("to", format!("{to:?} is not an email address: {error}")));
        }
    }
    if let Err(error) = PageTemplates::check_syntax(&channel.subject) {
        problems.push(("subject", error));
    }
    if channel.timeout.is_zero() {
        problems.push(("timeout", "must be > 0".into()));
    }
    problems
}

/// The CA certificate(s) in the PEM file at `path`; a file with none is refused.
fn ca_certificate(path: &std::path::Path) -> Result<Certificate, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let not_pem = |why: String| format!("{}: not PEM certificates: {why}", path.display());
    let found = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| not_pem(error.to_string()))?;
    if found.is_empty() {
        return Err(not_pem("no -----BEGIN CERTIFICATE----- block".into()));
    }
    Certificate::from_pem(&pem).map_err(|error| not_pem(error.to_string()))
}

/// A built email channel: transport and addresses ready, templates checked.
pub(crate) struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port (tls)`, for messages; never holds a credential.
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    timeout: Duration,
    /// The channel's name as it may appear in a Message-ID (see `page_message_id`).
    thread_tag: String,
    /// The password as sent (plain, and in AUTH PLAIN/LOGIN's base64): a server reply
    /// that quotes it back is redacted before it reaches the log or the journal.
    credentials: Vec<String>,
}

impl EmailSender {
    /// Reads the password and CA files and builds the transport. Does not connect.
    pub(crate) fn build(channel: &EmailChannel) -> Result<EmailSender, String> {
        if let Some((key, message)) = problems(channel).into_iter().next() {
            return Err(format!("{key}: {message}"));
        }
        let endpoint = endpoint(channel).map_err(|(key, message)| format!("{key}: {message}"))?;
        let password = secret_from(
            "password",
            channel.password.clone(),
            channel.password_file.as_deref(),
        )?;
        let tls = match endpoint.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let mut parameters = TlsParameters::builder(endpoint.host.clone());
                if let Some(path) = &channel.ca_file {
                    let certificate =
                        ca_certificate(path).map_err(|message| format!("ca_file {message}"))?;
                    parameters = parameters.add_root_certificate(certificate);
                }
                let parameters = parameters
                    .build_rustls()
                    .map_err(|error| format!("TLS setup: {error}"))?;
                if endpoint.tls == SmtpTls::Starttls {
                    Tls::Required(parameters)
                } else {
                    Tls::Wrapper(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
            .port(endpoint.port)
            .tls(tls)
            .timeout(Some(channel.timeout));
        let mut credentials = Vec::new();
        if let (Some(username), Some(password)) = (&channel.username, password) {
            let base64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
            let password = password.expose().to_owned();
            // A password of a few characters would turn every such letter in a reply into
            // `[redacted]` and so spell itself out; those are not redacted.
            credentials = vec![
                password.clone(),
                base64(password.clone()),
                base64(format!("\0{username}\0{password}")),
            ];
            if password.chars().count() < 4 {
                credentials.remove(0);
            }
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        let parse = |text: &str| {
            text.parse::<Mailbox>()
                .map_err(|error| format!("{text:?}: {error}"))
        };
        Ok(EmailSender {
            transport: builder.build(),
            server: format!(
                "{}:{} ({})",
                endpoint.host,
                endpoint.port,
                match endpoint.tls {
                    SmtpTls::None => "plain",
                    SmtpTls::Starttls => "STARTTLS",
                    SmtpTls::Tls => "TLS",
                }
            ),
            from: parse(&channel.from)?,
            to: channel
                .to
                .iter()
                .map(|to| parse(to))
                .collect::<Result<_, _>>()?,
            subject: channel.subject.clone(),
            timeout: channel.timeout,
            thread_tag: "email".to_owned(),
            credentials,
        })
    }

    /// Names the channel, so its pages' Message-IDs differ from another email channel's.
    pub(crate) fn named(mut self, channel: &str) -> EmailSender {
        let tag: String = channel
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if !tag.is_empty() {
            self.thread_tag = tag;
        }
        self
    }

    /// The Message-ID of the page for `escalation` on this channel, the same in every
    /// process (no random part, nothing kept): its follow-up threads under it after a
    /// restart. `<salve-incident-ID.REASON.CHANNEL@DOMAIN-OF-FROM>`.
    pub(crate) fn page_message_id(&self, escalation: &Escalation) -> String {
        format!(
            "<salve-incident-{}.{}.{}@{}>",
            escalation.incident_id,
            escalation.reason.as_str(),
            self.thread_tag,
            self.from.email.domain()
        )
    }

    /// The page's subject (its template over the page, or the summary when it fails).
    fn page_subject(&self, templates: &PageTemplates, escalation: &Escalation) -> String {
        templates
            .render_line(&self.subject, escalation)
            .unwrap_or_else(|error| {
                // A broken subject must not stop the page: fall back to the summary.
                tracing::warn!(incident_id = escalation.incident_id, %error, "email subject template failed; using the summary");
                format!("[salve] {}", escalation.summary_line())
            })
    }

    /// A short "Resolved: <the page's subject>" mail in the page's thread (`In-Reply-To`
    /// and `References` name the page's Message-ID).
    pub(crate) async fn send_follow_up(
        &self,
        templates: &PageTemplates,
        follow_up: &FollowUp,
    ) -> Result<(), SendError> {
        let page = &follow_up.page;
        let subject = truncate_chars(
            &format!("Resolved: {}", self.page_subject(templates, page)),
            250,
        );
        let message = self.message(
            subject,
            render_follow_up_text(follow_up),
            &[
                ("X-Salve-Incident", page.incident_id.to_string()),
                ("X-Salve-Reason", "resolved".to_owned()),
            ],
            Thread::ReplyTo(self.page_message_id(page)),
        )?;
        self.deliver(message).await
    }

    pub(crate) async fn send(
        &self,
        templates: &PageTemplates,
        escalation: &Escalation,
    ) -> Result<(), SendError> {
        let subject = self.page_subject(templates, escalation);
        let message = self.message(
            subject,
            render_text(escalation),
            &[
                ("X-Salve-Incident", escalation.incident_id.to_string()),
                ("X-Salve-Reason", escalation.reason.as_str().to_owned()),
            ],
            Thread::Page(self.page_message_id(escalation)),
        )?;
        self.deliver(message).await
    }

    /// One mail for a whole digest; the subject is fixed (no template) and escaped.
    pub(crate) async fn send_digest(&self, digest: &Digest) -> Result<(), SendError> {
        let subject = truncate_chars(&format!("[salve] {}", digest.summary_line()), 250);
        let message = self.message(
            subject,
            render_digest_text(digest),
            &[
                ("X-Salve-Digest", digest.digest_id.to_string()),
                ("X-Salve-Reason", digest.reason.as_str().to_owned()),
            ],
            Thread::None,
        )?;
        self.deliver(message).await
    }

    async fn deliver(&self, message: Message) -> Result<(), SendError> {
        let delivery = tokio::time::timeout(self.timeout, self.transport.send(message)).await;
        match delivery {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(error)) => {
                let mut refused = classify(&self.server, &error);
                refused.message = redact(&refused.message, &self.credentials);
                Err(refused)
            }
            Err(_) => Err(SendError {
                message: format!("SMTP {}: no answer within {:?}", self.server, self.timeout),
                retryable: true,
            }),
        }
    }

    /// `headers` are machine-readable handles for mail filters and threading: salve's own
    /// values (a number and a fixed word), never alert text.
    fn message(
        &self,
        subject: String,
        body: String,
        headers: &[(&'static str, String)],
        thread: Thread,
    ) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .user_agent(concat!("salve/", env!("CARGO_PKG_VERSION")).to_owned())
            .header(ContentType::TEXT_PLAIN);
        match thread {
            Thread::Page(id) => builder = builder.message_id(Some(id)),
            Thread::ReplyTo(id) => builder = builder.in_reply_to(id.clone()).references(id),
            // lettre makes a Message-ID of its own.
            Thread::None => {}
        }
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        for (name, value) in headers {
            let name = HeaderName::new_from_ascii_str(name);
            builder = builder.raw_header(HeaderValue::new(name, value.clone()));
        }
        builder.body(body).map_err(|error| SendError {
            message: format!("cannot build the mail: {error}"),
            retryable: false,
        })
    }
}

/// Where a mail sits in a thread: a page (its stable Message-ID), a reply to one (a
/// follow-up), or neither (a digest).
enum Thread {
    Page(String),
    ReplyTo(String),
    None,
}

/// Retryable: the server or the network may recover (4xx, refused, timeout, broken
/// connection). Not retryable: the server said no for good (5xx: bad password, unknown
/// recipient), a client-side problem, or TLS that cannot be established (an untrusted or
/// mismatched certificate): those need a human.
fn classify(server: &str, error: &lettre::transport::smtp::Error) -> SendError {
    let mut message = format!("SMTP {server}: {error}");
    let mut tls_refused = error.is_tls();
    // lettre's Display stops at its direct source; the root cause (e.g. rustls's
    // "invalid peer certificate: UnknownIssuer") is what a human needs.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        // tokio-rustls reports a failed handshake (certificate, protocol) as an I/O error
        // of kind InvalidData; a reset or refused connection has other kinds.
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            tls_refused = true;
        }
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    // lettre nests its connection errors ("Connection error: Connection error: …").
    while message.contains("Connection error: Connection error: ") {
        message = message.replace("Connection error: Connection error: ", "Connection error: ");
    }
    let retryable = !(error.is_permanent() || error.is_client() || tls_refused);
    SendError { message, retryable }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(url: &str, tls: Option<SmtpTls>) -> EmailChannel {
        EmailChannel {
            smtp_url: url.into(),
            tls,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            from: "salve <salve@example.com>".into(),
            to: vec!["oncall@example.com".into()],
            subject: default_subject(),
            timeout: default_timeout(),
            max_per_minute: None,
        }
    }

    #[test]
    fn url_and_tls_give_the_endpoint() {
        let check = |url: &str, tls: Option<SmtpTls>, expected: (&str, u16, SmtpTls)| {
            let endpoint = endpoint(&channel(url, tls)).unwrap();
            assert_eq!(
                (endpoint.host.as_str(), endpoint.port, endpoint.tls),
                expected,
                "{url} {tls:?}"
            );
        };
        check(
            "smtp://mail.example.com",
            None,
            ("mail.example.com", 587, SmtpTls::Starttls),
        );
        check(
            "smtps://mail.example.com",
            None,
            ("mail.example.com", 465, SmtpTls::Tls),
        );
        check(
            "smtp://127.0.0.1:2525",
            Some(SmtpTls::None),
            ("127.0.0.1", 2525, SmtpTls::None),
        );
        check(
            "smtp://localhost:1465",
            Some(SmtpTls::Tls),
            ("localhost", 1465, SmtpTls::Tls),
        );
    }

    #[test]
    fn unsafe_or_ambiguous_settings_are_problems() {
        let keys = |c: &EmailChannel| -> Vec<&'static str> {
            problems(c).into_iter().map(|(key, _)| key).collect()
        };
        assert_eq!(
            keys(&channel("smtps://h", Some(SmtpTls::Starttls))),
            ["tls"]
        );
        assert_eq!(keys(&channel("http://h", None)), ["smtp_url"]);
        assert_eq!(keys(&channel("smtp://u:p@h", None)), ["smtp_url"]);
        assert_eq!(keys(&channel("smtp://h?tls=required", None)), ["smtp_url"]);
        let mut c = channel("smtp://h", Some(SmtpTls::None));
        c.username = Some("u".into());
        c.password = Some(Secret::new("p".into()));
        assert_eq!(keys(&c), ["tls"]);
        let mut c = channel("smtp://h", None);
        c.to = vec![];
        c.from = "not an address".into();
        c.subject = "{{ oops".into();
        assert_eq!(keys(&c), ["from", "to", "subject"]);
        c.to = vec!["a@b\r\nBcc: x@y".into()];
        assert_eq!(keys(&c), ["from", "to", "subject"]);
    }

    #[test]
    fn a_server_reply_quoting_the_password_is_redacted() {
        let mut c = channel("smtps://h", None);
        c.username = Some("salve".into());
        c.password = Some(Secret::new("hunter2-smtp".into()));
        let sender = EmailSender::build(&c).unwrap();
        let plain = base64::engine::general_purpose::STANDARD.encode("\0salve\0hunter2-smtp");
        let login = base64::engine::general_purpose::STANDARD.encode("hunter2-smtp");
        let reply = format!("535 bad AUTH PLAIN {plain} / LOGIN {login} / hunter2-smtp");
        assert_eq!(
            redact(&reply, &sender.credentials),
            "535 bad AUTH PLAIN [redacted] / LOGIN [redacted] / [redacted]"
        );
        // A password this short would spell itself out letter by letter: left alone.
        c.password = Some(Secret::new("e".into()));
        let sender = EmailSender::build(&c).unwrap();
        assert_eq!(redact("there", &sender.credentials), "there");
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_problem_not_a_later_tls_failure() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("ca.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, expected) in [
            (&text, "no -----BEGIN CERTIFICATE----- block"),
            (&broken, "not PEM certificates"),
            (&missing, "No such file"),
        ] {
            let mut c = channel("smtps://h", None);
            c.ca_file = Some(path.clone());
            let found = problems(&c);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, "ca_file");
            assert!(found[0].1.contains(expected), "{found:?}");
            assert!(EmailSender::build(&c).is_err());
        }
    }
}
